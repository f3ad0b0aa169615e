//! The licence policy enforced where models enter and where they are used: `import` refuses
//! a denied model before anything is stored, `run` refuses to load a denied model or one that
//! needs review until an override is recorded, and without a policy nothing is enforced.

use std::path::Path;
use std::process::{Command, Output};

fn freehold(args: &[&str], home: &Path, policy: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_freehold"));
    c.args(args)
        .env("FREEHOLD_HOME", home)
        .env_remove("FREEHOLD_POLICY")
        .env("FREEHOLD_OFFLINE", "1");
    if let Some(p) = policy {
        c.env("FREEHOLD_POLICY", p);
    }
    c.output().expect("freehold runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_policy(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn only_apache_and_mit_refuses_gemma_at_import_and_run() {
    let home = tempfile::tempdir().unwrap();
    let gguf = testdata::model("gemma-3-270m-q4_k_m.gguf");
    let terms = testdata::require("licenses/gemma3/GEMMA_TERMS.html", "licence-data");
    let strict = write_policy(
        home.path(),
        "strict.toml",
        "allow = [\"apache-2.0\", \"mit\"]\nunknown = \"deny\"\n",
    );

    // import: refused before anything is stored.
    let o = freehold(
        &[
            "import",
            s(&gguf),
            "--license",
            s(&terms),
            "--name",
            "gemma",
        ],
        home.path(),
        Some(&strict),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("import of") && err.contains("refused"),
        "{err}"
    );
    assert!(
        err.contains("(gemma)") && err.contains("strict.toml"),
        "{err}"
    );
    let list = freehold(&["list", "--json"], home.path(), None);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
    let blobs = home.path().join("blobs/sha256");
    let n_blobs = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n_blobs, 0, "a refused import stores nothing");

    // run: refused with the reason, by file path and (once imported without a policy) by name.
    let o = freehold(
        &["run", s(&gguf), "hello", "-n", "1"],
        home.path(),
        Some(&strict),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("run refused"), "{err}");
    assert!(err.contains("Gemma Terms of Use (gemma)"), "{err}");

    let o = freehold(
        &[
            "import",
            s(&gguf),
            "--license",
            s(&terms),
            "--name",
            "gemma",
        ],
        home.path(),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = freehold(
        &["run", "gemma", "hello", "-n", "1"],
        home.path(),
        Some(&strict),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("run refused"), "{}", stderr(&o));

    // serve: refuses at start-up, naming the model and the reason (a server that started
    // anyway is killed and the test fails).
    let mut child = Command::new(env!("CARGO_BIN_EXE_freehold"))
        .args(["serve", "--model", "gemma", "--port", "0"])
        .env("FREEHOLD_HOME", home.path())
        .env("FREEHOLD_POLICY", &strict)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started a model the policy denies");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("serving gemma refused") && err.contains("(gemma)"),
        "{err}"
    );

    // A policy that allows the Gemma terms runs it.
    let allows = write_policy(
        home.path(),
        "allows.toml",
        "allow = [\"apache-2.0\", \"mit\", \"gemma\"]\n[organisation]\ncommercial_use = true\n",
    );
    let o = freehold(
        &["run", "gemma", "hello", "-n", "2", "--temp", "0"],
        home.path(),
        Some(&allows),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = freehold(&["license", "gemma"], home.path(), Some(&allows));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ALLOW"), "{out}");
    assert!(out.contains("Prohibited Use Policy"), "{out}");
}

#[test]
fn unknown_licence_needs_review_until_an_override_is_recorded() {
    let home = tempfile::tempdir().unwrap();
    let tiny = testdata::model("tiny.gguf");
    let review = write_policy(home.path(), "review.toml", "unknown = \"review\"\n");

    // Review does not stop an import (a reviewer needs the model at hand)...
    let o = freehold(
        &["import", s(&tiny), "--name", "tiny"],
        home.path(),
        Some(&review),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // ...but run refuses it with the way out.
    let o = freehold(
        &["run", "tiny", "hi", "-n", "1"],
        home.path(),
        Some(&review),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("run refused") && err.contains("--override"),
        "{err}"
    );

    // An override recorded for this content lets it run, and is kept in the catalog.
    let o = freehold(
        &[
            "license",
            "tiny",
            "--override",
            "random test weights, reviewed",
            "--by",
            "ci",
        ],
        home.path(),
        Some(&review),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = freehold(
        &["run", "tiny", "hi", "-n", "1", "--temp", "0"],
        home.path(),
        Some(&review),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // Without any policy nothing is enforced.
    let o = freehold(
        &["run", s(&tiny), "hi", "-n", "1", "--temp", "0"],
        home.path(),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // A policy file that does not parse stops the command, naming the file.
    let bad = write_policy(home.path(), "bad.toml", "allow = \"mit\n");
    let o = freehold(&["run", "tiny", "hi", "-n", "1"], home.path(), Some(&bad));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.toml"), "{}", stderr(&o));
}
