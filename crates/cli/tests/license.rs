//! `freehold license` and `freehold bom` end to end, on the real test models and the licence
//! texts their packages ship.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn freehold(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freehold"))
        .args(args)
        .env("FREEHOLD_HOME", home)
        .env_remove("FREEHOLD_POLICY")
        .env("FREEHOLD_OFFLINE", "1")
        .output()
        .expect("freehold runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn gemma() -> (PathBuf, PathBuf, PathBuf) {
    (
        testdata::model("gemma-3-270m-q4_k_m.gguf"),
        testdata::require("licenses/gemma3/GEMMA_TERMS.html", "licence-data"),
        testdata::require("licenses/gemma3/README.upstream.md", "licence-data"),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn license_of_gemma_file_quotes_its_terms() {
    let home = tempfile::tempdir().unwrap();
    let (gguf, terms, card) = gemma();
    let o = freehold(
        &[
            "license",
            s(&gguf),
            "--license-file",
            s(&terms),
            "--card",
            s(&card),
        ],
        home.path(),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("Licence:      Gemma Terms of Use (gemma), confidence high"),
        "{out}"
    );
    assert!(out.contains("Gemma Prohibited Use Policy"), "{out}");
    assert!(out.contains("quoted from GEMMA_TERMS.html"), "{out}");
    assert!(
        out.contains("\"You must not use any of the Gemma Services: for the restricted uses"),
        "{out}"
    );
    assert!(out.contains("google/gemma-3-270m"), "{out}");
    assert!(out.contains("not legal advice"), "{out}");
    // No policy given: the built-in default allows a known licence and lists the duties.
    assert!(
        out.contains("ALLOW under the built-in default policy"),
        "{out}"
    );

    let o = freehold(
        &["license", s(&gguf), "--license-file", s(&terms), "--json"],
        home.path(),
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["resolution"]["id"], "gemma");
    assert_eq!(
        v["resolution"]["terms"]["use_policy"]["name"],
        "Gemma Prohibited Use Policy"
    );
    assert_eq!(v["policy"]["decision"]["decision"], "allow");
    assert!(v["disclaimer"]
        .as_str()
        .unwrap()
        .contains("not legal advice"));
}

#[test]
fn policy_denies_gemma_and_exits_non_zero() {
    let home = tempfile::tempdir().unwrap();
    let (gguf, terms, _) = gemma();
    let pol = home.path().join("policy.toml");
    std::fs::write(
        &pol,
        "allow = [\"apache-2.0\", \"mit\"]\nunknown = \"deny\"\n",
    )
    .unwrap();
    let o = freehold(
        &[
            "license",
            s(&gguf),
            "--license-file",
            s(&terms),
            "--policy",
            s(&pol),
        ],
        home.path(),
    );
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("DENY"), "{out}");
    assert!(err.starts_with("error: denied by policy:"), "{err}");
    assert!(
        err.contains("Gemma Terms of Use (gemma)") && err.contains("policy.toml"),
        "{err}"
    );
    // The same policy through FREEHOLD_POLICY.
    let o = Command::new(env!("CARGO_BIN_EXE_freehold"))
        .args(["license", s(&gguf)])
        .env("FREEHOLD_HOME", home.path())
        .env("FREEHOLD_POLICY", &pol)
        .output()
        .unwrap();
    assert!(!o.status.success());
    // An override needs a stored model.
    let o = freehold(
        &["license", s(&gguf), "--override", "approved"],
        home.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("--override needs a model in the store"),
        "{}",
        text(&o).1
    );
}

#[test]
fn malformed_policy_names_file_line_and_key() {
    let home = tempfile::tempdir().unwrap();
    let gguf = testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let pol = home.path().join("bad.toml");
    std::fs::write(
        &pol,
        "allow = [\"mit\"]\n[organisation]\nmonthly_active_users = \"many\"\n",
    )
    .unwrap();
    let o = freehold(&["license", s(&gguf), "--policy", s(&pol)], home.path());
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("bad.toml: line 3") && err.contains("key `monthly_active_users`"),
        "{err}"
    );
    let o = freehold(
        &[
            "license",
            s(&gguf),
            "--policy",
            s(&home.path().join("missing.toml")),
        ],
        home.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("missing.toml"), "{}", text(&o).1);
}

#[test]
fn smollm2_is_apache_from_general_license() {
    let home = tempfile::tempdir().unwrap();
    let gguf = testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let pol = home.path().join("policy.toml");
    std::fs::write(
        &pol,
        "allow = [\"apache-2.0\", \"mit\"]\n[organisation]\ncommercial_use = true\n",
    )
    .unwrap();
    let o = freehold(
        &["license", s(&gguf), "--policy", s(&pol), "--json"],
        home.path(),
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["resolution"]["id"], "apache-2.0");
    assert_eq!(
        v["resolution"]["evidence"][0]["source"],
        "gguf general.license"
    );
    assert_eq!(v["policy"]["decision"]["decision"], "allow");
}

#[test]
fn bom_of_a_gguf_file() {
    let home = tempfile::tempdir().unwrap();
    let (gguf, terms, card) = gemma();
    let out = home.path().join("gemma.cdx.json");
    let o = freehold(
        &[
            "bom",
            s(&gguf),
            "--license-file",
            s(&terms),
            "--card",
            s(&card),
            "-o",
            s(&out),
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["bomFormat"], "CycloneDX");
    assert_eq!(v["specVersion"], "1.6");
    let m = &v["components"][0];
    assert_eq!(m["type"], "machine-learning-model");
    // The checksum scripts/fetch-models verified the file against.
    assert_eq!(
        m["hashes"][0]["content"],
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    );
    assert_eq!(m["licenses"][0]["license"]["name"], "Gemma Terms of Use");
    assert_eq!(m["pedigree"]["ancestors"][0]["name"], "google/gemma-3-270m");
    assert_eq!(
        std::fs::read_dir(home.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}

#[test]
fn stored_model_licence_layers_and_overrides() {
    let home = tempfile::tempdir().unwrap();
    let gguf = testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let lic = testdata::require("licenses/smollm2/LICENSE", "licence-data");
    let o = freehold(
        &[
            "import",
            s(&gguf),
            "--name",
            "smol:q4",
            "--license",
            s(&lic),
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", text(&o).1);

    let o = freehold(&["license", "smol:q4", "--json"], home.path());
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["resolution"]["id"], "apache-2.0");
    assert_eq!(
        v["resolution"]["confidence"], "high",
        "metadata and the licence layer agree"
    );

    let pol = home.path().join("policy.toml");
    std::fs::write(&pol, "allow = [\"mit\"]\n").unwrap();
    let o = freehold(&["license", "smol:q4", "--policy", s(&pol)], home.path());
    assert!(!o.status.success());
    let o = freehold(
        &[
            "license",
            "smol:q4",
            "--policy",
            s(&pol),
            "--override",
            "vetted by legal",
            "--by",
            "alice",
        ],
        home.path(),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("ALLOW") && out.contains("alice") && out.contains("vetted by legal"),
        "{out}"
    );
    assert!(out.contains("Override #"), "{out}");
    // Recorded: later checks of the same content are allowed, and say why.
    let o = freehold(&["license", "smol:q4", "--policy", s(&pol)], home.path());
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(
        text(&o).0.contains("override recorded by alice"),
        "{}",
        text(&o).0
    );

    let o = freehold(&["bom", "smol:q4"], home.path());
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v["components"][0];
    assert_eq!(m["licenses"][0]["license"]["id"], "Apache-2.0");
    assert_eq!(
        m["hashes"][0]["content"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert!(
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "file"
                && c["mime-type"] == "application/vnd.freehold.model.license")
    );

    let o = freehold(&["license", "no-such-model"], home.path());
    assert!(!o.status.success());
}
