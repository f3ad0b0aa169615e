//! `freehold serve` end to end: the official `openai` Python client, plain HTTP for the edge
//! cases (bad input, limits, disconnects), keys and quotas, promtool on /metrics, draining.

mod serve_common;

use std::io::{BufRead, Write};
use std::process::Command;

use serde_json::json;
use serve_common::*;

fn smol() -> String {
    smollm2().to_string_lossy().into_owned()
}

#[test]
fn openai_client_chat_completion_streaming_stop_seed_errors() {
    let py = openai_python();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# test keys\nsk-test-key-0001\n").unwrap();
    let model = smol();
    let s = Server::start(
        &[
            "--model",
            &model,
            "--api-keys",
            keys.to_str().unwrap(),
            "--parallel",
            "4",
            "--ctx",
            "512",
            "-t",
            "2",
        ],
        &[],
    );
    let out = Command::new(&py)
        .arg(python_script("openai_client.py"))
        .arg(s.url())
        .arg(SMOL_ID)
        .arg("sk-test-key-0001")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client checks failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    assert!(stdout.contains("all checks passed"));

    // Every request left one audit line with the key's short id, never the key or the prompt.
    let log = s.log_text();
    assert!(
        !log.contains("sk-test-key-0001"),
        "the key leaked into the log"
    );
    assert!(
        !log.contains("capital of France"),
        "a prompt was logged without --log-prompts"
    );
    let audits: Vec<_> = s
        .log_json()
        .into_iter()
        .filter(|v| v["target"] == "audit")
        .collect();
    assert!(audits.len() >= 20, "{} audit lines", audits.len());
    let ok = audits
        .iter()
        .find(|v| v["fields"]["endpoint"] == "/v1/chat/completions" && v["fields"]["status"] == 200)
        .expect("an audit line for a chat completion");
    assert_eq!(ok["fields"]["key_id"].as_str().unwrap().len(), 12);
    assert_eq!(ok["fields"]["model"], SMOL_ID);
    assert!(ok["fields"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(audits.iter().any(|v| v["fields"]["status"] == 401));

    // The exposition after all that traffic passes promtool.
    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for name in [
        "freehold_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}",
        "freehold_time_to_first_token_seconds_count",
        "freehold_prompt_tokens_total",
        "freehold_generated_tokens_total",
        "freehold_decode_tokens_per_second",
        "freehold_queue_depth",
        "freehold_running_sequences",
        "freehold_kv_used_tokens",
        "freehold_models_loaded 1",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn error_of(r: &Resp) -> serde_json::Value {
    let v = r.json();
    let e = v["error"].clone();
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error lacks {k}: {v}");
    }
    e
}

#[test]
fn http_edge_cases() {
    let model = smol();
    let s = Server::start(
        &[
            "--model",
            &model,
            "--model",
            "ghost=/nonexistent/ghost.gguf",
            "--ctx",
            "64",
            "--parallel",
            "2",
            "-t",
            "2",
            "--max-body",
            "20000",
        ],
        &[],
    );
    let chat = "/v1/chat/completions";

    // Invalid JSON, wrong body type, wrong field types.
    let r = s.request(
        "POST",
        chat,
        &[("content-type", "application/json")],
        b"{\"model\": ",
    );
    assert_eq!(r.status, 400);
    assert!(error_of(&r)["message"].as_str().unwrap().contains("JSON"));
    let r = s.post_json(chat, &json!([1, 2]));
    assert_eq!(r.status, 400);
    let r = s.post_json(chat, &json!({"model": SMOL_ID, "messages": "hi"}));
    assert_eq!(r.status, 400);
    assert_eq!(error_of(&r)["param"], "messages");
    let r = s.post_json(chat, &json!({"model": SMOL_ID, "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}));
    assert_eq!(r.status, 400);
    assert_eq!(error_of(&r)["param"], "max_tokens");
    assert_eq!(error_of(&r)["type"], "invalid_request_error");

    // Unknown model and path: 404 in the same shape; a model that fails to load: 500 naming it.
    let r = s.post_json(
        chat,
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(error_of(&r)["code"], "model_not_found");
    assert_eq!(s.get("/v1/models/nope").status, 404);
    assert_eq!(s.get("/v1/models/ghost").status, 200);
    let r = s.post_json(
        chat,
        &json!({"model": "ghost", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(r.status, 500);
    assert!(error_of(&r)["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/ghost.gguf"));
    let r = s.get("/v1/nothing");
    assert_eq!(r.status, 404);
    error_of(&r);
    let r = s.get(chat);
    assert_eq!(r.status, 405);
    error_of(&r);

    // Body over the limit.
    let big = json!({"model": SMOL_ID, "prompt": "a ".repeat(20000)});
    let r = s.post_json("/v1/completions", &big);
    assert_eq!(r.status, 413);
    assert!(error_of(&r)["message"].as_str().unwrap().contains("20000"));

    // A prompt longer than the context: 400 naming both numbers, nothing truncated.
    let r = s.post_json(
        "/v1/completions",
        &json!({"model": SMOL_ID, "prompt": "word ".repeat(200)}),
    );
    assert_eq!(r.status, 400);
    let e = error_of(&r);
    assert_eq!(e["code"], "context_length_exceeded");
    let msg = e["message"].as_str().unwrap();
    let n_prompt: usize = msg
        .split("the prompt is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no prompt length in {msg:?}"));
    assert!(
        msg.contains("context is 64 tokens") && n_prompt >= 200,
        "{msg}"
    );

    // max_tokens beyond the context: clamped, said in a header and a `warning` field.
    let r = s.post_json(
        "/v1/completions",
        &json!({"model": SMOL_ID, "prompt": "Hello there", "max_tokens": 1000, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let w = r
        .header("x-freehold-warning")
        .expect("warning header")
        .to_string();
    assert!(w.contains("1000") && w.contains("64"), "{w}");
    let v = r.json();
    assert_eq!(v["warning"], w.as_str());
    let used = v["usage"]["prompt_tokens"].as_u64().unwrap()
        + v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(used <= 64, "{v}");

    // Raw SSE framing: chunks then [DONE].
    let r = s.post_json(chat, &json!({"model": SMOL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": true}));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
    }

    // Service endpoints.
    assert_eq!(s.get("/health").json()["status"], "ok");
    assert_eq!(s.get("/ready").json()["status"], "ready");
    let api = s.get("/openapi.json").json();
    assert_eq!(api["openapi"], "3.1.0");
    assert!(api["paths"]["/v1/chat/completions"]["post"].is_object());

    // A client that hangs up mid-stream has its sequence cancelled and its slot freed.
    let mut sock = open_stream(
        &s.addr,
        "/v1/completions",
        &json!({"model": SMOL_ID, "prompt": "Once", "max_tokens": 60, "temperature": 1.0, "stream": true}),
    );
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        sock.read_line(&mut line).unwrap();
    }
    s.wait_metric(
        &format!("freehold_running_sequences{{model=\"{SMOL_ID}\"}}"),
        |v| v == 1.0,
    );
    drop(sock);
    s.wait_metric(
        &format!("freehold_running_sequences{{model=\"{SMOL_ID}\"}}"),
        |v| v == 0.0,
    );
    for _ in 0..100 {
        if s.log_text().contains("client disconnected") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        s.log_text().contains("client disconnected"),
        "{}",
        s.log_text()
    );
    let m = s.get("/metrics").text();
    assert!(m.contains("status=\"499\""), "{m}");
}

#[test]
fn keys_rate_limits_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "sk-limited-000001 rpm=2\nsk-quota-0000001 tpm=30\n").unwrap();
    let model = smol();
    let s = Server::start(
        &[
            "--model",
            &model,
            "--api-keys",
            keys.to_str().unwrap(),
            "--parallel",
            "2",
            "--ctx",
            "256",
            "-t",
            "2",
        ],
        &[("FREEHOLD_API_KEYS", "sk-env-key-000001")],
    );
    let auth = |k: &str| format!("Bearer {k}");
    let body = json!({"model": SMOL_ID, "prompt": "Hi", "max_tokens": 8}).to_string();
    let post = |k: Option<&str>| {
        let a = k.map(auth);
        let mut h = vec![("content-type", "application/json")];
        if let Some(a) = &a {
            h.push(("authorization", a.as_str()));
        }
        s.request("POST", "/v1/completions", &h, body.as_bytes())
    };
    let r = post(None);
    assert_eq!(r.status, 401);
    assert_eq!(error_of(&r)["type"], "authentication_error");
    assert_eq!(post(Some("sk-wrong-0000001")).status, 401);
    assert_eq!(s.get("/v1/models").status, 401);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.get("/metrics").status, 200);
    assert_eq!(post(Some("sk-env-key-000001")).status, 200);
    assert_eq!(post(Some("sk-limited-000001")).status, 200);
    assert_eq!(post(Some("sk-limited-000001")).status, 200);
    let r = post(Some("sk-limited-000001"));
    assert_eq!(r.status, 429);
    assert_eq!(error_of(&r)["code"], "rate_limit_exceeded");
    // Token quota: the first request spends it, the next is refused.
    let mut refused = false;
    for _ in 0..10 {
        let r = post(Some("sk-quota-0000001"));
        if r.status == 429 {
            assert!(error_of(&r)["message"].as_str().unwrap().contains("30"));
            refused = true;
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert!(refused, "the token quota never applied");
    assert!(!s.log_text().contains("sk-limited"));
}

#[test]
fn sigterm_drains_in_flight_streams() {
    let model = smol();
    let mut s = Server::start(&["--model", &model, "--ctx", "256", "-t", "2"], &[]);
    let mut sock = open_stream(
        &s.addr,
        "/v1/completions",
        &json!({"model": SMOL_ID, "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "stream": true}),
    );
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        sock.read_line(&mut line).unwrap();
    }
    let st = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut sock, &mut rest);
    assert!(
        rest.contains("data: [DONE]"),
        "the stream was cut at shutdown: {rest}"
    );
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    let code = s.child.wait().unwrap();
    assert!(code.success(), "exit {code:?}\n{}", s.log_text());
    assert!(s.log_text().contains("draining"));
}
