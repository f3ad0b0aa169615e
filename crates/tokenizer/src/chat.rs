//! Chat templates (minijinja).
