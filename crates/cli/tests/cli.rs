//! End-to-end tests of the `freehold` binary: real models, JSON output, and bad input that
//! must give a one-line error and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_freehold"))
}

fn model(file: &str) -> PathBuf {
    testdata::model(file)
}

const TINY: &str = "tiny.gguf";
const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("freehold runs")
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "freehold {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run_ok(args)).expect("valid JSON on stdout")
}

/// Asserts a failure with exactly one line on stderr that contains every `needle`.
fn assert_one_line_error(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "freehold {args:?} should fail");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "freehold {args:?}: want one line, got:\n{stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(
            stderr.contains(n),
            "freehold {args:?}: {stderr:?} lacks {n:?}"
        );
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn run_json_greedy_is_deterministic_and_well_formed() {
    let m = model(SMOLLM2);
    let args = [
        "run",
        p(&m),
        "The capital of France is",
        "--raw",
        "--json",
        "--temp",
        "0",
        "-n",
        "8",
        "--top-logits",
        "3",
        "-t",
        "2",
    ];
    let a = json(&args);
    assert_eq!(
        a["prompt_ids"],
        serde_json::json!([504, 3575, 282, 4649, 314])
    );
    let ids = a["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 8);
    // llama.cpp's greedy continuation starts " Paris." (shared/reference).
    assert!(
        a["text"].as_str().unwrap().starts_with(" Paris."),
        "{}",
        a["text"]
    );
    assert_eq!(a["finish_reason"], "length");
    let top = a["top_logits"].as_array().unwrap();
    assert_eq!(top.len(), 8);
    for (step, id) in top.iter().zip(ids) {
        assert_eq!(step.as_array().unwrap().len(), 3);
        assert_eq!(&step[0][0], id, "greedy picks the top logit");
    }
    assert!(a["timings"]["prompt_tokens_per_second"].as_f64().unwrap() > 0.0);
    let b = json(&args);
    assert_eq!(a["ids"], b["ids"]);
}

#[test]
fn seeded_sampling_reproduces_and_seeds_differ() {
    let m = model(SMOLLM2);
    let go = |seed: &str| {
        json(&[
            "run",
            p(&m),
            "Tell me a story",
            "--json",
            "--temp",
            "1.0",
            "--seed",
            seed,
            "-n",
            "24",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
        ])["ids"]
            .clone()
    };
    assert_eq!(go("42"), go("42"));
    assert_ne!(go("42"), go("43"));
}

#[test]
fn chat_template_is_applied_and_stop_strings_end_generation() {
    let m = model(SMOLLM2);
    let base = [
        "run",
        p(&m),
        "Name three colours.",
        "--system",
        "You are a helpful assistant.",
        "--json",
        "--temp",
        "0",
        "-n",
        "24",
    ];
    let out = json(&base);
    // 10 template tokens around the 14 ids of the system and user text (cf. llama.cpp's chat
    // case in shared/reference, 27 ids for a question one token longer).
    let prompt_ids = out["prompt_ids"].as_array().unwrap();
    assert_eq!(prompt_ids[0], 1, "<|im_start|> parsed as a special token");
    assert_eq!(
        prompt_ids[prompt_ids.len() - 4..],
        [1, 520, 9531, 198].map(serde_json::Value::from)
    );
    // A stop string taken from the greedy text itself: the run must end right before it.
    let text = out["text"].as_str().unwrap().to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 3, "{text}");
    let stop = format!(" {}", words[2]);
    let cut = text.find(&stop).unwrap();
    let mut args = base.to_vec();
    args.extend(["--stop", &stop]);
    let stopped = json(&args);
    assert_eq!(stopped["text"], text[..cut], "stop {stop:?} in {text:?}");
    assert_eq!(stopped["finish_reason"], "stop");
}

#[test]
fn streaming_run_prints_text_and_speed() {
    let m = model(SMOLLM2);
    let out = run(&[
        "run",
        p(&m),
        "The capital of France is",
        "--raw",
        "--temp",
        "0",
        "-n",
        "4",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(" Paris."));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokens/s"), "{err}");
}

#[test]
fn interactive_chat_keeps_the_conversation() {
    let m = model(SMOLLM2);
    let mut child = bin()
        .args([
            "run",
            p(&m),
            "--temp",
            "0",
            "-n",
            "16",
            "--verbose",
            "--system",
            "You are a helpful assistant.",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Italy?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(replies.len() >= 2, "two replies: {text}");
    // Turn two reuses the cached conversation: it evaluates only the new tokens, far fewer
    // than the 27 of the first turn's prompt plus its reply.
    let new_tokens: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(new_tokens.len(), 2, "{stderr}");
    assert_eq!(new_tokens[0], 27, "{stderr}");
    assert!(
        new_tokens[1] < 20,
        "second turn re-evaluated the conversation: {stderr}"
    );
}

#[test]
fn inspect_json_reports_the_model() {
    let m = model(SMOLLM2);
    let v = json(&["inspect", p(&m), "--json"]);
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["tensors"].as_array().unwrap().len(), 272);
    assert_eq!(v["tokenizer"]["model"], "gpt2");
    assert_eq!(v["tokenizer"]["vocab_size"], 49152);
    assert_eq!(v["license"]["general.license"], "apache-2.0");
    assert_eq!(v["hyperparameters"]["llama.block_count"], 30);
    assert!(v["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
    let params = v["parameters"].as_u64().unwrap();
    assert!((130_000_000..140_000_000).contains(&params), "{params}");
    let mix = v["quantization_mix"].as_array().unwrap();
    assert!(mix.iter().any(|m| m["type"] == "Q4_1"));
    let text = run_ok(&["inspect", p(&m)]);
    assert!(text.contains("architecture:  llama") && text.contains("quantization mix"));
}

#[test]
fn tokenize_parses_special_tokens_unless_told_not_to() {
    let m = model(SMOLLM2);
    let with = json(&["tokenize", p(&m), "<|im_start|>user", "--json"]);
    assert_eq!(with["ids"][0], 1);
    let without = json(&[
        "tokenize",
        p(&m),
        "<|im_start|>user",
        "--json",
        "--no-special",
    ]);
    assert_ne!(without["ids"][0], 1);
    assert!(without["ids"].as_array().unwrap().len() > with["ids"].as_array().unwrap().len());
}

#[test]
fn perplexity_json_on_tiny_model() {
    let m = model(TINY);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("text.txt");
    std::fs::write(
        &f,
        "The quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let v = json(&["perplexity", p(&m), p(&f), "--ctx", "64", "--json"]);
    assert!(v["n_chunks"].as_u64().unwrap() >= 2);
    // Random weights: perplexity near the vocabulary size.
    let ppl = v["ppl"].as_f64().unwrap();
    assert!((20000.0..50000.0).contains(&ppl), "{ppl}");
}

#[test]
fn prompt_longer_than_context_names_both_numbers() {
    let m = model(TINY);
    let prompt = "word ".repeat(50);
    assert_one_line_error(
        &["run", p(&m), &prompt, "--raw", "--ctx", "16"],
        &["16", "52"],
    );
}

#[test]
fn missing_model_file_is_named() {
    assert_one_line_error(
        &["run", "/nonexistent/model.gguf", "hi"],
        &["/nonexistent/model.gguf"],
    );
    assert_one_line_error(
        &["inspect", "/nonexistent/model.gguf"],
        &["/nonexistent/model.gguf"],
    );
}

/// A minimal GGUF v3 image: header, the given metadata strings, and raw tensor descriptors.
fn gguf_bytes(n_tensors: u64, kv: &[(&str, &str)], tensors: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(tensors);
    b
}

fn tensor_desc(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b
}

#[test]
fn bad_model_files_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let tiny = std::fs::read(model(TINY)).unwrap();
    let arch = [("general.architecture", "llama")];
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            write("truncated.gguf", &tiny[..tiny.len() / 3]),
            vec!["past the end"],
        ),
        (write("header-cut.gguf", &tiny[..200]), vec!["offset"]),
        (
            write("magic.gguf", b"GGML\x03\0\0\0rest of a file"),
            vec!["magic"],
        ),
        (write("empty.gguf", b""), vec!["empty"]),
        (
            write("counts.gguf", &gguf_bytes(u64::MAX, &arch, &[])),
            vec!["tensor count"],
        ),
        (
            write(
                "dims.gguf",
                &gguf_bytes(1, &arch, &tensor_desc("w", &[1 << 40, 1 << 40], 0, 0)),
            ),
            vec!["\"w\""],
        ),
        (
            write(
                "past-end.gguf",
                &gguf_bytes(1, &arch, &tensor_desc("w", &[1024], 0, 0)),
            ),
            vec!["\"w\"", "end of the file"],
        ),
        (
            write(
                "type.gguf",
                &gguf_bytes(1, &arch, &tensor_desc("w", &[32], 99, 0)),
            ),
            vec!["\"w\"", "99"],
        ),
        (
            write(
                "arch.gguf",
                &gguf_bytes(0, &[("general.architecture", "mamba9")], &[]),
            ),
            vec!["mamba9", "unsupported architecture"],
        ),
    ];
    for (path, needles) in &cases {
        assert_one_line_error(&["run", p(path), "hi", "--raw"], needles);
    }
    // inspect reads any well-formed GGUF; the file-level failures must fail there too.
    for (path, needles) in &cases[..8] {
        assert_one_line_error(&["inspect", p(path)], needles);
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let m = model(TINY);
    assert_one_line_error(&["run", p(&m), "hi", "--threads", "0"], &["threads"]);
    assert_one_line_error(&["run", p(&m), "hi", "--ctx", "0"], &["ctx"]);
}

#[test]
fn gemma_without_template_gets_gemma_turns_and_a_single_bos() {
    let m = model("gemma-3-270m-q4_k_m.gguf");
    let out = bin()
        .args([
            "run",
            p(&m),
            "Hi",
            "--system",
            "Be brief.",
            "--json",
            "--temp",
            "0",
            "-n",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in gemma3 template"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = v["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    // <bos> <start_of_turn> user \n ... ; one BOS only.
    assert_eq!(&ids[..4], &[2, 105, 2364, 107], "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    // Ends with <start_of_turn> model \n.
    assert_eq!(&ids[ids.len() - 3..], &[105, 4368, 107]);
}
