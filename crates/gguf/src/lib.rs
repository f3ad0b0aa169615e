//! GGUF read and write.
//!
//! The reader maps the file and hands out zero-copy views of tensor data. Every length,
//! count, offset and size in the header is checked before it is used, so a hostile or
//! truncated file yields a [`GgufError`] naming the field and byte offset, never a panic
//! or an allocation sized by an unchecked header value.
//!
//! Limits a hostile file cannot get past (each reported as [`GgufError::TooLarge`] or a
//! descriptive variant, with the offset of the field):
//!
//! * every count and length is held to what the rest of the file could hold before anything
//!   is allocated from it, and vectors sized from a count start small and grow as items are
//!   really decoded;
//! * [`MAX_METADATA_VALUES`] keys plus array elements in total (a decoded [`Value`] is 32
//!   bytes, so this bounds memory where a `u8` array would otherwise amplify 32x);
//! * arrays nest at most [`MAX_ARRAY_NESTING`] deep (no unbounded recursion);
//! * [`MAX_TENSORS`] tensors, rank `1..=MAX_DIMS`, no zero dimension, at most `i64::MAX`
//!   elements, whole blocks per row, data aligned and inside the file (tensors may overlap);
//! * `general.alignment` a power of two up to [`MAX_ALIGNMENT`];
//! * metadata keys and tensor names must be UTF-8 (string values are decoded lossily).
//!
//! The writer rejects anything the reader would reject, so what it writes always reads back,
//! and it lays files out exactly as llama.cpp and gguf-py do: re-writing a file they wrote
//! reproduces it byte for byte (tested on the project's test models).
//!
//! Format reference: llama.cpp `docs/gguf.md` (GGUF v2/v3; v1 is not supported).

mod error;
mod reader;
mod value;
mod writer;

pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, WriterTensor};

/// `GGUF` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Default tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Tensors may have at most this many dimensions (GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;
/// Largest accepted `general.alignment` (1 MiB); real files use 32 or 64.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// Arrays may nest at most this deep (an array of arrays is depth 2); real files use 1.
pub const MAX_ARRAY_NESTING: usize = 8;
/// Most metadata values one file may hold: keys plus array elements, nested ones included.
/// A decoded [`Value`] takes 32 bytes while a `u8` array element takes one byte in the file,
/// so without a cap a hostile file could make the reader allocate 32 times its own size.
/// Real files hold under a million (Gemma 3: three arrays of 262,144).
pub const MAX_METADATA_VALUES: u64 = 1 << 24;
/// Most tensors one file may hold (the largest real models have a few thousand).
pub const MAX_TENSORS: u64 = 1 << 20;

/// Checks a `general.alignment` value: an integer that is a power of two in
/// `1..=MAX_ALIGNMENT`. Shared by the reader and the writer so that they agree.
pub(crate) fn check_alignment(v: &Value) -> Result<u64, String> {
    match v.as_u64() {
        Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => Ok(a),
        _ => Err(format!(
            "must be a power of two between 1 and {MAX_ALIGNMENT}, found {} ({})",
            v.display_short(4),
            v.value_type().name()
        )),
    }
}
