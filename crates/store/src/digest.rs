use std::fmt;
use std::io::Read;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::clip;
use crate::StoreError;

/// A sha256 content digest. Text becomes a `Digest` only through [`Digest::parse`], which
/// accepts exactly `sha256:` and 64 lowercase hex digits, so a digest that reaches a path
/// (`blobs/sha256/<hex>`) can never hold a separator, `..` or anything else.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else is [`StoreError::BadDigest`].
    pub fn parse(s: &str) -> Result<Digest, StoreError> {
        let bad = |why| StoreError::BadDigest {
            found: clip(s),
            why,
        };
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("only sha256 digests are accepted"))?;
        Self::parse_hex(hex).map_err(bad)
    }

    /// Parses the 64 lowercase hex digits alone (a blob's file name, a `SHA256SUMS` line).
    pub fn parse_hex(hex: &str) -> Result<Digest, &'static str> {
        if hex.len() != 64 {
            return Err("the hex part must be exactly 64 characters");
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("the hex part must be lowercase hex digits only");
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| "the hex part is not hex")?;
        Ok(Digest(out))
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything `r` yields, and its length.
    pub fn of_reader(mut r: impl Read) -> std::io::Result<(Digest, u64)> {
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl std::str::FromStr for Digest {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts bytes.
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Hasher {
            inner: Sha256::new(),
            len: 0,
        }
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest and length of everything fed.
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.inner.finalize().into()), self.len)
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}
