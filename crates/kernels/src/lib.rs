//! Freehold's CPU compute kernels: quantized matrix multiplication, norms, activations, RoPE,
//! softmax and attention, with run-time instruction-set dispatch and a persistent thread pool.
//!
//! # Bird's-eye view
//! * [`Isa`] picks the code path (AVX-512, AVX2+FMA, scalar) once per process, honouring
//!   `FREEHOLD_ISA=scalar|avx2|avx512`; [`with_isa`] overrides it per thread (tests, benches).
//! * [`ThreadPool`] runs borrowed closures on persistent workers, cheaply enough to be used
//!   for every operation of a decode step.
//! * Every kernel has a scalar reference body; the SIMD bodies are generic over a small
//!   internal vector trait and instantiated per ISA. Tests hold each fast path to the
//!   reference on awkward shapes.
//!
//! # API boundary
//! This crate knows slices, shapes and GGML block formats (through `quant::GgmlType`); it
//! knows nothing of models, files or tensors' names. Shapes that come from model metadata
//! (matmul, RoPE, attention) are validated and give a [`KernelError`]; plain slice kernels
//! panic on mismatched lengths, as `slice::copy_from_slice` does.

#![warn(missing_docs)]

mod attention;
mod dequant;
mod error;
mod ffn;
mod gemm_q32;
mod isa;
mod kquant_dot;
#[cfg(target_arch = "x86_64")]
mod kquant_gemm;
mod matmul;
mod matmul_many;
mod ops;
mod pool;
mod q8act;
mod rope;
mod sampling;
#[cfg(target_arch = "x86_64")]
mod simd;

pub use attention::{
    attention, attention_q8_0, attention_q8_0_int8_query, q8_0_bytes, quantize_kv_q8_0,
};
pub use dequant::{dequantize_row, is_supported, SUPPORTED_TYPES};
pub use error::KernelError;
pub use ffn::{ffn_glu, FfnScratch, GatedFfn, Glu};
pub use gemm_q32::{pack_weights, PackedWeights};
pub use isa::{with_isa, Isa};
pub use matmul::{matmul, matmul_rows, supported_type_names, Weights};
pub use matmul_many::matmul_many;
pub use ops::{
    add_inplace, axpy_f16, dot_f16_f32, dot_f32, f16_to_f32, f32_to_f16, geglu, gelu_tanh,
    gelu_tanh_inplace, layer_norm, mul_inplace, rms_norm, rms_norm_inplace, scale_inplace, silu,
    silu_inplace, softmax_inplace, swiglu,
};
pub use pool::{ThreadPool, DEFAULT_SPIN};
pub use rope::{rope_apply, rope_apply_from, rope_inplace, RopeAngles, RopeConfig, RopeStyle};
pub use sampling::{argmax, top_k};

#[cfg(test)]
mod tests;
