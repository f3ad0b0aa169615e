//! The store commands end to end through the real binary, each test with its own
//! FREEHOLD_HOME: import, list, show, verify (catching a flipped byte), rm, gc (collecting
//! what a killed write leaves), export/import of archives (refusing a tampered one), hostile
//! names, and two processes importing one file at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn freehold(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freehold"))
        .env("FREEHOLD_HOME", home)
        .args(args)
        .output()
        .expect("freehold runs")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = freehold(home, args);
    assert!(
        out.status.success(),
        "freehold {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its one-line error.
fn fails(home: &Path, args: &[&str]) -> String {
    let out = freehold(home, args);
    assert!(!out.status.success(), "freehold {args:?} succeeded");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(home, args)).expect("valid JSON")
}

fn tiny() -> String {
    testdata::model("tiny.gguf").display().to_string()
}

#[test]
fn import_list_show_verify_rm_gc() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = ok(&home, &["import", &tiny(), "--name", "tiny:f16"]);
    assert!(out.starts_with("imported tiny:f16 (sha256:"), "{out}");

    let table = ok(&home, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    for col in ["TAG", "SIZE", "QUANT/ARCH", "MODIFIED"] {
        assert!(lines[0].contains(col), "{table}");
    }
    assert!(
        lines[1].starts_with("tiny") && lines[1].contains("f16") && lines[1].contains("F16/llama"),
        "{table}"
    );
    let list = json(&home, &["list", "--json"]);
    assert_eq!(list[0]["name"], "tiny");
    assert_eq!(list[0]["tag"], "f16");
    assert_eq!(list[0]["parameters"], 1_032_272);

    let show = json(&home, &["show", "tiny:f16", "--json"]);
    let gguf = &show["layers"][0];
    assert_eq!(gguf["mediaType"], "application/vnd.freehold.model.gguf");
    assert_eq!(gguf["title"], "tiny.gguf");
    let digest = gguf["digest"].as_str().unwrap().to_string();
    let text = ok(&home, &["show", "tiny:f16"]);
    assert!(
        text.contains(&digest) && text.contains("architecture  llama"),
        "{text}"
    );

    assert!(ok(&home, &["verify"]).starts_with("ok       tiny:f16"));
    // Flip one byte of the weights blob: verify names it and fails.
    let blob = home
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blob, &bytes).unwrap();
    let err = fails(&home, &["verify", "tiny:f16"]);
    assert!(
        err.contains(&digest) && err.contains("tiny.gguf") && err.contains("corrupt"),
        "{err}"
    );
    let v = freehold(&home, &["verify", "--json"]);
    assert!(!v.status.success());
    let v: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["models"][0]["problems"][0]["kind"], "corrupt");
    // Re-importing repairs it.
    ok(&home, &["import", &tiny(), "--name", "tiny:f16"]);
    ok(&home, &["verify"]);

    // What a killed write leaves is invisible, and gc removes it.
    let leftover = home.join("tmp/blob-4242-0-deadbeef.tmp");
    std::fs::write(&leftover, b"half").unwrap();
    assert_eq!(
        json(&home, &["list", "--json"]).as_array().unwrap().len(),
        1
    );
    let gc = json(&home, &["gc", "--json"]);
    assert_eq!(gc["temp_files"][0], "blob-4242-0-deadbeef.tmp");
    assert!(gc["blobs"].as_array().unwrap().is_empty());
    assert!(!leftover.exists());

    let out = ok(&home, &["rm", "tiny:f16"]);
    assert!(out.contains("removed tiny:f16"), "{out}");
    assert!(ok(&home, &["list"]).starts_with("no models"));
    let gc = json(&home, &["gc", "--json"]);
    assert_eq!(gc["blobs"].as_array().unwrap().len(), 3, "{gc}");
    assert!(gc["bytes_freed"].as_u64().unwrap() > 2_000_000);
    assert!(!blob.exists());
    let err = fails(&home, &["rm", "tiny:f16"]);
    assert!(
        err.contains("tiny:f16") && err.contains("not in the store"),
        "{err}"
    );
}

#[test]
fn real_smollm2_import_records_its_licence_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let model = testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let rep: Value =
        serde_json::from_str(&ok(&home, &["import", model.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(rep["model"], "smollm2-135m:latest");
    let show = ok(&home, &["show", "smollm2-135m"]);
    for want in [
        "Q4_1",
        "llama",
        "134515008",
        "license       apache-2.0",
        "8192",
    ] {
        assert!(show.contains(want), "{want}: {show}");
    }
    assert!(show.contains("no licence text"), "{show}");
}

#[test]
fn export_and_import_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    ok(&a, &["import", &tiny(), "--name", "tiny"]);
    let tar = dir.path().join("tiny.tar");
    let out = ok(&a, &["export", "tiny", "-o", tar.to_str().unwrap()]);
    assert!(out.starts_with("exported tiny:latest"), "{out}");
    let rep: Value =
        serde_json::from_str(&ok(&b, &["import", tar.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(rep["model"], "tiny:latest");
    assert_eq!(rep["format"], "archive");
    ok(&b, &["verify", "tiny"]);

    // Tamper with the weights inside the archive: refused, naming the blob; nothing listed.
    let show = json(&a, &["show", "tiny", "--json"]);
    let digest = show["layers"][0]["digest"].as_str().unwrap().to_string();
    let mut bytes = std::fs::read(&tar).unwrap();
    let weights = std::fs::read(testdata::model("tiny.gguf")).unwrap();
    let at = bytes.windows(64).position(|w| w == &weights[..64]).unwrap();
    bytes[at + 100_000] ^= 1;
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, bytes).unwrap();
    let c = dir.path().join("c");
    let err = fails(&c, &["import", bad.to_str().unwrap()]);
    assert!(err.contains(&digest) && err.contains("tampered"), "{err}");
    assert!(ok(&c, &["list"]).starts_with("no models"));
}

#[test]
fn hostile_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for name in ["../evil", "/abs", "a/b", "UPPER", "x:../y"] {
        let err = fails(&home, &["import", &tiny(), "--name", name]);
        assert!(err.contains("invalid model name"), "{name}: {err}");
        let err = fails(&home, &["show", name]);
        assert!(err.contains("invalid model name"), "{name}: {err}");
    }
    let err = fails(&home, &["show", "absent"]);
    assert!(
        err.contains("absent:latest") && err.contains("not in the store"),
        "{err}"
    );
    let out = dir.path().join("x.tar");
    let err = fails(&home, &["export", "absent", "-o", out.to_str().unwrap()]);
    assert!(err.contains("absent:latest"), "{err}");
    assert!(!out.exists());
    let err = fails(&home, &["import", "/no/such/file.gguf"]);
    assert!(err.contains("/no/such/file.gguf"), "{err}");
}

#[test]
fn two_processes_import_one_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // Spawned, not `output()`: all run at once.
    let spawned: Vec<_> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_freehold"))
                .env("FREEHOLD_HOME", &home)
                .args(["import", &tiny(), "--name", &format!("copy{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in spawned {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = json(&home, &["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    ok(&home, &["verify"]);
    let gc = json(&home, &["gc", "--json"]);
    assert!(gc["blobs"].as_array().unwrap().is_empty(), "{gc}");
    assert!(gc["temp_files"].as_array().unwrap().is_empty(), "{gc}");
}

#[test]
fn offline_flag_and_variable_leave_local_commands_working() {
    let dir = tempfile::tempdir().unwrap();
    let home: PathBuf = dir.path().join("home");
    ok(&home, &["--offline", "import", &tiny(), "--name", "t"]);
    ok(&home, &["list", "--offline"]);
    let out = Command::new(env!("CARGO_BIN_EXE_freehold"))
        .env("FREEHOLD_HOME", &home)
        .env("FREEHOLD_OFFLINE", "1")
        .args(["show", "t"])
        .output()
        .unwrap();
    assert!(out.status.success());
}
