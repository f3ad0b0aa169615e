//! Bit-exact checks against vectors generated with the `gguf` Python package (see
//! `tests/data/README.md` and `tests/gen_vectors.py`). No Python is needed to run these.

use std::path::{Path, PathBuf};

use quant::{dequantize, quantize, GgmlType};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
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
    let list = manifest["cases"]
        .as_array()
        .expect("manifest has a cases array");
    list.iter()
        .map(|c| {
            let s = |k: &str| {
                c[k].as_str()
                    .unwrap_or_else(|| panic!("case field {k}"))
                    .to_string()
            };
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

/// NaN payloads are not compared: numpy keeps signalling NaNs signalling (and keeps a payload
/// bit) when converting between f16 and f32, while ggml (F16C instructions, or its scalar
/// fallback) and the `half` crate quiet them. Sign and NaN-ness must still agree.
fn both_nan_same_sign(a: u64, b: u64, bits: u32) -> bool {
    let (exp_mask, man_mask) = match bits {
        16 => (0x7c00u64, 0x03ffu64),
        _ => (0x7f80_0000u64, 0x007f_ffffu64),
    };
    let is_nan = |v: u64| v & exp_mask == exp_mask && v & man_mask != 0;
    is_nan(a) && is_nan(b) && (a >> (bits - 1)) == (b >> (bits - 1))
}

#[test]
fn manifest_covers_every_reference_format() {
    let cases = cases();
    let has = |op: &str, ty: GgmlType| cases.iter().any(|c| c.op == op && c.ty == ty);
    use GgmlType::*;
    for ty in [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
    ] {
        assert!(has("dequantize", ty), "no dequantize vectors for {ty}");
    }
    for ty in [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K,
    ] {
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
            if both_nan_same_sign(g.to_bits() as u64, w.to_bits() as u64, 32) {
                continue;
            }
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
            if c.ty == GgmlType::F16 {
                let g = u16::from_le_bytes([g[0], g[1]]) as u64;
                let w = u16::from_le_bytes([w[0], w[1]]) as u64;
                if both_nan_same_sign(g, w, 16) {
                    continue;
                }
            }
            assert_eq!(
                g,
                w,
                "{}: block {b} differs (its first input {:e})",
                c.name,
                x[b * c.ty.block_size()]
            );
        }
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} quantize cases");
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
        let bs = c.ty.block_size();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            // Blocks whose f16 scale overflowed dequantize to infinities and NaNs.
            if a[i / bs * bs..][..bs].iter().any(|v| !v.is_finite()) {
                continue;
            }
            let tol = a[i / bs * bs..][..bs]
                .iter()
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

/// The inputs of the bulk cases, regenerated here exactly as `bulk_input` in gen_vectors.py
/// does (an xorshift64* stream turned into f32 with exact operations), so that only hashes of
/// the reference output need committing.
fn bulk_input(block_size: usize, n_blocks: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut out = Vec::with_capacity(block_size * n_blocks);
    for b in 0..n_blocks {
        let k = (next() >> 59) as i32 - 16;
        let scale = 2f32.powi(k);
        let kind = b % 4;
        let off = [0.0f32, 0.0, 0.5, -0.75][kind];
        let outlier = if kind == 1 {
            Some(((next() >> 32) % block_size as u64) as usize)
        } else {
            None
        };
        let start = out.len();
        for _ in 0..block_size {
            let u1 = (next() >> 40) as f32 * (1.0 / 16_777_216.0);
            let u2 = (next() >> 40) as f32 * (1.0 / 16_777_216.0);
            out.push((((u1 + u2) - 1.0) + off) * scale);
        }
        if let Some(o) = outlier {
            out[start + o] *= 8.0;
        }
        if b % 16 == 15 {
            out[start..].fill(0.0);
        }
    }
    out
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[test]
fn bulk_quantize_matches_reference_hashes() {
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let list = manifest["bulk_cases"]
        .as_array()
        .expect("manifest has bulk_cases");
    let mut seen = Vec::new();
    for c in list {
        let ty_name = c["type"].as_str().unwrap();
        let ty = GgmlType::ALL
            .iter()
            .copied()
            .find(|t| t.name() == ty_name)
            .unwrap();
        let blocks = c["blocks"].as_u64().unwrap() as usize;
        let seed = c["seed"].as_u64().unwrap();
        let group = c["group_blocks"].as_u64().unwrap() as usize;
        let x = bulk_input(ty.block_size(), blocks, seed);
        let q = quantize(ty, &x).unwrap();
        let hashes = c["fnv1a64"].as_array().unwrap();
        let step = group * ty.type_size();
        assert_eq!(hashes.len(), q.len().div_ceil(step), "{ty}: hash count");
        for (g, (chunk, want)) in q.chunks(step).zip(hashes).enumerate() {
            let want = u64::from_str_radix(want.as_str().unwrap(), 16).unwrap();
            assert_eq!(
                fnv1a64(chunk),
                want,
                "{ty}: blocks {}..{} differ from the reference (seed {seed})",
                g * group,
                (g + 1) * group
            );
        }
        seen.push(ty);
    }
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K] {
        assert!(seen.contains(&ty), "no bulk vectors for {ty}");
    }
}
