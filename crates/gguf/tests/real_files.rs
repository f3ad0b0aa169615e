//! Real model files fetched by `scripts/fetch-models`. These tests fail (they do not skip)
//! when a file is missing, with a message saying how to get it.

use std::borrow::Cow;

use gguf::{GgufFile, GgufWriter, Value, ValueType, WriterTensor};
use quant::GgmlType;

fn model(name: &str) -> GgufFile {
    let path = testdata::model(name);
    GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shape(f: &GgufFile, name: &str) -> (Vec<u64>, GgmlType) {
    let t = f.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    (t.dims.clone(), t.ty)
}

/// Facts every file written by llama.cpp / gguf-py has: tensors tile the data section in
/// descriptor order, each at the previous one's end rounded up to the alignment, and the
/// file ends at the last one's padded end.
fn check_layout(f: &GgufFile) {
    let a = f.alignment();
    let mut expect = f.data_offset();
    for t in f.tensors() {
        assert_eq!(t.offset, expect, "{} offset", t.name);
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
        assert_eq!(Some(t.n_bytes), t.ty.bytes_for(t.n_elements()));
        expect = (t.offset + t.n_bytes).div_ceil(a) * a;
    }
    assert_eq!(
        expect,
        f.len(),
        "file ends at the padded end of the last tensor"
    );
}

#[test]
fn tiny_llama() {
    let f = model("tiny.gguf");
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u32("llama.embedding_length"), Some(16));
    assert_eq!(f.get_u32("llama.block_count"), Some(2));
    assert_eq!(f.get_u32("llama.attention.head_count"), Some(4));
    assert_eq!(f.get_u32("llama.context_length"), Some(2048));
    assert_eq!(f.get_u32("general.file_type"), Some(1));
    assert!((f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap() - 1e-6).abs() < 1e-9);
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("llama"));
    let tokens = f.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 32000);
    assert_eq!(tokens[1].as_str(), Some("<s>"));
    assert_eq!(f.get_array("tokenizer.ggml.scores").unwrap().len(), 32000);
    assert!(matches!(
        f.get("tokenizer.ggml.token_type"),
        Some(Value::Array(ValueType::I32, v)) if v.len() == 32000
    ));
    assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id"), Some(1));

    assert_eq!(f.tensors().len(), 21);
    assert_eq!(
        shape(&f, "token_embd.weight"),
        (vec![16, 32000], GgmlType::F16)
    );
    assert_eq!(shape(&f, "output.weight"), (vec![16, 32000], GgmlType::F16));
    assert_eq!(
        shape(&f, "blk.0.ffn_gate.weight"),
        (vec![16, 64], GgmlType::F16)
    );
    assert_eq!(shape(&f, "output_norm.weight"), (vec![16], GgmlType::F32));
    assert_eq!(
        f.tensor("token_embd.weight").unwrap().n_bytes,
        16 * 32000 * 2
    );
    check_layout(&f);
}

#[test]
fn smollm2_135m_q4_1() {
    let f = model("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u32("llama.block_count"), Some(30));
    assert_eq!(f.get_u32("llama.embedding_length"), Some(576));
    assert_eq!(f.get_u32("llama.attention.head_count_kv"), Some(3));
    assert_eq!(f.get_f32("llama.rope.freq_base"), Some(100000.0));
    assert_eq!(f.get_u32("general.file_type"), Some(3));
    assert_eq!(f.get_bool("tokenizer.ggml.add_bos_token"), Some(false));
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(f.get_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    let merges = f.get_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len(), 48900);
    assert_eq!(merges[0].as_str(), Some("Ġ t"));
    assert!(f
        .get_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
    assert_eq!(
        f.get_array("general.languages").unwrap(),
        &[Value::String("en".into())][..]
    );

    assert_eq!(f.tensors().len(), 272);
    assert_eq!(
        shape(&f, "token_embd.weight"),
        (vec![576, 49152], GgmlType::Q8_0)
    );
    assert_eq!(
        shape(&f, "blk.0.ffn_down.weight"),
        (vec![1536, 576], GgmlType::Q4_1)
    );
    assert_eq!(
        shape(&f, "blk.9.attn_v.weight"),
        (vec![576, 192], GgmlType::Q4_1)
    );
    assert_eq!(shape(&f, "output_norm.weight"), (vec![576], GgmlType::F32));
    let count = |ty| f.tensors().iter().filter(|t| t.ty == ty).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );
    check_layout(&f);
}

#[test]
fn gemma3_270m_q4_k_m() {
    let f = model("gemma-3-270m-q4_k_m.gguf");
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture"), Some("gemma3"));
    assert_eq!(f.get_u32("gemma3.block_count"), Some(18));
    assert_eq!(f.get_u32("gemma3.embedding_length"), Some(640));
    assert_eq!(f.get_u32("gemma3.attention.key_length"), Some(256));
    assert_eq!(f.get_u32("gemma3.attention.sliding_window"), Some(512));
    assert_eq!(f.get_f32("gemma3.rope.freq_base"), Some(1_000_000.0));
    assert_eq!(f.get_u32("general.file_type"), Some(15));
    assert_eq!(f.get_bool("tokenizer.ggml.add_bos_token"), Some(true));
    assert_eq!(f.get_array("tokenizer.ggml.tokens").unwrap().len(), 262144);
    assert_eq!(f.get_array("tokenizer.ggml.scores").unwrap().len(), 262144);
    assert_eq!(
        f.get_array("tokenizer.ggml.token_type").unwrap().len(),
        262144
    );
    assert_eq!(
        f.get_array("general.tags").unwrap()[0].as_str(),
        Some("gemma3")
    );

    assert_eq!(f.tensors().len(), 236);
    assert_eq!(
        shape(&f, "token_embd.weight"),
        (vec![640, 262144], GgmlType::Q8_0)
    );
    assert_eq!(
        shape(&f, "blk.0.attn_k.weight"),
        (vec![640, 256], GgmlType::Q5_0)
    );
    assert_eq!(
        shape(&f, "blk.0.attn_output.weight"),
        (vec![1024, 640], GgmlType::Q4_K)
    );
    assert_eq!(
        shape(&f, "blk.0.attn_k_norm.weight"),
        (vec![256], GgmlType::F32)
    );
    assert_eq!(shape(&f, "output_norm.weight"), (vec![640], GgmlType::F32));
    assert!(f.tensors().iter().any(|t| t.ty == GgmlType::Q6_K));
    check_layout(&f);
}

/// Copies every metadata entry and tensor of `f` into a writer.
fn copy(f: &GgufFile) -> GgufWriter<'_> {
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.set(k.clone(), v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(WriterTensor {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: t.ty,
            data: Cow::Borrowed(f.tensor_data(t)),
        })
        .unwrap();
    }
    w
}

fn assert_same_content(a: &GgufFile, b: &GgufFile) {
    assert_eq!(a.version(), b.version());
    assert_eq!(a.alignment(), b.alignment());
    assert_eq!(a.data_offset(), b.data_offset());
    assert!(a.metadata() == b.metadata(), "metadata differs");
    assert_eq!(a.tensors().len(), b.tensors().len());
    for (x, y) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!(
            (&x.name, &x.dims, x.ty, x.offset, x.n_bytes),
            (&y.name, &y.dims, y.ty, y.offset, y.n_bytes)
        );
        assert!(
            a.tensor_data(x) == b.tensor_data(y),
            "{} data differs",
            x.name
        );
    }
}

/// Reading tiny.gguf and writing everything back gives the same bytes: our writer uses the
/// layout llama.cpp's and gguf-py's writers use (same field order, tensors packed in
/// descriptor order at aligned offsets, zero padding, last tensor padded).
#[test]
fn tiny_round_trip_is_byte_identical() {
    let f = model("tiny.gguf");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-copy.gguf");
    copy(&f).write_to_path(&out).unwrap();
    let g = GgufFile::open(&out).unwrap();
    assert_same_content(&f, &g);
    let original = std::fs::read(f.path()).unwrap();
    let rewritten = std::fs::read(&out).unwrap();
    assert_eq!(original.len(), rewritten.len());
    let first_diff = original.iter().zip(&rewritten).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "re-written tiny.gguf differs from the original"
    );
}

/// The same for the two real models, in memory.
#[test]
fn real_models_round_trip_byte_identical() {
    for name in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        let f = model(name);
        let mut out = Vec::with_capacity(f.len() as usize);
        copy(&f).write(&mut out).unwrap();
        let original = std::fs::read(f.path()).unwrap();
        let first_diff = original.iter().zip(&out).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{name}: first differing byte");
        assert_eq!(original.len(), out.len(), "{name}: length");
        let g = GgufFile::from_bytes(out).unwrap();
        assert_same_content(&f, &g);
    }
}
