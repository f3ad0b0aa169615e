//! Load: 32 concurrent streaming clients (the official `openai` client) against SmolLM2 for a
//! bounded time; zero errors, every stream well-formed, and the server's resident memory under
//! a bound derived from the model file and the KV budget.

mod serve_common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serve_common::*;

#[test]
fn thirty_two_streaming_clients() {
    let py = openai_python();
    let model = smollm2();
    let (parallel, ctx) = (8usize, 256usize);
    let s = Server::start(
        &[
            "--model",
            model.to_str().unwrap(),
            "--parallel",
            &parallel.to_string(),
            "--ctx",
            &ctx.to_string(),
            "-t",
            "2",
        ],
        &[],
    );
    let pid = s.pid();
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let out = Command::new(&py)
        .arg(python_script("load_test.py"))
        .arg(s.url())
        .arg(SMOL_ID)
        .args(["32", "25", "12"])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load test failed:\n{stdout}\n{}\nserver log tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let totals: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert!(totals["streams"].as_u64().unwrap() >= 32, "{totals}");

    // Memory: weights (mapped file) + KV for every slot + a fixed allowance for the runtime,
    // tokenizer, activation scratch and HTTP buffers. Growth with request count would break it.
    let file = std::fs::metadata(&model).unwrap().len();
    let m = s.get("/metrics").text();
    let kv = metric_value(&m, &format!("freehold_kv_bytes{{model=\"{SMOL_ID}\"}}")).unwrap() as u64;
    assert!(kv > 0);
    let bound = file + kv + (160 << 20);
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "load: {totals}; peak RSS {:.1} MiB, bound {:.1} MiB (file {:.1} + KV {:.1} + 160)",
        peak as f64 / 1048576.0,
        bound as f64 / 1048576.0,
        file as f64 / 1048576.0,
        kv as f64 / 1048576.0
    );
    assert!(
        peak > 0 && peak < bound,
        "peak RSS {peak} over the bound {bound}"
    );
    // Everything finished: no sequence left running, nothing queued.
    assert_eq!(
        metric_value(
            &m,
            &format!("freehold_running_sequences{{model=\"{SMOL_ID}\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&m, &format!("freehold_queue_depth{{model=\"{SMOL_ID}\"}}")),
        Some(0.0)
    );
}
