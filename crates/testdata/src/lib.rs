//! Where the tests find data fetched by `scripts/fetch-models` (a dev-dependency only).
//! Missing data is a test failure with the command that fetches it, never a silent skip.

use std::path::PathBuf;

/// `${FREEHOLD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/freehold}`, as `scripts/fetch-models`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FREEHOLD_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    base.join("freehold")
}

/// `rel` under the cache, or a panic naming the path and `scripts/fetch-models {fetch_arg}`.
pub fn require(rel: &str, fetch_arg: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "test data {} is missing: run `scripts/fetch-models {fetch_arg}` (set FREEHOLD_CACHE to use another cache directory)",
        p.display()
    );
    p
}

/// A fetched test model, e.g. `model("tiny.gguf")`.
pub fn model(file: &str) -> PathBuf {
    require(&format!("models/{file}"), "all")
}
