use std::path::{Path, PathBuf};

use crate::{Digest, ModelRef};

/// Everything the store can report. Each variant names what it is about (model, file,
/// digest, archive entry) so that a one-line rendering is actionable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `renaming`, ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Text that should be a digest is not `sha256:` plus 64 lowercase hex digits.
    #[error("invalid digest {found:?}: {why} (expected \"sha256:\" followed by 64 lowercase hex digits)")]
    BadDigest {
        /// The offending text, truncated for display.
        found: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A model name or tag breaks the naming rules.
    #[error("invalid model name {found:?}: {why}")]
    BadName {
        /// The offending text, truncated for display.
        found: String,
        /// What is wrong with it.
        why: String,
    },
    /// A manifest (from the store, an archive or a registry) is malformed.
    #[error("invalid manifest{}: {why}", at.as_deref().map(|a| format!(" ({a})")).unwrap_or_default())]
    BadManifest {
        /// Where the manifest came from, when known.
        at: Option<String>,
        /// What is wrong with it.
        why: String,
    },
    /// Content did not hash to the digest it was supposed to have.
    #[error("digest mismatch for {what}: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest that was promised.
        expected: Digest,
        /// The digest of the bytes actually seen.
        actual: Digest,
        /// What the content was (a file, an archive entry, a layer title).
        what: String,
    },
    /// A blob's size differs from the size its descriptor promised.
    #[error("size mismatch for blob {digest} ({what}): expected {expected} bytes, found {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// What the blob is (layer title or media type).
        what: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// A blob that a manifest references is not in the store.
    #[error("blob {digest} ({what}) is missing from the store")]
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// What the blob is (layer title or media type).
        what: String,
    },
    /// No model of that name and tag in the catalog.
    #[error("model {0} is not in the store (see `freehold list`)")]
    NotFound(ModelRef),
    /// A model has no layer of the kind asked for.
    #[error("model {model} has no {what} layer")]
    NoLayer {
        /// The model.
        model: ModelRef,
        /// The kind of layer looked for.
        what: &'static str,
    },
    /// An import source was rejected.
    #[error("cannot import {}: {why}", path.display())]
    Import {
        /// The file or directory given.
        path: PathBuf,
        /// Why it was rejected.
        why: String,
    },
    /// An export/import archive was rejected.
    #[error("archive {}: {why}", path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// What is wrong (names the entry).
        why: String,
    },
    /// The catalog database failed.
    #[error("catalog {}: {source}", path.display())]
    Catalog {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// Another process holds a lock that this operation needs.
    #[error("{0}")]
    Busy(String),
    /// A model argument was neither an existing file nor a model in the store.
    #[error("{arg:?} is neither a model file (no such file) nor a model in the store ({why})")]
    UnresolvedModel {
        /// The argument as given.
        arg: String,
        /// Why the store interpretation failed.
        why: String,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Short form of untrusted text for error messages: at most 80 characters.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
