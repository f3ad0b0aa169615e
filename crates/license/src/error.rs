use std::path::PathBuf;

/// Errors of this crate; each names the file and, for policy files, the line and key.
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A policy file is not valid.
    #[error("{}: line {line}, column {column}{}: {message}", path.display(), key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key concerned, when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}
