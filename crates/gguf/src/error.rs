use std::path::PathBuf;

/// Everything that can be wrong with a GGUF file. Offsets are byte offsets from the start of
/// the file, so a user can look at the bytes with a hex dump. Every variant's message names
/// the field, key or tensor involved and where it is.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening, mapping or writing `path` failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:#010x} at offset 0, expected 0x46554747 (\"GGUF\")")]
    BadMagic { found: u32 },
    /// The version field (offset 4) is not 2 or 3.
    #[error("unsupported GGUF version {0} at offset 4 (supported: 2 and 3){hint}", hint = version_hint(*.0))]
    UnsupportedVersion(u32),
    /// The file ends inside the field `what`, which starts at `offset`.
    #[error("file ends at byte {len} while reading {what} at offset {offset} (truncated file?)")]
    Truncated { what: String, offset: u64, len: u64 },
    /// A count or length read at `offset` is larger than the file (or a fixed limit) allows.
    #[error("{what} at offset {offset} is {value}, more than the limit {limit}")]
    TooLarge {
        what: String,
        offset: u64,
        value: u64,
        limit: u64,
    },
    /// A metadata key is not valid UTF-8.
    #[error("metadata key at offset {offset} is not valid UTF-8")]
    BadKey { offset: u64 },
    /// A metadata key occurs twice; `offset` is the second occurrence.
    #[error("metadata key {key:?} at offset {offset} appears twice")]
    DuplicateKey { key: String, offset: u64 },
    /// A value type tag (of a value or of an array's elements) is not a known type.
    #[error("metadata {key:?}: unknown value type {ty} at offset {offset}")]
    BadValueType { key: String, offset: u64, ty: u32 },
    /// A metadata value is malformed or out of range; the message includes its offset.
    #[error("metadata {key:?}: {message}")]
    BadMetadata { key: String, message: String },
    /// A tensor descriptor is invalid; the message names the field and its offset.
    #[error("tensor {name:?} (descriptor at offset {offset}): {message}")]
    BadTensor {
        name: String,
        offset: u64,
        message: String,
    },
    /// Two tensor descriptors have the same name.
    #[error("tensor {name:?} appears twice (second descriptor at offset {offset})")]
    DuplicateTensor { name: String, offset: u64 },
    /// The writer was given something it cannot write as a valid GGUF file.
    #[error("writer: {0}")]
    Write(String),
}

fn version_hint(v: u32) -> &'static str {
    match v {
        1 => "; GGUF v1 files are obsolete, convert them with a current llama.cpp",
        // A v2/v3 file written big-endian reads as 0x02000000 / 0x03000000 here.
        0x0200_0000 | 0x0300_0000 => {
            "; this looks like a big-endian GGUF file, which is not supported"
        }
        _ => "",
    }
}

impl GgufError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GgufError::Io {
            path: path.into(),
            source,
        }
    }
}
