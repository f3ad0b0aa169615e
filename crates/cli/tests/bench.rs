//! `freehold bench` end to end on the tiny model: the JSON shape and llama-bench field names,
//! and bad arguments giving a one-line error. No timing thresholds: speed is only checked to
//! be a positive number.

use std::process::{Command, Output};

use serde_json::Value;

fn tiny() -> String {
    testdata::model("tiny.gguf").display().to_string()
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freehold"))
        .arg("bench")
        .args(args)
        .output()
        .expect("freehold runs")
}

#[test]
fn json_has_llama_bench_fields() {
    let m = tiny();
    let out = bench(&[
        &m, "-p", "8", "-n", "4", "-d", "0,6", "-r", "1", "-t", "1", "--json",
    ]);
    assert!(
        out.status.success(),
        "freehold bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON on stdout");
    let tests = v.as_array().expect("a JSON array");
    // pp8, tg4, pp8 @ d6, tg4 @ d6
    let keys: Vec<(u64, u64, u64)> = tests
        .iter()
        .map(|t| {
            (
                t["n_prompt"].as_u64().unwrap(),
                t["n_gen"].as_u64().unwrap(),
                t["n_depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, vec![(8, 0, 0), (0, 4, 0), (8, 0, 6), (0, 4, 6)]);

    for t in tests {
        let o = t.as_object().unwrap();
        for s in [
            "model_filename",
            "model_type",
            "test_time",
            "cpu_info",
            "backends",
        ] {
            assert!(o[s].is_string(), "{s} should be a string: {t}");
        }
        for n in [
            "model_size",
            "model_n_params",
            "n_threads",
            "n_batch",
            "avg_ns",
            "stddev_ns",
            "peak_rss_bytes",
            "kv_bytes",
        ] {
            assert!(o[n].is_u64(), "{n} should be an integer: {t}");
        }
        for f in ["avg_ts", "stddev_ts", "load_ms"] {
            assert!(o[f].is_number(), "{f} should be a number: {t}");
        }
        assert_eq!(o["model_filename"].as_str(), Some(m.as_str()));
        assert_eq!(o["n_threads"], 1);
        assert!(o["model_size"].as_u64().unwrap() > 0);
        assert!(o["model_n_params"].as_u64().unwrap() > 0);
        assert!(o["kv_bytes"].as_u64().unwrap() > 0);
        assert!(o["peak_rss_bytes"].as_u64().unwrap() > 0);
        assert!(o["avg_ns"].as_u64().unwrap() > 0);
        assert!(o["avg_ts"].as_f64().unwrap() > 0.0, "avg_ts: {t}");
        assert!(o["load_ms"].as_f64().unwrap() > 0.0);
        let ns = o["samples_ns"].as_array().expect("samples_ns array");
        let ts = o["samples_ts"].as_array().expect("samples_ts array");
        assert_eq!(ns.len(), 1);
        assert_eq!(ts.len(), 1);
        assert!(ts[0].as_f64().unwrap() > 0.0);
        let tt = o["test_time"].as_str().unwrap();
        assert!(tt.len() == 20 && tt.ends_with('Z'), "test_time {tt}");
    }
}

#[test]
fn table_output() {
    let m = tiny();
    let out = bench(&[&m, "-p", "8", "-n", "4", "-r", "2", "-t", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("| model | size | params | backend | threads | test | t/s |"));
    assert!(text.contains(" | pp8 | "), "{text}");
    assert!(text.contains(" | tg4 | "), "{text}");
    assert!(
        text.contains("peak RSS") && text.contains("KV cache"),
        "{text}"
    );
}

/// A failure with exactly one line on stderr containing `needle`.
fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "freehold bench {args:?} should fail");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected for {args:?}, got: {stderr}"
    );
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let m = tiny();
    assert_one_line_error(&[&m, "-p", "abc"], "--n-prompt");
    assert_one_line_error(&[&m, "-p", "8,x"], "--n-prompt");
    assert_one_line_error(&[&m, "-t", "0"], "--threads must be at least 1");
    assert_one_line_error(&[&m, "-t", "two"], "--threads");
    assert_one_line_error(&[&m, "-r", "0"], "--repetitions must be at least 1");
    assert_one_line_error(&[&m, "-d", "2k"], "--n-depth");
    assert_one_line_error(&[&m, "-p", "0", "-n", "0"], "nothing to measure");
    assert_one_line_error(&["/nonexistent/model.gguf", "-p", "8"], "nonexistent");
}
