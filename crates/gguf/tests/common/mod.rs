//! Helpers shared by the integration tests: a byte-level builder for hand-made (often
//! broken) GGUF files, a small valid file, and a seeded xorshift generator.
#![allow(dead_code)]

use std::borrow::Cow;

use gguf::{GgufWriter, Value, ValueType, WriterTensor};
use quant::GgmlType;

/// Appends little-endian GGUF fields to a byte vector.
#[derive(Clone, Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version and the two counts (24 bytes).
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    pub fn pos(&self) -> u64 {
        self.0.len() as u64
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// Key and type tag; the caller appends the value.
    pub fn key(&mut self, key: &str, ty: ValueType) -> &mut Self {
        self.str(key).u32(ty as u32)
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.key(key, ValueType::U32).u32(v)
    }
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.key(key, ValueType::String).str(v)
    }
    /// A tensor descriptor with a raw type id.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of `align`.
    pub fn pad(&mut self, align: u64) -> &mut Self {
        while !(self.0.len() as u64).is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// xorshift64*: tiny, deterministic, good enough to drive mutations and fill tensors.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Metadata exercising every value type, nesting, empty arrays and non-ASCII text.
pub fn all_values() -> Vec<(String, Value)> {
    let strs = |v: &[&str]| {
        Value::Array(
            ValueType::String,
            v.iter().map(|s| Value::String(s.to_string())).collect(),
        )
    };
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("t.u8".into(), Value::U8(u8::MAX)),
        ("t.i8".into(), Value::I8(i8::MIN)),
        ("t.u16".into(), Value::U16(0xBEEF)),
        ("t.i16".into(), Value::I16(-12345)),
        ("t.u32".into(), Value::U32(u32::MAX)),
        ("t.i32".into(), Value::I32(i32::MIN)),
        ("t.f32".into(), Value::F32(-1.5e-7)),
        ("t.f32.inf".into(), Value::F32(f32::INFINITY)),
        ("t.f32.negzero".into(), Value::F32(-0.0)),
        ("t.bool.true".into(), Value::Bool(true)),
        ("t.bool.false".into(), Value::Bool(false)),
        ("t.string.empty".into(), Value::String(String::new())),
        (
            "t.string.unicode".into(),
            Value::String("héllo wörld · 日本語 · 🦀🚀 · e\u{301} · \u{0}nul · \u{FFFD}".into()),
        ),
        ("t.u64".into(), Value::U64(u64::MAX)),
        ("t.i64".into(), Value::I64(i64::MIN)),
        ("t.f64".into(), Value::F64(std::f64::consts::PI)),
        (
            "t.array.u8".into(),
            Value::Array(
                ValueType::U8,
                vec![Value::U8(0), Value::U8(1), Value::U8(255)],
            ),
        ),
        (
            "t.array.i16".into(),
            Value::Array(ValueType::I16, vec![Value::I16(-1), Value::I16(i16::MAX)]),
        ),
        (
            "t.array.f32".into(),
            Value::Array(ValueType::F32, vec![Value::F32(0.25), Value::F32(-3.0)]),
        ),
        (
            "t.array.bool".into(),
            Value::Array(ValueType::Bool, vec![Value::Bool(true), Value::Bool(false)]),
        ),
        (
            "t.array.i64".into(),
            Value::Array(ValueType::I64, vec![Value::I64(-7), Value::I64(i64::MAX)]),
        ),
        (
            "t.array.f64".into(),
            Value::Array(ValueType::F64, vec![Value::F64(1e300)]),
        ),
        (
            "t.array.string".into(),
            strs(&["a", "", "Ġthe", "▁über", "🦀"]),
        ),
        (
            "t.array.empty.u32".into(),
            Value::Array(ValueType::U32, vec![]),
        ),
        (
            "t.array.empty.string".into(),
            Value::Array(ValueType::String, vec![]),
        ),
        (
            "t.array.empty.array".into(),
            Value::Array(ValueType::Array, vec![]),
        ),
        (
            "t.array.array.string".into(),
            Value::Array(
                ValueType::Array,
                vec![strs(&["x", "yz"]), strs(&[]), strs(&["日本", "🦀", ""])],
            ),
        ),
        (
            "t.array.array.mixed".into(),
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::U64, vec![Value::U64(1), Value::U64(2)]),
                    Value::Array(
                        ValueType::Array,
                        vec![Value::Array(ValueType::Bool, vec![Value::Bool(true)])],
                    ),
                ],
            ),
        ),
        ("ключ.🔑".into(), Value::String("unicode key".into())),
    ]
}

/// Shapes with whole blocks for several GGML types, and their byte sizes.
pub fn tensor_specs() -> Vec<(&'static str, Vec<u64>, GgmlType)> {
    vec![
        ("f32.vec", vec![7], GgmlType::F32),
        ("f16.mat", vec![5, 3], GgmlType::F16),
        ("bf16.3d", vec![4, 3, 2], GgmlType::BF16),
        ("q4_0", vec![64, 3], GgmlType::Q4_0),
        ("q4_1", vec![32, 2, 1, 2], GgmlType::Q4_1),
        ("q8_0", vec![96], GgmlType::Q8_0),
        ("q4_k", vec![256, 2], GgmlType::Q4_K),
        ("q6_k", vec![512], GgmlType::Q6_K),
        ("i8", vec![3], GgmlType::I8),
        ("i32", vec![2, 2], GgmlType::I32),
    ]
}

/// A small valid file: a few metadata entries of mixed types and three tensors. The last
/// tensor's size (64 bytes) is a multiple of the alignment, so the file ends exactly where
/// its data ends and every strict prefix is invalid.
pub fn small_valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("general.name", Value::String("tiny ü".into()));
    w.set("llama.block_count", Value::U32(2));
    w.set("t.flag", Value::Bool(true));
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            ["<s>", "</s>", "a"]
                .iter()
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
    );
    w.set(
        "t.nested",
        Value::Array(
            ValueType::Array,
            vec![Value::Array(ValueType::Bool, vec![Value::Bool(false)])],
        ),
    );
    w.set(
        "t.scores",
        Value::Array(ValueType::F32, vec![Value::F32(0.5); 3]),
    );
    let mut rng = XorShift(7);
    for (name, dims, ty) in [
        ("a", vec![3u64, 2], GgmlType::F32),
        ("b", vec![32], GgmlType::Q4_0),
        ("c", vec![16], GgmlType::F32),
    ] {
        let n = dims.iter().product();
        let len = ty.bytes_for(n).unwrap() as usize;
        w.add_tensor(WriterTensor {
            name: name.into(),
            dims,
            ty,
            data: Cow::Owned(rng.bytes(len)),
        })
        .unwrap();
    }
    let mut out = Vec::new();
    w.write(&mut out).unwrap();
    out
}
