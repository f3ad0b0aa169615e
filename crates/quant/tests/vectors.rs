//! Bit-exact checks against vectors generated with the `gguf` Python package (see
//! `tests/data/README.md` and `tests/gen_vectors.py`). No Python is needed to run these.

use std::path::{Path, PathBuf};

use quant::{dequantize, quantize, GgmlType};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data")
}

struct Case {
    name: String,
    ty: GgmlType,
    op: String,
    elements: usize,
    input: Vec<u8>,
    expected: Vec<u8>,
}

fn read(name: &str) -> Vec<u8> {
    let p = data_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read test vector {}: {e}", p.display()))
}

fn cases() -> Vec<Case> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&read("manifest.json")).expect("manifest.json is valid JSON");
    let list = manifest["cases"].as_array().expect("manifest has a cases array");
    list.iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("case field {k}")).to_string();
            let ty_name = s("type");
            let ty = GgmlType::ALL
                .iter()
                .copied()
                .find(|t| t.name() == ty_name)
                .unwrap_or_else(|| panic!("unknown type {ty_name}"));
            Case {
                name: s("name"),
                ty,
                op: s("op"),
                elements: c["elements"].as_u64().expect("elements") as usize,
                input: read(&s("input")),
                expected: read(&s("expected")),
            }
        })
        .collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn manifest_covers_every_reference_format() {
    let cases = cases();
    let has = |op: &str, ty: GgmlType| cases.iter().any(|c| c.op == op && c.ty == ty);
    use GgmlType::*;
    for ty in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        assert!(has("dequantize", ty), "no dequantize vectors for {ty}");
    }
    for ty in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0] {
        assert!(has("quantize", ty), "no quantize vectors for {ty}");
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_exactly() {
    let mut checked = 0;
    for c in cases().iter().filter(|c| c.op == "dequantize") {
        let want = f32s(&c.expected);
        assert_eq!(want.len(), c.elements, "{}", c.name);
        let mut got = vec![0f32; c.elements];
        dequantize(c.ty, &c.input, &mut got).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{}: element {i} (block {}): got {g:e} want {w:e}",
                c.name,
                i / c.ty.block_size()
            );
        }
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} dequantize cases");
}

#[test]
fn quantize_matches_gguf_py_bit_exactly() {
    let mut checked = 0;
    for c in cases().iter().filter(|c| c.op == "quantize") {
        let x = f32s(&c.input);
        assert_eq!(x.len(), c.elements, "{}", c.name);
        let got = quantize(c.ty, &x).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(got.len(), c.expected.len(), "{}: byte count", c.name);
        let ts = c.ty.type_size();
        for (b, (g, w)) in got.chunks(ts).zip(c.expected.chunks(ts)).enumerate() {
            assert_eq!(g, w, "{}: block {b} differs", c.name);
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} quantize cases");
}

/// Quantizing, then dequantizing, the reference's own quantized bytes must agree with the
/// reference dequantization of them (ties the two directions together).
#[test]
fn quantize_then_dequantize_round_trips_reference_bytes() {
    for c in cases().iter().filter(|c| c.op == "quantize") {
        let mut a = vec![0f32; c.elements];
        dequantize(c.ty, &c.expected, &mut a).unwrap();
        let again = quantize(c.ty, &a).unwrap();
        let mut b = vec![0f32; c.elements];
        dequantize(c.ty, &again, &mut b).unwrap();
        // Re-quantizing dequantized values is not always idempotent for block formats (the
        // scale is re-derived), but it must stay close.
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if x.is_nan() {
                continue;
            }
            let tol = a[i / c.ty.block_size() * c.ty.block_size()..][..c.ty.block_size()]
                .iter()
                .filter(|v| v.is_finite())
                .fold(0f32, |m, v| m.max(v.abs()))
                * 0.07;
            assert!(
                (x - y).abs() <= tol || x == y,
                "{}: element {i}: {x} vs {y}",
                c.name
            );
        }
    }
}
