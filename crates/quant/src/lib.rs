//! Block formats of GGML tensors: type ids, block geometry, dequantization and quantization.
//!
//! This crate knows byte layouts and arithmetic only; it never opens files and knows nothing
//! of models. Every format is defined bit-exactly as GGML defines it (see `ggml-common.h`
//! in llama.cpp, and the numpy reference in the `gguf` Python package).
//!
//! * [`GgmlType`]: type ids and block geometry (elements per block, bytes per block).
//! * [`blocks`]: the byte layout of every supported block, as offsets and `#[repr(C)]`
//!   structs, for kernels that read block bytes directly.
//! * [`dequantize`] / [`dequantize_row`]: blocks to `f32`, plus one function per block format
//!   (`dequantize_block_q4_k`, ...) taking fixed-size arrays.
//! * [`quantize`] / [`quantize_row`]: `f32` to blocks, matching llama.cpp's reference
//!   quantizers (`quantize_row_*_ref`) bit for bit.
//! * [`f16_to_f32_slice`] / [`f32_to_f16_slice`] and the `bf16` pair: bulk conversions.
//!
//! Every entry point validates lengths and returns a [`QuantError`] naming the numbers
//! involved; nothing here panics on bad input.

pub mod blocks;
mod convert;
mod dequant;
mod error;
mod quantize;
mod types;

pub use convert::{
    bf16_to_f32_slice, f16_to_f32_slice, f32_to_bf16, f32_to_bf16_slice, f32_to_f16_slice,
};
pub use dequant::*;
pub use error::QuantError;
pub use quantize::*;
pub use types::GgmlType;
