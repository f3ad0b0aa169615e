//! llama.cpp's own tokenizer test vectors (`models/ggml-vocab-*.gguf` with `.inp`/`.out`,
//! as read by its `test-tokenizer-0`): every case must give the same ids with
//! `add_special = false, parse_special = false`, the settings that test uses.

mod common;

use tokenizer::Tokenizer;

const SEP: &str = "\n__ggml_vocab_test__\n";

/// Cases of one vocabulary: (input text, expected ids).
fn read_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = common::require("llama.cpp-models/.complete-0.3.36", "llamacpp-vectors");
    let dir = dir.parent().unwrap();
    let inp = std::fs::read(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let inp = String::from_utf8(inp).expect(".inp is UTF-8");
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(SEP) {
            None => {
                texts.push(inp[pos..].to_string());
                break;
            }
            Some(p) => {
                texts.push(inp[pos..pos + p].to_string());
                pos += p + SEP.len();
            }
        }
    }
    let outs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        texts.len(),
        outs.len(),
        "{name}: .inp and .out differ in case count"
    );
    texts.into_iter().zip(outs).collect()
}

fn check(name: &str) {
    let dir = common::require("llama.cpp-models/.complete-0.3.36", "llamacpp-vectors");
    let path = dir
        .parent()
        .unwrap()
        .join(format!("ggml-vocab-{name}.gguf"));
    let tok = Tokenizer::from_gguf_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let cases = read_cases(name);
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false, false);
        if &got != want {
            failures.push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    eprintln!(
        "{name}: {}/{} cases pass",
        cases.len() - failures.len(),
        cases.len()
    );
    if !failures.is_empty() {
        panic!(
            "{name}: {} of {} cases differ from llama.cpp:\n{}",
            failures.len(),
            cases.len(),
            failures
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

macro_rules! vocab_tests {
    ($($fn_name:ident => $vocab:literal),* $(,)?) => {
        $(#[test] fn $fn_name() { check($vocab); })*
    };
}

vocab_tests! {
    llama_spm => "llama-spm",
    llama_bpe => "llama-bpe",
    gpt_2 => "gpt-2",
    qwen2 => "qwen2",
    gemma_4 => "gemma-4",
    phi_3 => "phi-3",
    deepseek_llm => "deepseek-llm",
    starcoder => "starcoder",
    falcon => "falcon",
    bert_bge => "bert-bge",
    command_r => "command-r",
    deepseek_coder => "deepseek-coder",
    mpt => "mpt",
    qwen35 => "qwen35",
    refact => "refact",
}
