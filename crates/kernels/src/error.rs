//! The error type of this crate.

use quant::GgmlType;

/// What went wrong in a kernel call whose shapes come from model metadata.
///
/// Slice kernels whose lengths are fixed by the caller's own code (`add_inplace`,
/// `rms_norm`, ...) panic on a length mismatch instead, like `slice::copy_from_slice`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// The weight type has no kernel here.
    #[error("matmul: weight type {0} is not supported by the kernels")]
    UnsupportedType(GgmlType),
    /// The row length is not a whole number of blocks of the weight type.
    #[error("matmul: {cols} columns is not a multiple of the {ty} block size {block}")]
    ColsNotBlockMultiple {
        /// Weight type.
        ty: GgmlType,
        /// Row length in elements.
        cols: usize,
        /// Elements per block of `ty`.
        block: usize,
    },
    /// A buffer has the wrong length for the shape given.
    #[error("{what}: expected {expected} elements, got {actual}")]
    Length {
        /// Which argument, e.g. `"matmul: weight bytes"`.
        what: &'static str,
        /// The length the shape requires (for caches: at least this many).
        expected: usize,
        /// The length passed.
        actual: usize,
    },
    /// A shape parameter is invalid on its own.
    #[error("{0}")]
    InvalidShape(String),
    /// The requested instruction set cannot run on this CPU.
    #[error("instruction set {requested} is not supported by this CPU (best available: {best})")]
    UnsupportedIsa {
        /// What was asked for.
        requested: crate::Isa,
        /// The best this CPU can do.
        best: crate::Isa,
    },
    /// An instruction-set name that is not one of `scalar`, `avx2`, `avx512`.
    #[error("unknown instruction set {0:?} (expected scalar, avx2 or avx512)")]
    UnknownIsa(String),
}
