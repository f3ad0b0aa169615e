//! Hostile or broken metadata gives typed errors, never panics; and a Hugging Face
//! tokenizer.json works behind the same surface.

use gguf::{GgufFile, GgufWriter, Value, ValueType};
use tokenizer::{Tokenizer, TokenizerError, TokenizerKind, VocabType};

fn strs(v: &[&str]) -> Value {
    Value::Array(
        ValueType::String,
        v.iter().map(|s| Value::String(s.to_string())).collect(),
    )
}

/// A small SentencePiece vocabulary: control tokens, byte tokens, a few pieces.
fn spm_meta() -> Vec<(&'static str, Value)> {
    let mut toks = vec!["<unk>", "<s>", "</s>"];
    let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    toks.extend(bytes.iter().map(|s| s.as_str()));
    toks.extend(["▁", "h", "i", "hi", "▁hi", "▁h"]);
    let n = toks.len();
    let mut types = vec![2i32, 3, 3];
    types.extend(std::iter::repeat_n(6, 256));
    types.extend(std::iter::repeat_n(1, 6));
    let mut scores = vec![0.0f32; n];
    scores[n - 3] = -1.0; // hi
    scores[n - 2] = -0.5; // ▁hi
    scores[n - 1] = -2.0; // ▁h
    vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strs(&toks)),
        (
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
        ),
    ]
}

fn build(meta: &[(&str, Value)]) -> Result<Tokenizer, TokenizerError> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.set(*k, v.clone());
    }
    let mut bytes = Vec::new();
    w.write(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(bytes).unwrap();
    Tokenizer::from_gguf(&f)
}

fn with(
    mut meta: Vec<(&'static str, Value)>,
    k: &'static str,
    v: Option<Value>,
) -> Vec<(&'static str, Value)> {
    meta.retain(|(key, _)| *key != k);
    if let Some(v) = v {
        meta.push((k, v));
    }
    meta
}

#[test]
fn small_spm_vocab_works() {
    let tok = build(&spm_meta()).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Gguf(VocabType::Spm));
    let ids = tok.encode("hi hi", true, false);
    let hi = tok.token_id("▁hi").unwrap();
    assert_eq!(ids, vec![1, hi, hi]);
    assert_eq!(tok.decode(&ids, false), "hi hi");
    // Unknown characters fall back to bytes.
    let ids = tok.encode("é", false, false);
    assert_eq!(ids.len(), 3, "▁ + two UTF-8 bytes: {ids:?}");
    assert_eq!(tok.decode(&ids, false), "é");
    // Out-of-range ids decode to nothing rather than panicking.
    assert_eq!(tok.token_to_piece(1_000_000, true), b"");
    assert!(!tok.is_eog(1_000_000));
}

#[test]
fn unknown_model_is_named() {
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.model",
        Some(Value::String("foo".into())),
    ))
    .unwrap_err();
    assert!(
        matches!(e, TokenizerError::UnknownModel { ref model } if model == "foo"),
        "{e}"
    );
    assert!(e.to_string().contains("\"foo\"") && e.to_string().contains("tokenizer.ggml.model"));
}

#[test]
fn missing_keys_are_named() {
    let e = build(&with(spm_meta(), "tokenizer.ggml.tokens", None)).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");
    let e = build(&with(spm_meta(), "tokenizer.ggml.model", None)).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");
    // gpt2 without merges
    let meta = with(
        spm_meta(),
        "tokenizer.ggml.model",
        Some(Value::String("gpt2".into())),
    );
    let e = build(&meta).unwrap_err();
    assert!(
        matches!(e, TokenizerError::MissingKey { ref key } if key == "tokenizer.ggml.merges"),
        "{e}"
    );
}

#[test]
fn truncated_arrays_are_errors() {
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.scores",
        Some(Value::Array(ValueType::F32, vec![Value::F32(0.0); 3])),
    ))
    .unwrap_err();
    assert!(
        matches!(e, TokenizerError::LengthMismatch { found: 3, .. }),
        "{e}"
    );
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.token_type",
        Some(Value::Array(ValueType::I32, vec![Value::I32(1); 10])),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.token_type"), "{e}");
}

#[test]
fn bad_ids_and_types_are_errors() {
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.bos_token_id",
        Some(Value::U32(99_999)),
    ))
    .unwrap_err();
    assert!(
        matches!(e, TokenizerError::IdOutOfRange { id: 99_999, .. }),
        "{e}"
    );
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.eos_token_id",
        Some(Value::I32(-1)),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.eos_token_id"), "{e}");
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.add_bos_token",
        Some(Value::U32(1)),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenizerError::WrongType { .. }), "{e}");
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.tokens",
        Some(Value::U32(5)),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenizerError::WrongType { .. }), "{e}");
    let e = build(&with(
        spm_meta(),
        "tokenizer.ggml.tokens",
        Some(Value::Array(ValueType::U32, vec![Value::U32(1); 265])),
    ))
    .unwrap_err();
    assert!(
        matches!(e, TokenizerError::BadEntry { index: 0, .. }),
        "{e}"
    );
    let e = build(&with(spm_meta(), "tokenizer.ggml.tokens", Some(strs(&[])))).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    let mut meta = with(
        spm_meta(),
        "tokenizer.ggml.model",
        Some(Value::String("gpt2".into())),
    );
    meta.push(("tokenizer.ggml.merges", strs(&["h i"])));
    meta.push(("tokenizer.ggml.pre", Value::String("nonesuch".into())));
    let e = build(&meta).unwrap_err();
    assert!(
        matches!(e, TokenizerError::UnknownPreTokenizer { ref pre } if pre == "nonesuch"),
        "{e}"
    );
}

#[test]
fn empty_and_duplicate_tokens_do_not_panic() {
    let mut meta = with(spm_meta(), "tokenizer.ggml.scores", None);
    meta = with(meta, "tokenizer.ggml.token_type", None);
    meta = with(
        meta,
        "tokenizer.ggml.tokens",
        Some(strs(&["", "a", "a", "<0x41>"])),
    );
    let tok = build(&meta).unwrap();
    assert_eq!(tok.token_text(0).as_deref(), Some("[EMPTY_0]"));
    let _ = tok.encode("aaa bbb ☃", true, true);
    let _ = tok.decode(&[0, 1, 2, 3, 77], true);
}

#[test]
fn hf_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let json = r#"{
      "version": "1.0",
      "truncation": null, "padding": null,
      "added_tokens": [
        {"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      "post_processor": null,
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "vocab": {"<|endoftext|>": 0, "h": 1, "i": 2, "Ġ": 3, "hi": 4, "Ġhi": 5, "ð": 6, "Ł": 7, "¦": 8, "Ģ": 9},
                "merges": ["h i", "Ġ hi"]}
    }"#;
    std::fs::write(&path, json).unwrap();
    let tok = Tokenizer::from_hf_json(&path).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::HuggingFace);
    assert_eq!(tok.encode("hi hi", false, true), vec![4, 5]);
    assert_eq!(tok.encode("hi<|endoftext|>", false, true), vec![4, 0]);
    assert_ne!(tok.encode("hi<|endoftext|>", false, false), vec![4, 0]);
    assert_eq!(tok.decode(&[4, 5], false), "hi hi");
    assert_eq!(tok.token_to_piece(5, false), b" hi");
    assert!(tok.is_eog(0));
    assert_eq!(tok.eos_id(), Some(0));
    let mut dec = tok.stream_decoder(false);
    // 🦀 = F0 9F A6 80 -> ð Ł ¦ Ģ in the byte map
    assert_eq!(dec.push(6), "");
    assert_eq!(dec.push(7), "");
    assert_eq!(dec.push(8), "");
    assert_eq!(dec.push(9), "🦀");
    let e = Tokenizer::from_hf_json(dir.path().join("missing.json")).unwrap_err();
    assert!(e.to_string().contains("missing.json"), "{e}");
}
