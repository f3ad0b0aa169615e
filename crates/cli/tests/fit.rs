//! `freehold fit` end to end: its memory estimate against the measured peak RSS of
//! `freehold run` with the context filled, on the two test models at two context sizes; the
//! JSON shape; and bad arguments giving a one-line error.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_freehold"))
}

fn fit(args: &[&str]) -> Output {
    bin().arg("fit").args(args).output().expect("freehold runs")
}

fn fit_json(model: &Path, args: &[&str]) -> Value {
    let m = model.display().to_string();
    let mut all = vec![m.as_str(), "--json", "-t", "1"];
    all.extend_from_slice(args);
    let out = fit(&all);
    assert!(
        out.status.success(),
        "freehold fit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

/// The longest prefix of repeated licence text that tokenizes (as `run --raw` does) to at
/// most `n` tokens.
fn prompt_of(model: &Path, n: usize) -> String {
    let licence = std::fs::read_to_string(
        // The engine's copy of the reference text (source noted in its tests/data/README.md).
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/data/apache-2.0.txt"),
    )
    .expect("crates/engine/tests/data/apache-2.0.txt");
    let text = licence.repeat(n / 1000 + 2);
    let tok = tokenizer::Tokenizer::from_gguf_path(model).expect("tokenizer");
    let count = |s: &str| tok.encode(s, true, true).len();
    assert!(count(&text) > n, "not enough text for {n} tokens");
    let (mut lo, mut hi) = (0, text.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let mid = (mid..).find(|&i| text.is_char_boundary(i)).unwrap();
        if mid >= hi {
            break;
        }
        if count(&text[..mid]) <= n {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    text[..lo].to_string()
}

/// Peak resident set size of one `freehold run` (the child's own, from `wait4`).
fn peak_rss_of_run(model: &Path, prompt: &str, ctx: usize) -> u64 {
    let child = bin()
        .args(["run", &model.display().to_string(), prompt])
        .args(["--raw", "-n", "16", "--temp", "0", "-t", "2"])
        .args(["--ctx", &ctx.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("freehold runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 writes only into the two
    // out-parameters; `child` is never waited on through std afterwards.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "freehold run --ctx {ctx} on {} failed (status {status})",
        model.display()
    );
    drop(child);
    // Linux reports ru_maxrss in KiB.
    usage.ru_maxrss as u64 * 1024
}

fn check_estimate_against_run(file: &str) {
    let model = testdata::model(file);
    for ctx in [512usize, 2048] {
        let prompt = prompt_of(&model, ctx - 40);
        let measured = peak_rss_of_run(&model, &prompt, ctx);
        let v = fit_json(&model, &["--ctx", &ctx.to_string()]);
        let est = v["memory"]["total"].as_u64().expect("memory.total");
        let err = (est as f64 - measured as f64) / measured as f64;
        eprintln!(
            "{file} ctx {ctx}: estimated {:.1} MiB, measured {:.1} MiB ({:+.1}%)",
            est as f64 / 1048576.0,
            measured as f64 / 1048576.0,
            err * 100.0
        );
        assert!(
            err.abs() < 0.10,
            "{file} ctx {ctx}: estimate {est} vs peak RSS {measured} ({:+.1}%); memory {}",
            err * 100.0,
            v["memory"]
        );
    }
}

#[test]
fn estimate_matches_peak_rss_smollm2() {
    check_estimate_against_run("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn estimate_matches_peak_rss_gemma3() {
    check_estimate_against_run("gemma-3-270m-q4_k_m.gguf");
}

#[test]
fn json_report_and_its_arithmetic() {
    let model = testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let v = fit_json(&model, &["--ctx", "1024"]);
    let m = &v["memory"];
    let parts: u64 = ["weights", "kv", "scratch", "tokenizer", "baseline"]
        .iter()
        .map(|k| m[k].as_u64().unwrap())
        .sum();
    assert_eq!(parts, m["total"].as_u64().unwrap());
    // 30 layers x 3 KV heads x 64 x f16, keys and values.
    assert_eq!(m["kv"].as_u64().unwrap(), 2 * 30 * 1024 * 192 * 2);
    assert_eq!(v["arch"], "llama");
    assert_eq!(v["file_type"], "Q4_1");
    assert!(["fits", "tight", "does not fit"].contains(&v["verdict"].as_str().unwrap()));
    assert!(v["gpus"].is_array());
    assert!(v["bandwidth_bytes_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
    let q = v["quantizations"].as_array().unwrap();
    let names: Vec<&str> = q.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names[..3], ["F16", "Q8_0", "Q6_K"]);
    // Estimated from the shapes, this file's own scheme comes out at its own size.
    let q4_1 = q.iter().find(|r| r["name"] == "Q4_1").unwrap();
    assert_eq!(q4_1["file_bytes"], v["file_bytes"]);
    // On any machine that runs the tests, a 135M model fits at F16.
    assert_eq!(v["best_fit"], "F16");

    // Two sequences: twice the KV; a q8_0 cache: 34 bytes per 32 values.
    let two = fit_json(&model, &["--ctx", "1024", "--parallel", "2"]);
    assert_eq!(
        two["memory"]["kv"].as_u64().unwrap(),
        2 * m["kv"].as_u64().unwrap()
    );
    let q8 = fit_json(&model, &["--ctx", "1024", "--kv", "q8_0"]);
    assert_eq!(
        q8["memory"]["kv"].as_u64().unwrap(),
        2 * 30 * 1024 * 192 / 32 * 34
    );
}

#[test]
fn text_report() {
    let model = testdata::model("gemma-3-270m-q4_k_m.gguf");
    let out = fit(&[&model.display().to_string(), "-c", "4096", "-t", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "gemma3",
        "KV cache",
        "total",
        "RAM available",
        "tokens/s",
        "Q4_K_M",
        "best quantization that fits: F16",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let model = testdata::model("tiny.gguf").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let junk = junk.display().to_string();
    let missing = dir.path().join("missing.gguf").display().to_string();
    for (args, expect) in [
        (vec![missing.as_str()], "missing.gguf"),
        (vec![junk.as_str()], "magic"),
        (vec![model.as_str(), "--kv", "q4"], "KV cache type"),
        (vec![model.as_str(), "--ctx", "0"], "--ctx"),
        (vec![model.as_str(), "--parallel", "0"], "--parallel"),
        (vec![model.as_str(), "-t", "0"], "--threads"),
    ] {
        // A missing file is looked up as a store name: keep that store in the temp dir.
        let out = bin()
            .arg("fit")
            .args(&args)
            .env("FREEHOLD_HOME", dir.path().join("store"))
            .output()
            .expect("freehold runs");
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}
