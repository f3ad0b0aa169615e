//! Clients for remote model sources: a Hugging Face-compatible hub ([`hf`]) and OCI
//! distribution registries ([`oci`]), over one blocking HTTP client ([`http`]).
//!
//! This crate knows protocols, not the store: it downloads to paths the caller chooses and
//! verifies every byte against a sha256 published by the source before reporting success
//! ([`download`]), and uploads files the caller names. Whoever owns the store decides where
//! files live, locks them, and adopts them once this crate has vouched for them.

pub mod download;
pub mod hf;
pub mod http;
pub mod oci;
pub mod progress;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use download::Downloaded;
pub use http::{Client, ClientOptions, RetryPolicy};

/// Everything that can go wrong talking to a remote source. Messages name the URL, repository,
/// file or revision involved.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Offline mode forbids the request.
    #[error("offline: {what} needs the network (unset FREEHOLD_OFFLINE / drop --offline)")]
    Offline {
        /// What was attempted, e.g. `pulling hf://org/repo`.
        what: String,
    },
    /// A reference (`hf://...`, `oci://...`) that does not parse.
    #[error("invalid reference {input:?}: {reason}")]
    BadRef {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL that cannot be used.
    #[error("invalid URL {url}: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The connection failed or broke (after the retries).
    #[error("{url}: {detail}")]
    Transport {
        /// The URL.
        url: String,
        /// The failure.
        detail: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} not found (HTTP 404 from {url}){}", hint(.detail))]
    NotFound {
        /// Repository, file and revision, or registry repository and digest.
        what: String,
        /// The URL.
        url: String,
        /// Server's explanation, if any.
        detail: String,
    },
    /// Authentication is missing or was refused.
    #[error("{what}: HTTP {status} from {url}: {advice}")]
    Unauthorized {
        /// What was asked for.
        what: String,
        /// 401 or 403.
        status: u16,
        /// The URL.
        url: String,
        /// What to do about it.
        advice: String,
    },
    /// Any other unexpected status.
    #[error("{what}: HTTP {status} from {url}{}", hint(.detail))]
    Status {
        /// What was asked for.
        what: String,
        /// The status.
        status: u16,
        /// The URL.
        url: String,
        /// Server's explanation, if any.
        detail: String,
    },
    /// The server answered something that breaks the protocol.
    #[error("{url}: {detail}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Downloaded bytes do not hash to the published digest.
    #[error("{what}: sha256 mismatch: the source publishes {expected}, the bytes received hash to {actual}; nothing was stored")]
    DigestMismatch {
        /// The file.
        what: String,
        /// Published hex digest.
        expected: String,
        /// Computed hex digest.
        actual: String,
    },
    /// Downloaded byte count differs from the published size.
    #[error("{what}: size mismatch: the source publishes {expected} bytes, received {actual}; nothing was stored")]
    SizeMismatch {
        /// The file.
        what: String,
        /// Published size.
        expected: u64,
        /// Received size.
        actual: u64,
    },
    /// What to pull is ambiguous or absent from the listing.
    #[error("{0}")]
    Selection(String),
    /// A local file could not be read or written.
    #[error("{}: {detail}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        detail: String,
    },
}

fn hint(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Checks that `s` is a sha256 as 64 lowercase hex digits (the form every source here
/// publishes, `sha256:` prefix removed).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The sha256 (lowercase hex) and length of a file.
pub fn sha256_file(path: &Path) -> Result<(String, u64), RemoteError> {
    let io = |e: std::io::Error| RemoteError::Io {
        path: path.to_path_buf(),
        detail: format!("hashing: {e}"),
    };
    let mut f = File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// The sha256 (lowercase hex) of bytes.
pub fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_bytes(b"x")));
        assert!(!is_sha256_hex(&sha256_bytes(b"x").to_uppercase()));
        assert!(!is_sha256_hex("abc"));
    }
}
