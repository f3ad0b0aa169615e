//! Block formats of GGML tensors: type ids, block geometry, dequantization and quantization.
//!
//! This crate knows byte layouts and arithmetic only; it never opens files and knows nothing
//! of models. Every format is defined bit-exactly as GGML defines it (see `ggml-common.h`
//! in llama.cpp, and the numpy reference in the `gguf` Python package).

mod types;
pub use types::GgmlType;
