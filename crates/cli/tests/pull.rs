//! End-to-end `freehold pull` / `freehold push`: the real tiny GGUF model served by `fake_hub`
//! (a stand-in for the Hugging Face hub), and a real OCI registry (Debian's docker-registry
//! 2.8.2 on loopback). Every run uses its own FREEHOLD_HOME.

#[path = "../../remote/tests/fake_hub/mod.rs"]
mod fake_hub;
#[path = "../../remote/tests/registry/mod.rs"]
mod registry;

use std::path::Path;
use std::process::{Command, Output};

use fake_hub::{FakeFile, FakeHub, Fault};
use sha2::{Digest as _, Sha256};
use store::{media, ModelRef, Store};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
const README: &str =
    "---\nlicense: apache-2.0\nbase_model: org/base\n---\n# Tiny\nA random-weight test model.\n";

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn tiny() -> Vec<u8> {
    std::fs::read(testdata::model("tiny.gguf")).unwrap()
}

fn hub() -> FakeHub {
    let hub = FakeHub::start();
    hub.add_repo(
        "org/tiny-model",
        COMMIT,
        vec![
            FakeFile {
                path: "README.md".into(),
                bytes: README.as_bytes().to_vec(),
                lfs: false,
            },
            FakeFile {
                path: "LICENSE".into(),
                bytes: b"Apache License\nVersion 2.0, January 2004\n".to_vec(),
                lfs: false,
            },
            FakeFile {
                path: "tiny.gguf".into(),
                bytes: tiny(),
                lfs: true,
            },
            FakeFile {
                path: "images/diagram.png".into(),
                bytes: vec![1, 2, 3],
                lfs: false,
            },
        ],
        false,
    );
    hub
}

/// `freehold ARGS` with its own store and no hub token from the environment.
fn freehold(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freehold"))
        .args(args)
        .env("FREEHOLD_HOME", home)
        .env("HOME", home)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_ENDPOINT")
        .env_remove("FREEHOLD_OFFLINE")
        .env_remove("FREEHOLD_REGISTRY_USERNAME")
        .env_remove("FREEHOLD_REGISTRY_PASSWORD")
        .output()
        .expect("freehold runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "freehold failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The one-line error that ends stderr (progress lines may come before it).
fn failed(out: Output) -> String {
    assert!(!out.status.success(), "freehold should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    let last = err.lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("error: "), "{err}");
    last
}

fn tiny_digest() -> store::Digest {
    store::Digest::parse(&format!("sha256:{}", sha_hex(&tiny()))).unwrap()
}

#[test]
fn pull_from_hub_then_list_and_run() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let out = ok(freehold(
        home.path(),
        &["pull", "hf://org/tiny-model", "--endpoint", &hub.endpoint()],
    ));
    assert!(out.contains("as tiny-model:latest"), "{out}");

    let store = Store::open(home.path()).unwrap();
    let model = ModelRef::parse("tiny-model").unwrap();
    let (_, m) = store.manifest(&model).unwrap();
    let titles: Vec<_> = m.layers.iter().map(|d| d.what()).collect();
    assert_eq!(titles, ["tiny.gguf", "README.md", "LICENSE"]);
    assert_eq!(
        m.layer(media::MODEL_CARD).unwrap().size,
        README.len() as u64
    );
    let gguf = store.resolve_gguf(&model).unwrap();
    assert_eq!(std::fs::read(&gguf).unwrap(), tiny());
    let config = store.config_json(&model).unwrap();
    assert_eq!(config["source"]["commit"], COMMIT);
    assert_eq!(config["format"], "gguf");
    assert!(store.verify(None).unwrap().is_ok());

    let list = ok(freehold(home.path(), &["list"]));
    assert!(list.contains("tiny-model"), "{list}");
    // Runnable: generate a few tokens from the stored weights.
    let gen = ok(freehold(
        home.path(),
        &[
            "run",
            gguf.to_str().unwrap(),
            "Hello",
            "-n",
            "4",
            "--temp",
            "0",
        ],
    ));
    assert!(!gen.is_empty());

    // Pulling again fetches no weights: the blob is in the store.
    hub.clear_log();
    ok(freehold(
        home.path(),
        &["pull", "hf://org/tiny-model", "--endpoint", &hub.endpoint()],
    ));
    assert!(hub.log().iter().all(|l| l.server != "cdn"));
}

#[test]
fn wrong_checksum_leaves_nothing_visible() {
    let hub = hub();
    hub.fault("tiny.gguf", Fault::Corrupt);
    let home = tempfile::tempdir().unwrap();
    let err = failed(freehold(
        home.path(),
        &["pull", "hf://org/tiny-model", "--endpoint", &hub.endpoint()],
    ));
    assert!(
        err.contains("sha256 mismatch") && err.contains("tiny.gguf"),
        "{err}"
    );
    let store = Store::open(home.path()).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(!store.has_blob(&tiny_digest()));
    assert!(!store.partial_path(&tiny_digest()).exists());
}

#[test]
fn a_killed_pull_resumes_from_the_partial_file() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let bytes = tiny();
    let cut = bytes.len() / 3;
    std::fs::write(store.partial_path(&tiny_digest()), &bytes[..cut]).unwrap();
    ok(freehold(
        home.path(),
        &[
            "pull",
            "hf://org/tiny-model",
            "--endpoint",
            &hub.endpoint(),
            "-q",
        ],
    ));
    let ranges: Vec<String> = hub
        .log()
        .iter()
        .filter(|l| l.server == "cdn")
        .filter_map(|l| l.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges, [format!("bytes={cut}-{}", bytes.len() - 1)]);
    assert_eq!(
        std::fs::read(
            store
                .resolve_gguf(&ModelRef::parse("tiny-model").unwrap())
                .unwrap()
        )
        .unwrap(),
        bytes
    );
}

#[test]
fn dropped_connection_and_server_errors_are_survived() {
    let hub = hub();
    hub.fault(
        "tiny.gguf",
        Fault::DropAfter {
            bytes: 100_000,
            times: 1,
        },
    );
    hub.fault(
        "README.md",
        Fault::Status {
            code: 503,
            times: 1,
        },
    );
    let home = tempfile::tempdir().unwrap();
    ok(freehold(
        home.path(),
        &[
            "pull",
            "hf://org/tiny-model",
            "--endpoint",
            &hub.endpoint(),
            "-q",
        ],
    ));
    let store = Store::open(home.path()).unwrap();
    assert!(store.verify(None).unwrap().is_ok());
}

#[test]
fn two_concurrent_pulls_share_one_download() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let ep = hub.endpoint();
    let spawn = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_freehold"))
            .args([
                "pull",
                "hf://org/tiny-model",
                "--endpoint",
                &ep,
                "-q",
                "--name",
                name,
            ])
            .env("FREEHOLD_HOME", home.path())
            .env("HOME", home.path())
            .env_remove("HF_TOKEN")
            .env_remove("FREEHOLD_OFFLINE")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("one"), spawn("two"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = Store::open(home.path()).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert!(store.verify(None).unwrap().is_ok());
    assert!(!store.partial_path(&tiny_digest()).exists());
}

#[test]
fn errors_name_the_repo_file_and_revision() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let ep = hub.endpoint();
    let err = failed(freehold(
        home.path(),
        &["pull", "hf://org/tiny-model@v2", "--endpoint", &ep],
    ));
    assert!(
        err.contains("revision \"v2\"")
            && err.contains("hf://org/tiny-model")
            && err.contains("404"),
        "{err}"
    );
    let err = failed(freehold(
        home.path(),
        &["pull", "hf://org/tiny-model/nope.gguf", "--endpoint", &ep],
    ));
    assert!(err.contains("nope.gguf") && err.contains("main"), "{err}");
    let err = failed(freehold(
        home.path(),
        &["pull", "hf://org/private-model", "--endpoint", &ep],
    ));
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");
    let err = failed(freehold(
        home.path(),
        &["pull", "hf://org/../etc", "--endpoint", &ep],
    ));
    assert!(err.contains("invalid reference"), "{err}");
    let err = failed(freehold(home.path(), &["pull", "ftp://x/y"]));
    assert!(err.contains("hf://") && err.contains("oci://"), "{err}");
    assert!(Store::open(home.path()).unwrap().list().unwrap().is_empty());
}

#[test]
fn offline_pull_and_push_touch_no_network() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freehold"));
    let out = cmd
        .args(["pull", "hf://org/tiny-model", "--endpoint", &hub.endpoint()])
        .env("FREEHOLD_HOME", home.path())
        .env("FREEHOLD_OFFLINE", "1")
        .output()
        .unwrap();
    let err = failed(out);
    assert!(
        err.contains("offline: pulling hf://org/tiny-model needs the network"),
        "{err}"
    );
    let err = failed(freehold(
        home.path(),
        &["--offline", "push", "x", "oci://127.0.0.1:9/a:b"],
    ));
    assert!(
        err.contains("offline: pushing to oci://127.0.0.1:9/a:b"),
        "{err}"
    );
    assert!(hub.log().is_empty());
}

#[test]
fn push_then_pull_through_a_real_registry_is_byte_identical() {
    let hub = hub();
    let reg = registry::Registry::start();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(freehold(
        a.path(),
        &[
            "pull",
            "hf://org/tiny-model",
            "--endpoint",
            &hub.endpoint(),
            "-q",
        ],
    ));
    let dest = format!("oci://{}/models/tiny:v1", reg.host);
    let out = ok(freehold(a.path(), &["push", "tiny-model", &dest]));
    assert!(out.contains("4 blobs (4 uploaded)"), "{out}\n{}", reg.log());
    // Again: nothing to upload.
    let out = ok(freehold(a.path(), &["push", "tiny-model", &dest, "-q"]));
    assert!(out.contains("(0 uploaded)"), "{out}");

    let out = ok(freehold(b.path(), &["pull", &dest]));
    assert!(out.contains("as tiny:v1"), "{out}");
    let sa = Store::open(a.path()).unwrap();
    let sb = Store::open(b.path()).unwrap();
    let (da, ma) = sa
        .manifest(&ModelRef::parse("tiny-model").unwrap())
        .unwrap();
    let (db, mb) = sb.manifest(&ModelRef::parse("tiny:v1").unwrap()).unwrap();
    assert_eq!(da, db, "same manifest digest in both stores");
    assert_eq!(
        std::fs::read(sa.blob_path(&da)).unwrap(),
        std::fs::read(sb.blob_path(&db)).unwrap()
    );
    assert_eq!(ma, mb);
    for d in ma.blobs() {
        assert_eq!(
            std::fs::read(sa.blob_path(&d.digest)).unwrap(),
            std::fs::read(sb.blob_path(&d.digest)).unwrap(),
            "{}",
            d.what()
        );
    }
    assert!(sb.verify(None).unwrap().is_ok());

    // Errors: an unknown model, a digest destination, a missing tag in the registry.
    let err = failed(freehold(a.path(), &["push", "nope", &dest]));
    assert!(err.contains("nope"), "{err}");
    let err = failed(freehold(
        b.path(),
        &["pull", &format!("oci://{}/models/tiny:v9", reg.host)],
    ));
    assert!(
        err.contains("models/tiny:v9") && err.contains("404"),
        "{err}"
    );
}
