//! Byte layouts of the GGML block formats, for kernels that read block bytes directly.
//!
//! Each format has a module with the block geometry (`BLOCK_SIZE` elements, `TYPE_SIZE`
//! bytes), the byte offset of every field, and a `#[repr(C)]` struct with exactly that layout
//! (checked at compile time). Blocks are stored back to back with no padding, so in a tensor
//! block `i` starts at byte `i * TYPE_SIZE`; tensor data is therefore only 1- or 2-byte
//! aligned in general: read the structs with [`std::ptr::read_unaligned`] or read the fields
//! by offset.
//!
//! Conventions shared by all formats:
//!
//! * All multi-byte fields are little-endian. `f16` fields hold IEEE binary16 bits (`u16` in
//!   the structs); [`Q8_K`](q8_k) alone has an `f32` scale.
//! * A "nibble pair" byte holds two 4-bit quants: the low nibble (`b & 0x0F`) is the earlier
//!   element, the high nibble (`b >> 4`) the element a fixed stride later (16 for the 32-element
//!   formats, 32 for the K-quants). Nibbles are never interleaved element by element.
//! * Values are reconstructed in `f32` exactly as written in each module's formula; the
//!   operation order matters for bit-exactness (no fused multiply-add).
//!
//! Sources: `ggml-common.h` in llama.cpp and `gguf/quants.py` in the `gguf` Python package
//! (0.19.0), which the test vectors in `tests/data` come from.

/// Elements per K-quant super-block (`QK_K` in ggml).
pub const QK_K: usize = 256;

/// Bytes of packed 6-bit scales and mins in a Q4_K / Q5_K block (`K_SCALE_SIZE` in ggml).
pub const K_SCALE_SIZE: usize = 12;

/// Unpacks the 6-bit scale and 6-bit min of sub-block `j` (0..8) from the 12 packed bytes of a
/// Q4_K or Q5_K block (`get_scale_min_k4` in ggml).
///
/// Packing (`s_j` = scale of sub-block j, `m_j` = its min, bits 5..0):
///
/// ```text
/// byte 0..4  (j = 0..3):  bits 5..0 = s_j,          bits 7..6 = s_{j+4} bits 5..4
/// byte 4..8  (j = 0..3):  bits 5..0 = m_j,          bits 7..6 = m_{j+4} bits 5..4
/// byte 8..12 (j = 4..7):  bits 3..0 = s_j bits 3..0, bits 7..4 = m_j bits 3..0
/// ```
///
/// Out-of-range `j` is taken modulo 8.
#[inline]
pub fn get_scale_min_k4(j: usize, scales: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    let j = j & 7;
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Unpacks the sixteen 6-bit scales of a Q3_K block into signed values (`stored - 32`).
///
/// Packing of the 12 bytes (`s_i`, i = 0..16, each 6 bits):
///
/// ```text
/// byte k (k = 0..8):     bits 3..0 = s_k bits 3..0,     bits 7..4 = s_{k+8} bits 3..0
/// byte 8 + k (k = 0..4): bits 1..0 = s_k bits 5..4,     bits 3..2 = s_{k+4} bits 5..4,
///                        bits 5..4 = s_{k+8} bits 5..4, bits 7..6 = s_{k+12} bits 5..4
/// ```
#[inline]
pub fn q3_k_scales(scales: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = (scales[i % 8] >> (4 * (i / 8))) & 0x0F;
        let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        *o = ((low | (high << 4)) as i8) - 32;
    }
    out
}

macro_rules! assert_layout {
    ($ty:ty, $size:expr, $($field:ident = $off:expr),*) => {
        const _: () = {
            assert!(std::mem::size_of::<$ty>() == $size);
            $(assert!(std::mem::offset_of!($ty, $field) == $off);)*
        };
    };
}

/// Q4_0: 32 elements, 18 bytes. `x = (q - 8) * d`, `q` in 0..16.
///
/// ```text
/// offset 0   f16 d
/// offset 2   u8  qs[16]   element j = qs[j] & 0xF, element j + 16 = qs[j] >> 4
/// ```
pub mod q4_0 {
    pub const BLOCK_SIZE: usize = 32;
    pub const TYPE_SIZE: usize = 18;
    pub const D: usize = 0;
    pub const QS: usize = 2;
    /// `block_q4_0`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ4_0 {
        /// f16 bits of the scale.
        pub d: u16,
        pub qs: [u8; 16],
    }
    assert_layout!(BlockQ4_0, TYPE_SIZE, d = D, qs = QS);
}

/// Q4_1: 32 elements, 20 bytes. `x = q * d + m`, `q` in 0..16.
///
/// ```text
/// offset 0   f16 d
/// offset 2   f16 m        (the block minimum)
/// offset 4   u8  qs[16]   element j = qs[j] & 0xF, element j + 16 = qs[j] >> 4
/// ```
pub mod q4_1 {
    pub const BLOCK_SIZE: usize = 32;
    pub const TYPE_SIZE: usize = 20;
    pub const D: usize = 0;
    pub const M: usize = 2;
    pub const QS: usize = 4;
    /// `block_q4_1`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ4_1 {
        pub d: u16,
        pub m: u16,
        pub qs: [u8; 16],
    }
    assert_layout!(BlockQ4_1, TYPE_SIZE, d = D, m = M, qs = QS);
}

/// Q5_0: 32 elements, 22 bytes. `x = (q - 16) * d`, `q` in 0..32.
///
/// ```text
/// offset 0   f16 d
/// offset 2   u8  qh[4]    read as a little-endian u32 `h`: bit j is bit 4 of element j
/// offset 6   u8  qs[16]   low 4 bits: element j = qs[j] & 0xF, element j + 16 = qs[j] >> 4
/// ```
///
/// Element j (0..32) is `q = low_j | ((h >> j) & 1) << 4`. Note `qh` is at offset 2, so it is
/// never 4-byte aligned: read it with `u32::from_le_bytes`.
pub mod q5_0 {
    pub const BLOCK_SIZE: usize = 32;
    pub const TYPE_SIZE: usize = 22;
    pub const D: usize = 0;
    pub const QH: usize = 2;
    pub const QS: usize = 6;
    /// `block_q5_0`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ5_0 {
        pub d: u16,
        pub qh: [u8; 4],
        pub qs: [u8; 16],
    }
    assert_layout!(BlockQ5_0, TYPE_SIZE, d = D, qh = QH, qs = QS);
}

/// Q5_1: 32 elements, 24 bytes. `x = q * d + m`, `q` in 0..32.
///
/// ```text
/// offset 0   f16 d
/// offset 2   f16 m
/// offset 4   u8  qh[4]    little-endian u32 `h`: bit j is bit 4 of element j
/// offset 8   u8  qs[16]   low 4 bits, nibble order as Q5_0
/// ```
pub mod q5_1 {
    pub const BLOCK_SIZE: usize = 32;
    pub const TYPE_SIZE: usize = 24;
    pub const D: usize = 0;
    pub const M: usize = 2;
    pub const QH: usize = 4;
    pub const QS: usize = 8;
    /// `block_q5_1`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ5_1 {
        pub d: u16,
        pub m: u16,
        pub qh: [u8; 4],
        pub qs: [u8; 16],
    }
    assert_layout!(BlockQ5_1, TYPE_SIZE, d = D, m = M, qh = QH, qs = QS);
}

/// Q8_0: 32 elements, 34 bytes. `x = q * d`, `q` an `i8`.
///
/// ```text
/// offset 0   f16 d
/// offset 2   i8  qs[32]   element j = qs[j]
/// ```
pub mod q8_0 {
    pub const BLOCK_SIZE: usize = 32;
    pub const TYPE_SIZE: usize = 34;
    pub const D: usize = 0;
    pub const QS: usize = 2;
    /// `block_q8_0`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ8_0 {
        pub d: u16,
        pub qs: [i8; 32],
    }
    assert_layout!(BlockQ8_0, TYPE_SIZE, d = D, qs = QS);
}

/// Q8_1: 32 elements, 36 bytes; an activation format (the other operand of Q4_1/Q5_1 dot
/// products). `x = q * d`; `s = d * sum(qs)` (rounded to f16) serves the min term.
///
/// ```text
/// offset 0   f16 d
/// offset 2   f16 s
/// offset 4   i8  qs[32]
/// ```
pub mod q8_1 {
    pub const BLOCK_SIZE: usize = 32;
    pub const TYPE_SIZE: usize = 36;
    pub const D: usize = 0;
    pub const S: usize = 2;
    pub const QS: usize = 4;
    /// `block_q8_1`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ8_1 {
        pub d: u16,
        pub s: u16,
        pub qs: [i8; 32],
    }
    assert_layout!(BlockQ8_1, TYPE_SIZE, d = D, s = S, qs = QS);
}

/// Q2_K: 256 elements, 84 bytes; 16 sub-blocks of 16 with 4-bit scale and 4-bit min.
///
/// ```text
/// offset 0    u8  scales[16]  sub-block i: scale = scales[i] & 0xF, min = scales[i] >> 4
/// offset 16   u8  qs[64]      2-bit quants, see below
/// offset 80   f16 d           super-block scale of the scales
/// offset 82   f16 dmin        super-block scale of the mins
/// ```
///
/// Element `e` (0..256): half `h = e / 128`, `k = (e % 128) / 32`, `l = e % 32`;
/// `q = (qs[32*h + l] >> (2*k)) & 3`; sub-block `i = e / 16`;
/// `x = (d * (scales[i] & 0xF) as f32) * q - (dmin * (scales[i] >> 4) as f32)`.
pub mod q2_k {
    pub const BLOCK_SIZE: usize = 256;
    pub const TYPE_SIZE: usize = 84;
    pub const SCALES: usize = 0;
    pub const QS: usize = 16;
    pub const D: usize = 80;
    pub const DMIN: usize = 82;
    /// `block_q2_K`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ2K {
        pub scales: [u8; 16],
        pub qs: [u8; 64],
        pub d: u16,
        pub dmin: u16,
    }
    assert_layout!(
        BlockQ2K,
        TYPE_SIZE,
        scales = SCALES,
        qs = QS,
        d = D,
        dmin = DMIN
    );
}

/// Q3_K: 256 elements, 110 bytes; 16 sub-blocks of 16 with signed 6-bit scales.
///
/// ```text
/// offset 0    u8  hmask[32]   bit 2 of the quants: element e uses (hmask[e % 32] >> (e / 32)) & 1
/// offset 32   u8  qs[64]      low 2 bits, same order as Q2_K: (qs[32*(e/128) + e%32] >> (2*((e%128)/32))) & 3
/// offset 96   u8  scales[12]  16 packed 6-bit scales, see [`q3_k_scales`](super::q3_k_scales)
/// offset 108  f16 d
/// ```
///
/// `q = low - (if high bit set { 0 } else { 4 })` (so q is in -4..4), sub-block `i = e / 16`,
/// `x = (d * (s_i - 32) as f32) * q`.
pub mod q3_k {
    pub const BLOCK_SIZE: usize = 256;
    pub const TYPE_SIZE: usize = 110;
    pub const HMASK: usize = 0;
    pub const QS: usize = 32;
    pub const SCALES: usize = 96;
    pub const D: usize = 108;
    /// `block_q3_K`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ3K {
        pub hmask: [u8; 32],
        pub qs: [u8; 64],
        pub scales: [u8; 12],
        pub d: u16,
    }
    assert_layout!(
        BlockQ3K,
        TYPE_SIZE,
        hmask = HMASK,
        qs = QS,
        scales = SCALES,
        d = D
    );
}

/// Q4_K: 256 elements, 144 bytes; 8 sub-blocks of 32 with 6-bit scale and 6-bit min.
///
/// ```text
/// offset 0    f16 d           scale of the scales
/// offset 2    f16 dmin        scale of the mins
/// offset 4    u8  scales[12]  packed, see [`get_scale_min_k4`](super::get_scale_min_k4)
/// offset 16   u8  qs[128]     4-bit quants
/// ```
///
/// The quants come in 4 chunks of 64 elements, 32 bytes each: element `e` is in byte
/// `qs[32*(e/64) + e%32]`, low nibble when `(e/32)` is even, high nibble when odd. So byte
/// `qs[32*c + l]` holds element `64c + l` (low) and `64c + 32 + l` (high).
/// With `(sc, m) = get_scale_min_k4(e / 32)`: `x = (d * sc as f32) * q - (dmin * m as f32)`.
pub mod q4_k {
    pub const BLOCK_SIZE: usize = 256;
    pub const TYPE_SIZE: usize = 144;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QS: usize = 16;
    /// `block_q4_K`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ4K {
        pub d: u16,
        pub dmin: u16,
        pub scales: [u8; 12],
        pub qs: [u8; 128],
    }
    assert_layout!(
        BlockQ4K,
        TYPE_SIZE,
        d = D,
        dmin = DMIN,
        scales = SCALES,
        qs = QS
    );
}

/// Q5_K: 256 elements, 176 bytes; as Q4_K plus a fifth bit per quant.
///
/// ```text
/// offset 0    f16 d
/// offset 2    f16 dmin
/// offset 4    u8  scales[12]  as Q4_K
/// offset 16   u8  qh[32]      bit 4 of element e = (qh[e % 32] >> (e / 32)) & 1
/// offset 48   u8  qs[128]     low 4 bits, same order as Q4_K
/// ```
///
/// `x = (d * sc as f32) * q - (dmin * m as f32)`, `q` in 0..32.
pub mod q5_k {
    pub const BLOCK_SIZE: usize = 256;
    pub const TYPE_SIZE: usize = 176;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QH: usize = 16;
    pub const QS: usize = 48;
    /// `block_q5_K`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ5K {
        pub d: u16,
        pub dmin: u16,
        pub scales: [u8; 12],
        pub qh: [u8; 32],
        pub qs: [u8; 128],
    }
    assert_layout!(
        BlockQ5K,
        TYPE_SIZE,
        d = D,
        dmin = DMIN,
        scales = SCALES,
        qh = QH,
        qs = QS
    );
}

/// Q6_K: 256 elements, 210 bytes; 16 sub-blocks of 16 with signed 8-bit scales.
///
/// ```text
/// offset 0    u8  ql[128]     low 4 bits
/// offset 128  u8  qh[64]      high 2 bits
/// offset 192  i8  scales[16]
/// offset 208  f16 d
/// ```
///
/// Element `e`: half `h = e / 128`, `k = (e % 128) / 32` (0..4), `l = e % 32`:
/// low 4 bits from `ql[64*h + 32*(k & 1) + l]`, low nibble when `k < 2`, high nibble when
/// `k >= 2`; high 2 bits `(qh[32*h + l] >> (2*k)) & 3`. `q = (low | high << 4) - 32` (-32..32),
/// `x = (d * scales[e / 16] as f32) * q`.
pub mod q6_k {
    pub const BLOCK_SIZE: usize = 256;
    pub const TYPE_SIZE: usize = 210;
    pub const QL: usize = 0;
    pub const QH: usize = 128;
    pub const SCALES: usize = 192;
    pub const D: usize = 208;
    /// `block_q6_K`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ6K {
        pub ql: [u8; 128],
        pub qh: [u8; 64],
        pub scales: [i8; 16],
        pub d: u16,
    }
    assert_layout!(
        BlockQ6K,
        TYPE_SIZE,
        ql = QL,
        qh = QH,
        scales = SCALES,
        d = D
    );
}

/// Q8_K: 256 elements, 292 bytes; the activation format of K-quant dot products.
///
/// ```text
/// offset 0    f32 d          (note: f32, not f16; may be negative)
/// offset 4    i8  qs[256]    element e = qs[e]
/// offset 260  i16 bsums[16]  bsums[i] = sum of qs[16*i .. 16*i + 16]
/// ```
///
/// `x = d * q`.
pub mod q8_k {
    pub const BLOCK_SIZE: usize = 256;
    pub const TYPE_SIZE: usize = 292;
    pub const D: usize = 0;
    pub const QS: usize = 4;
    pub const BSUMS: usize = 260;
    /// `block_q8_K`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct BlockQ8K {
        pub d: f32,
        pub qs: [i8; 256],
        pub bsums: [i16; 16],
    }
    assert_layout!(BlockQ8K, TYPE_SIZE, d = D, qs = QS, bsums = BSUMS);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgmlType;

    #[test]
    fn module_geometry_matches_ggml_type() {
        let cases = [
            (GgmlType::Q4_0, q4_0::BLOCK_SIZE, q4_0::TYPE_SIZE),
            (GgmlType::Q4_1, q4_1::BLOCK_SIZE, q4_1::TYPE_SIZE),
            (GgmlType::Q5_0, q5_0::BLOCK_SIZE, q5_0::TYPE_SIZE),
            (GgmlType::Q5_1, q5_1::BLOCK_SIZE, q5_1::TYPE_SIZE),
            (GgmlType::Q8_0, q8_0::BLOCK_SIZE, q8_0::TYPE_SIZE),
            (GgmlType::Q8_1, q8_1::BLOCK_SIZE, q8_1::TYPE_SIZE),
            (GgmlType::Q2_K, q2_k::BLOCK_SIZE, q2_k::TYPE_SIZE),
            (GgmlType::Q3_K, q3_k::BLOCK_SIZE, q3_k::TYPE_SIZE),
            (GgmlType::Q4_K, q4_k::BLOCK_SIZE, q4_k::TYPE_SIZE),
            (GgmlType::Q5_K, q5_k::BLOCK_SIZE, q5_k::TYPE_SIZE),
            (GgmlType::Q6_K, q6_k::BLOCK_SIZE, q6_k::TYPE_SIZE),
            (GgmlType::Q8_K, q8_k::BLOCK_SIZE, q8_k::TYPE_SIZE),
        ];
        for (ty, bs, ts) in cases {
            assert_eq!((ty.block_size(), ty.type_size()), (bs, ts), "{ty}");
        }
    }

    #[test]
    fn scale_min_k4_unpacks_every_bit() {
        // Pack known 6-bit values the way quantize_row_q4_K_ref does, then unpack.
        let sc: [u8; 8] = [0, 63, 17, 42, 33, 5, 63, 48];
        let mn: [u8; 8] = [63, 1, 32, 16, 7, 60, 31, 0];
        let mut packed = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                packed[j] = sc[j];
                packed[j + 4] = mn[j];
            } else {
                packed[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
                packed[j - 4] |= (sc[j] >> 4) << 6;
                packed[j] |= (mn[j] >> 4) << 6;
            }
        }
        for j in 0..8 {
            assert_eq!(
                get_scale_min_k4(j, &packed),
                (sc[j], mn[j]),
                "sub-block {j}"
            );
        }
    }

    #[test]
    fn q3_k_scales_unpack() {
        // All 6-bit fields set to index i + 32 * (i odd): check against a bit-by-bit packer.
        let want: [u8; 16] = std::array::from_fn(|i| (i as u8 * 3 + 1) & 63);
        let mut packed = [0u8; 12];
        for (i, &s) in want.iter().enumerate() {
            packed[i % 8] |= (s & 0xF) << (4 * (i / 8));
            packed[8 + i % 4] |= (s >> 4) << (2 * (i / 4));
        }
        let got = q3_k_scales(&packed);
        for i in 0..16 {
            assert_eq!(got[i], want[i] as i8 - 32, "scale {i}");
        }
    }
}
