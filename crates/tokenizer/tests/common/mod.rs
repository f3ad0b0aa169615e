//! Shared helpers for the tokenizer integration tests: locating the fetched test data.

#![allow(dead_code)]

use std::path::PathBuf;

/// `${FREEHOLD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/freehold}`, as `scripts/fetch-models`.
pub fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("FREEHOLD_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    base.join("freehold")
}

/// A file under the cache, or a panic telling how to fetch it (never a silent skip).
pub fn require(rel: &str, fetch_arg: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    if !p.exists() {
        panic!(
            "test data {} is missing: run `scripts/fetch-models {fetch_arg}` (set FREEHOLD_CACHE to use another cache directory)",
            p.display()
        );
    }
    p
}
