//! Shared helpers for the tokenizer integration tests: locating the fetched test data.

#![allow(unused_imports)]

/// A file under the cache, or a panic telling how to fetch it (never a silent skip).
pub use testdata::require;
