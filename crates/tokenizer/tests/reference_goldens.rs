//! Real models held to llama.cpp's `llama-tokenize` ids (tests/data/*.tokenize.json), plus
//! decode round trips and streaming decode on the same vocabularies.

mod common;

use serde_json::Value;
use tokenizer::Tokenizer;

fn load(model_file: &str, fetch: &str) -> Tokenizer {
    let p = common::require(&format!("models/{model_file}"), fetch);
    Tokenizer::from_gguf_path(&p).unwrap_or_else(|e| panic!("{model_file}: {e}"))
}

fn cases(json_file: &str) -> Vec<Value> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(json_file);
    let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_goldens(tok: &Tokenizer, json_file: &str) {
    let mut failures = Vec::new();
    let cases = cases(json_file);
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        for (key, parse_special) in [("ids_parse_special", true), ("ids_no_parse_special", false)] {
            let want = ids(&c[key]);
            let got = tok.encode(text, true, parse_special);
            if got != want {
                failures.push(format!(
                    "  {} {key}: {text:?}\n    want {want:?}\n    got  {got:?}",
                    c["name"]
                ));
            }
        }
    }
    eprintln!(
        "{json_file}: {}/{} pass",
        2 * cases.len() - failures.len(),
        2 * cases.len()
    );
    assert!(failures.is_empty(), "{json_file}:\n{}", failures.join("\n"));
}

fn check_round_trip(tok: &Tokenizer, json_file: &str) {
    for c in cases(json_file) {
        let text = c["text"].as_str().unwrap();
        // Without special parsing, special-looking text is plain text and must come back.
        let ids = tok.encode(text, true, false);
        assert_eq!(tok.decode(&ids, false), text, "round trip of {}", c["name"]);
        // With special parsing, rendering special tokens gives the text back.
        let ids = tok.encode(text, false, true);
        assert_eq!(
            tok.decode(&ids, true),
            text,
            "special round trip of {}",
            c["name"]
        );
        // Streaming decode gives the same text and never half a character.
        let ids = tok.encode(text, false, false);
        let mut dec = tok.stream_decoder(false);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&dec.push(id));
        }
        streamed.push_str(&dec.flush());
        let whole = String::from_utf8(tok.detokenize(&ids, false, false)).unwrap();
        assert_eq!(streamed, whole, "stream decode of {}", c["name"]);
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    let tok = load("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2");
    check_goldens(&tok, "smollm2-135m-q4_1.tokenize.json");
}

#[test]
fn gemma3_matches_llama_cpp() {
    let tok = load("gemma-3-270m-q4_k_m.gguf", "gemma3");
    check_goldens(&tok, "gemma3-270m-q4_k_m.tokenize.json");
}

#[test]
fn smollm2_round_trip() {
    let tok = load("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2");
    check_round_trip(&tok, "smollm2-135m-q4_1.tokenize.json");
}

#[test]
fn gemma3_round_trip() {
    let tok = load("gemma-3-270m-q4_k_m.gguf", "gemma3");
    check_round_trip(&tok, "gemma3-270m-q4_k_m.tokenize.json");
}

#[test]
fn smollm2_special_tokens() {
    let tok = load("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2");
    assert!(!tok.add_bos());
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.token_text(2).as_deref(), Some("<|im_end|>"));
    assert!(tok.is_eog(2), "<|im_end|> ends generation");
    assert!(tok.is_eog(0), "<|endoftext|> ends generation");
    assert!(!tok.is_eog(1), "<|im_start|> does not");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.token_to_piece(2, false), b"");
    assert_eq!(tok.token_to_piece(2, true), b"<|im_end|>");
}

#[test]
fn gemma3_special_tokens_and_speed() {
    let p = common::require("models/gemma-3-270m-q4_k_m.gguf", "gemma3");
    let f = gguf::GgufFile::open(&p).unwrap();
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_gguf(&f).unwrap();
    let build = t0.elapsed();
    assert_eq!(tok.vocab_size(), 262144);
    assert!(tok.add_bos());
    assert_eq!(tok.bos_id(), Some(2));
    let eot = tok.token_id("<end_of_turn>").unwrap();
    assert!(tok.is_eog(eot));
    assert!(tok.is_eog(tok.eos_id().unwrap()));
    // Encoding a few KB: first call builds the special-token matcher, time the second.
    let text = "The quick brown fox jumps over the lazy dog. Ünïcödé 🦀 日本語 1234.\n".repeat(60);
    let _ = tok.encode(&text, true, true);
    let t1 = std::time::Instant::now();
    let ids = tok.encode(&text, true, true);
    let enc = t1.elapsed();
    eprintln!(
        "gemma3: build {build:?}, encode {} bytes -> {} ids in {enc:?}",
        text.len(),
        ids.len()
    );
    assert_eq!(tok.decode(&ids, false), text);
}

/// An emoji is four bytes; SentencePiece byte fallback splits it over byte tokens.
#[test]
fn stream_decoder_holds_split_characters() {
    let tok = load("gemma-3-270m-q4_k_m.gguf", "gemma3");
    let b0 = tok.token_id("<0xF0>").expect("byte tokens");
    let bytes: Vec<u32> = [0xF0u8, 0x9F, 0xA6, 0x80]
        .iter()
        .map(|b| tok.token_id(&format!("<0x{b:02X}>")).unwrap())
        .collect();
    assert_eq!(bytes[0], b0);
    let mut dec = tok.stream_decoder(false);
    assert_eq!(dec.push(bytes[0]), "");
    assert_eq!(dec.push(bytes[1]), "");
    assert_eq!(dec.push(bytes[2]), "");
    assert_eq!(dec.push(bytes[3]), "🦀");
    // An unfinished character at the end becomes U+FFFD on flush.
    assert_eq!(dec.push(bytes[0]), "");
    assert_eq!(dec.flush(), "\u{FFFD}");
    // Byte-level BPE: the emoji's bytes in separate tokens.
    let smol = load("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2");
    let ids = smol.encode("🦀🎉👍🏽", false, false);
    let mut dec = smol.stream_decoder(false);
    let mut out = String::new();
    for id in ids {
        let s = dec.push(id);
        assert!(s.chars().all(|c| c != '\u{FFFD}'));
        out.push_str(&s);
    }
    out.push_str(&dec.flush());
    assert_eq!(out, "🦀🎉👍🏽");
}
