use crate::GgmlType;

/// Why a conversion could not be done. Every variant names the numbers involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// This crate cannot dequantize (or, from [`crate::quantize`], cannot quantize to) the type.
    Unsupported(GgmlType),
    /// The type can be dequantized but this crate has no quantizer for it.
    NoQuantizer(GgmlType),
    /// The element count is not a whole number of blocks.
    NotWholeBlocks {
        ty: GgmlType,
        elements: usize,
        block_size: usize,
    },
    /// The byte buffer does not hold exactly the bytes of `elements` elements.
    ByteLength {
        ty: GgmlType,
        elements: usize,
        expected: usize,
        actual: usize,
    },
    /// Two slices that must have the same length do not.
    LengthMismatch { src: usize, dst: usize },
}

impl std::fmt::Display for QuantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantError::Unsupported(ty) => {
                write!(f, "tensor type {ty} (id {}) is not supported", ty.id())
            }
            QuantError::NoQuantizer(ty) => write!(
                f,
                "quantizing to {ty} is not implemented (only dequantizing {ty} is)"
            ),
            QuantError::NotWholeBlocks {
                ty,
                elements,
                block_size,
            } => write!(
                f,
                "{elements} elements is not a whole number of {ty} blocks of {block_size}"
            ),
            QuantError::ByteLength {
                ty,
                elements,
                expected,
                actual,
            } => write!(
                f,
                "{elements} {ty} elements take {expected} bytes, but {actual} bytes were given"
            ),
            QuantError::LengthMismatch { src, dst } => write!(
                f,
                "source has {src} elements but destination has room for {dst}"
            ),
        }
    }
}

impl std::error::Error for QuantError {}
