//! The OCI client against a real registry (Debian's docker-registry 2.8.2 on loopback): push a
//! model-shaped artifact (custom config and layer media types, `artifactType`), pull it back
//! byte for byte, resume a blob download, basic auth, and the errors.

mod registry;

use std::time::Duration;

use registry::Registry;
use remote::oci::{BlobRef, OciClient, OciRef};
use remote::{sha256_bytes, ClientOptions, RemoteError, RetryPolicy};

fn opts() -> ClientOptions {
    ClientOptions {
        offline: false,
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        parts: 1,
        parallel_threshold: u64::MAX,
        progress: false,
    }
}

struct Artifact {
    config: Vec<u8>,
    layers: Vec<(Vec<u8>, &'static str, &'static str)>,
}

impl Artifact {
    fn new() -> Artifact {
        Artifact {
            config: br#"{"format":"gguf","architecture":"llama"}"#.to_vec(),
            layers: vec![
                (
                    (0..200_000u32).map(|i| (i % 253) as u8).collect(),
                    "application/vnd.freehold.model.gguf",
                    "tiny.gguf",
                ),
                (
                    b"Apache License 2.0".to_vec(),
                    "application/vnd.freehold.model.license",
                    "LICENSE",
                ),
            ],
        }
    }

    fn manifest(&self) -> Vec<u8> {
        let desc = |b: &[u8], mt: &str, title: Option<&str>| {
            let mut s = format!(
                r#"{{"mediaType":"{mt}","digest":"sha256:{}","size":{}"#,
                sha256_bytes(b),
                b.len()
            );
            if let Some(t) = title {
                s.push_str(&format!(
                    r#","annotations":{{"org.opencontainers.image.title":"{t}"}}"#
                ));
            }
            s.push('}');
            s
        };
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|(b, mt, t)| desc(b, mt, Some(t)))
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.freehold.model.v1","config":{},"layers":[{}]}}"#,
            desc(&self.config, "application/vnd.freehold.model.config.v1+json", None),
            layers.join(",")
        )
        .into_bytes()
    }

    fn push(&self, c: &OciClient, tag: &str) -> String {
        c.push_blob_bytes(&self.config).unwrap();
        for (b, _, _) in &self.layers {
            c.push_blob_bytes(b).unwrap();
        }
        c.put_manifest(tag, &self.manifest()).unwrap()
    }
}

#[test]
fn push_then_pull_is_byte_identical() {
    let reg = Registry::start();
    let r = OciRef::parse(&format!("oci://{}/models/tiny:v1", reg.host)).unwrap();
    let c = OciClient::new(&r, false, None, opts()).unwrap();
    c.ping().unwrap();
    let a = Artifact::new();
    let digest = a.push(&c, "v1");
    assert_eq!(digest, sha256_bytes(&a.manifest()));
    // Pushing again uploads nothing (the blobs are there).
    let layer = &a.layers[0].0;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("blob");
    std::fs::write(&p, layer).unwrap();
    assert!(!c.push_blob(&sha256_bytes(layer), &p).unwrap());

    let (bytes, sha) = c.get_manifest().unwrap();
    assert_eq!(
        bytes,
        a.manifest(),
        "manifest bytes must round-trip unchanged:\n{}",
        reg.log()
    );
    assert_eq!(sha, digest);

    let dest = dir.path().join("partial");
    let b = BlobRef {
        sha256: sha256_bytes(layer),
        size: layer.len() as u64,
        media_type: "application/vnd.freehold.model.gguf".into(),
    };
    let got = c.download_blob(&b, "tiny.gguf", &dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *layer);
    assert_eq!(got.resumed_from, 0);

    // A partial file from a killed pull is continued, not restarted.
    std::fs::write(&dest, &layer[..50_000]).unwrap();
    let got = c.download_blob(&b, "tiny.gguf", &dest).unwrap();
    assert_eq!(got.resumed_from, 50_000);
    assert_eq!(std::fs::read(&dest).unwrap(), *layer);

    let small = c
        .fetch_blob_small(
            &BlobRef {
                sha256: sha256_bytes(&a.config),
                size: a.config.len() as u64,
                media_type: String::new(),
            },
            "config",
            1 << 20,
        )
        .unwrap();
    assert_eq!(small, a.config);

    // By digest as well as by tag.
    let by_digest =
        OciRef::parse(&format!("oci://{}/models/tiny@sha256:{digest}", reg.host)).unwrap();
    let c2 = OciClient::new(&by_digest, false, None, opts()).unwrap();
    assert_eq!(c2.get_manifest().unwrap().0, a.manifest());
}

#[test]
fn missing_things_are_named() {
    let reg = Registry::start();
    let r = OciRef::parse(&format!("oci://{}/models/none:v1", reg.host)).unwrap();
    let c = OciClient::new(&r, false, None, opts()).unwrap();
    let err = c.get_manifest().unwrap_err();
    assert!(matches!(err, RemoteError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("models/none:v1"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = c
        .download_blob(
            &BlobRef {
                sha256: "ab".repeat(32),
                size: 3,
                media_type: String::new(),
            },
            "x",
            &dir.path().join("p"),
        )
        .unwrap_err();
    assert!(matches!(err, RemoteError::NotFound { .. }), "{err}");

    // A manifest whose blobs were never pushed is refused by the registry.
    let a = Artifact::new();
    let err = c.put_manifest("v1", &a.manifest()).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 400") || err.contains("MANIFEST_BLOB_UNKNOWN"),
        "{err}"
    );
}

#[test]
fn basic_auth_from_credentials() {
    let reg = Registry::start_with_htpasswd();
    let r = OciRef::parse(&format!("oci://{}/private/m:t", reg.host)).unwrap();
    let anon = OciClient::new(&r, false, None, opts()).unwrap();
    let err = anon.push_blob_bytes(b"hello").unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("FREEHOLD_REGISTRY_USERNAME"),
        "{err}"
    );

    let wrong = OciClient::new(
        &r,
        false,
        Some((registry::USER.into(), "wrong".into())),
        opts(),
    )
    .unwrap();
    let err = wrong.push_blob_bytes(b"hello").unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized { .. }), "{err}");

    let c = OciClient::new(
        &r,
        false,
        Some((registry::USER.into(), registry::PASSWORD.into())),
        opts(),
    )
    .unwrap();
    let a = Artifact::new();
    a.push(&c, "t");
    assert_eq!(c.get_manifest().unwrap().0, a.manifest());
}

#[test]
fn offline_never_connects() {
    let r = OciRef::parse("oci://127.0.0.1:9/x:y").unwrap();
    let mut o = opts();
    o.offline = true;
    let c = OciClient::new(&r, false, None, o).unwrap();
    assert!(matches!(
        c.get_manifest().unwrap_err(),
        RemoteError::Offline { .. }
    ));
}

/// A stand-in for a registry behind a token service (the real registry's token auth needs a
/// signing certificate and a separate auth server): `/v2/...` wants `Bearer tok-123`, the
/// realm on another origin hands it out for basic credentials, and blob GETs redirect to a
/// third origin standing for a storage backend, which must never see a credential.
mod token_front {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    pub type Log = Arc<Mutex<Vec<(&'static str, String, BTreeMap<String, String>)>>>;

    fn read_req(c: &TcpStream) -> (String, BTreeMap<String, String>) {
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut h = BTreeMap::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                h.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        (target, h)
    }

    fn answer(c: &mut TcpStream, status: &str, headers: &[String], body: &[u8]) {
        let mut s = format!(
            "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        c.write_all(s.as_bytes()).unwrap();
        c.write_all(body).unwrap();
    }

    pub fn start(blob: Vec<u8>, digest: String) -> (String, Log) {
        let log: Log = Arc::default();
        let reg = TcpListener::bind("127.0.0.1:0").unwrap();
        let auth = TcpListener::bind("127.0.0.1:0").unwrap();
        let storage = TcpListener::bind("127.0.0.1:0").unwrap();
        let (ra, aa, sa) = (
            reg.local_addr().unwrap(),
            auth.local_addr().unwrap(),
            storage.local_addr().unwrap(),
        );
        let l = log.clone();
        std::thread::spawn(move || {
            for c in auth.incoming() {
                let mut c = c.unwrap();
                let (t, h) = read_req(&c);
                l.lock().unwrap().push(("auth", t.clone(), h.clone()));
                // "freehold:pw" in base64.
                if h.get("authorization").map(String::as_str) == Some("Basic ZnJlZWhvbGQ6cHc=")
                    && t.contains("scope=repository%3Ateam%2Fm%3Apull")
                {
                    answer(&mut c, "200 OK", &[], br#"{"token":"tok-123"}"#);
                } else {
                    answer(&mut c, "401 Unauthorized", &[], b"{}");
                }
            }
        });
        let l = log.clone();
        std::thread::spawn(move || {
            for c in storage.incoming() {
                let mut c = c.unwrap();
                let (t, h) = read_req(&c);
                l.lock().unwrap().push(("storage", t, h));
                answer(&mut c, "200 OK", &[], &blob);
            }
        });
        let l = log.clone();
        std::thread::spawn(move || {
            for c in reg.incoming() {
                let mut c = c.unwrap();
                let (t, h) = read_req(&c);
                l.lock().unwrap().push(("registry", t.clone(), h.clone()));
                if h.get("authorization").map(String::as_str) != Some("Bearer tok-123") {
                    let ch = format!(
                        "www-authenticate: Bearer realm=\"http://{aa}/token\",service=\"fake\",scope=\"repository:team/m:pull\""
                    );
                    answer(&mut c, "401 Unauthorized", &[ch], b"{}");
                } else if t == format!("/v2/team/m/blobs/sha256:{digest}") {
                    answer(
                        &mut c,
                        "307 Temporary Redirect",
                        &[format!("location: http://{sa}/data/{digest}")],
                        b"",
                    );
                } else {
                    answer(&mut c, "404 Not Found", &[], b"{}");
                }
            }
        });
        (ra.to_string(), log)
    }
}

#[test]
fn bearer_token_flow_and_no_credentials_to_storage() {
    let blob = b"weights-weights-weights".to_vec();
    let digest = sha256_bytes(&blob);
    let (host, log) = token_front::start(blob.clone(), digest.clone());
    let r = OciRef::parse(&format!("oci://{host}/team/m:v1")).unwrap();
    let c = OciClient::new(&r, true, Some(("freehold".into(), "pw".into())), opts()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("p");
    let b = BlobRef {
        sha256: digest.clone(),
        size: blob.len() as u64,
        media_type: String::new(),
    };
    c.download_blob(&b, "w", &dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), blob);
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter().any(|(s, _, _)| *s == "auth"),
        "a token was asked for"
    );
    for (server, target, headers) in &log {
        match *server {
            "storage" => assert!(!headers.contains_key("authorization"), "{target}"),
            "auth" => assert!(
                headers
                    .get("authorization")
                    .is_some_and(|a| a.starts_with("Basic ")),
                "the realm gets the basic credentials"
            ),
            _ => assert!(
                !headers
                    .get("authorization")
                    .is_some_and(|a| a.starts_with("Basic ")),
                "the registry gets the token, never the password"
            ),
        }
    }

    // Without credentials the token service refuses, and the error says what to set.
    let anon = OciClient::new(&r, true, None, opts()).unwrap();
    let err = anon
        .download_blob(&b, "w", &dir.path().join("q"))
        .unwrap_err();
    assert!(
        err.to_string().contains("FREEHOLD_REGISTRY_USERNAME"),
        "{err}"
    );
}
