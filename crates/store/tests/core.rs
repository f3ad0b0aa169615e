//! The store's core promises: strict digests and names, commit as the only way to become
//! visible, crash leftovers invisible and collected, corruption named, concurrent writers of
//! one blob safe, overrides recorded.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use store::{media, Descriptor, Digest, Manifest, ModelRef, ProblemKind, Store, StoreError};

fn small_model(s: &Store, weights: &[u8]) -> Manifest {
    let (wd, ws) = s.add_blob_from_bytes(weights).unwrap();
    let (ld, ls) = s.add_blob_from_bytes(b"Apache License 2.0").unwrap();
    let (cd, cs) = s
        .add_blob_from_bytes(br#"{"architecture":"llama"}"#)
        .unwrap();
    Manifest::new(
        Descriptor::new(media::MODEL_CONFIG, cd, cs),
        vec![
            Descriptor::with_title(media::GGUF, wd, ws, "m.gguf").unwrap(),
            Descriptor::with_title(media::LICENSE, ld, ls, "LICENSE").unwrap(),
        ],
    )
}

fn r(s: &str) -> ModelRef {
    ModelRef::parse(s).unwrap()
}

#[test]
fn digests_are_strict() {
    let ok = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(Digest::parse(&ok).unwrap().to_string(), ok);
    let hostile = [
        String::new(),
        "sha256:".into(),
        format!("sha512:{}", "ab".repeat(32)),
        format!("SHA256:{}", "ab".repeat(32)),
        format!("sha256:{}", "AB".repeat(32)),
        format!("sha256:{}", "ab".repeat(31)),
        format!("sha256:{}0", "ab".repeat(32)),
        format!("sha256:../../../../etc/passwd{}", "a".repeat(36)),
        format!("sha256:{}/..", "ab".repeat(31)),
        format!("sha256:{}\0", "ab".repeat(32)),
        format!("sha256:{} ", "ab".repeat(32)),
        format!("sha256:{}", "gg".repeat(32)),
        format!(" sha256:{}", "ab".repeat(32)),
    ];
    for h in &hostile {
        let e = Digest::parse(h).unwrap_err();
        assert!(matches!(e, StoreError::BadDigest { .. }), "{h:?} gave {e}");
    }
    assert_eq!(
        Digest::of_bytes(b"").hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn names_are_strict() {
    for ok in ["smollm2", "smollm2:latest", "a.b_c-d:Q4_K_M", "x:1.0", "0"] {
        ModelRef::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    assert_eq!(r("m").to_string(), "m:latest");
    let long = "a".repeat(129);
    for bad in [
        "",
        ":tag",
        "name:",
        "../x",
        "..",
        "a..b",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "-dash",
        "Upper",
        "nul\0x",
        "a:b:c",
        "a:../x",
        "a:t/x",
        "sp ace",
        "é",
        long.as_str(),
    ] {
        let e = ModelRef::parse(bad).unwrap_err();
        assert!(matches!(e, StoreError::BadName { .. }), "{bad:?} gave {e}");
    }
    assert_eq!(
        store::sanitize_name("SmolLM2 135M Instruct").as_deref(),
        Some("smollm2-135m-instruct")
    );
    assert_eq!(store::sanitize_name("../../etc").as_deref(), Some("etc"));
    assert_eq!(store::sanitize_name("///"), None);
}

#[test]
fn hostile_manifests_are_rejected() {
    let good = format!("sha256:{}", "ab".repeat(32));
    let make = |digest: &str, title: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.freehold.model.v1","config":{{"mediaType":"application/vnd.freehold.model.config.v1+json","digest":"{good}","size":2}},"layers":[{{"mediaType":"application/vnd.freehold.model.gguf","digest":"{digest}","size":1,"annotations":{{"org.opencontainers.image.title":"{title}"}}}}]}}"#
        )
    };
    Manifest::from_bytes(make(&good, "m.gguf").as_bytes()).unwrap();
    for (digest, title) in [
        ("sha256:../../../../../../etc/passwd", "m.gguf"),
        ("sha256:..%2F..%2Fetc", "m.gguf"),
        ("sha512:00", "m.gguf"),
        (good.as_str(), "../m.gguf"),
        (good.as_str(), "/etc/passwd"),
        (good.as_str(), "a\\\\b"),
        (good.as_str(), ".."),
        (good.as_str(), ""),
    ] {
        let e = Manifest::from_bytes(make(digest, title).as_bytes()).unwrap_err();
        assert!(
            matches!(e, StoreError::BadManifest { .. }),
            "{digest} {title}: {e}"
        );
    }
    assert!(Manifest::from_bytes(b"not json").is_err());
    assert!(Manifest::from_bytes(&vec![b' '; store::MAX_MANIFEST_BYTES + 1]).is_err());
}

#[test]
fn canonical_bytes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m = small_model(&s, b"weights");
    let bytes = m.to_canonical_bytes();
    let back = Manifest::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_canonical_bytes(), bytes);
    assert_eq!(m.digest(), Digest::of_bytes(&bytes));
}

#[test]
fn commit_is_the_only_way_to_be_visible() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m = small_model(&s, b"weights");
    assert!(s.list().unwrap().is_empty(), "blobs alone are not a model");
    let d = s.commit(&r("m:v1"), &m, "test").unwrap();
    let list = s.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].model, r("m:v1"));
    assert_eq!(list[0].manifest, d);
    assert_eq!(list[0].architecture.as_deref(), Some("llama"));
    let (d2, m2) = s.manifest(&r("m:v1")).unwrap();
    assert_eq!((d2, &m2), (d, &m));
    // The manifest bytes are themselves a blob whose name is their digest.
    assert_eq!(
        Digest::of_bytes(&std::fs::read(s.blob_path(&d)).unwrap()),
        d
    );
    let gguf = s.resolve_gguf(&r("m:v1")).unwrap();
    assert_eq!(std::fs::read(gguf).unwrap(), b"weights");
    assert!(matches!(
        s.manifest(&r("m:v2")).unwrap_err(),
        StoreError::NotFound(_)
    ));

    // A manifest naming a blob that is not there, or with the wrong size, is refused.
    let mut missing = m.clone();
    missing.layers[0].digest = Digest::of_bytes(b"never added");
    let e = s.commit(&r("bad"), &missing, "test").unwrap_err();
    assert!(e.to_string().contains("m.gguf"), "{e}");
    assert!(matches!(e, StoreError::MissingBlob { .. }), "{e}");
    let mut short = m.clone();
    short.layers[0].size += 1;
    assert!(matches!(
        s.commit(&r("bad"), &short, "test").unwrap_err(),
        StoreError::SizeMismatch { .. }
    ));
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn killed_write_leaves_nothing_visible_and_gc_collects_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m = small_model(&s, b"kept weights");
    s.commit(&r("kept"), &m, "test").unwrap();
    // What a process killed mid-write leaves: a temp file, a half-downloaded partial, and
    // no catalog row.
    let tmp = dir.path().join("tmp/blob-999999-0-00000000.tmp");
    std::fs::write(&tmp, b"half a blob").unwrap();
    let partial = s.partial_path(&Digest::of_bytes(b"a download"));
    std::fs::write(&partial, b"half a download").unwrap();
    // The parallel-parts journal of that download lives exactly as long as the partial.
    let journal = partial.with_extension("partial.parts");
    std::fs::write(&journal, b"journal").unwrap();
    let names: Vec<String> = s
        .list()
        .unwrap()
        .iter()
        .map(|e| e.model.to_string())
        .collect();
    assert_eq!(names, ["kept:latest"]);

    // Recent partial downloads survive the default grace period (they are resumable)...
    let rep = s.gc().unwrap();
    assert_eq!(
        rep.temp_files,
        vec!["blob-999999-0-00000000.tmp".to_string()]
    );
    assert!(!tmp.exists());
    assert!(partial.exists());
    assert!(journal.exists(), "a kept partial keeps its journal");
    assert_eq!(rep.partials_kept, 1);
    assert!(
        rep.blobs.is_empty(),
        "referenced blobs stay: {:?}",
        rep.blobs
    );
    // ...but not past it, when nobody holds their lock.
    let rep = s.gc_with_grace(Duration::ZERO).unwrap();
    assert_eq!(rep.temp_files.len(), 1);
    assert!(!partial.exists());
    assert!(!journal.exists());
    assert!(s.verify(None).unwrap().is_ok());
}

#[test]
fn gc_keeps_a_held_partial() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let d = Digest::of_bytes(b"x");
    let lock = s.lock_partial(&d).unwrap();
    std::fs::write(s.partial_path(&d), b"partial").unwrap();
    // Another process doing gc while this one is writing is refused, not racing.
    let other = Store::open(dir.path()).unwrap();
    let e = other.gc_with_grace(Duration::ZERO).unwrap_err();
    assert!(matches!(e, StoreError::Busy(_)), "{e}");
    drop(lock);
    other.gc_with_grace(Duration::ZERO).unwrap();
    assert!(!s.partial_path(&d).exists());
}

#[test]
fn rm_then_gc_removes_only_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let a = small_model(&s, b"weights a");
    let b = small_model(&s, b"weights b");
    s.commit(&r("a"), &a, "test").unwrap();
    let bd = s.commit(&r("b"), &b, "test").unwrap();
    assert_eq!(s.remove(&r("b")).unwrap(), bd);
    assert!(matches!(
        s.remove(&r("b")).unwrap_err(),
        StoreError::NotFound(_)
    ));
    // rm alone deletes no file.
    assert!(s.has_blob(&bd));
    let rep = s.gc().unwrap();
    let gone: Vec<Digest> = rep.blobs.iter().map(|(d, _)| *d).collect();
    // b's manifest and weights go; the licence and config are shared with a and stay.
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(gone.contains(&bd));
    assert!(gone.contains(&b.layers[0].digest));
    assert!(s.has_blob(&a.layers[1].digest));
    assert!(s.verify(None).unwrap().is_ok());
    assert_eq!(
        s.resolve_gguf(&r("a"))
            .map(|p| std::fs::read(p).unwrap())
            .unwrap(),
        b"weights a"
    );
}

#[test]
fn verify_names_corrupt_and_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m = small_model(&s, b"the weights of a model");
    s.commit(&r("m"), &m, "test").unwrap();
    assert!(s.verify(Some(&r("m"))).unwrap().is_ok());

    let wpath = s.blob_path(&m.layers[0].digest);
    let mut bytes = std::fs::read(&wpath).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&wpath, &bytes).unwrap();
    std::fs::remove_file(s.blob_path(&m.layers[1].digest)).unwrap();
    let rep = s.verify(None).unwrap();
    assert!(!rep.is_ok());
    let p = &rep.models[0].problems;
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].digest, m.layers[0].digest);
    assert_eq!(p[0].what, "m.gguf");
    assert!(matches!(p[0].kind, ProblemKind::Corrupt { .. }));
    assert!(p[0].to_string().contains(&m.layers[0].digest.to_string()));
    assert_eq!(p[1].what, "LICENSE");
    assert!(matches!(p[1].kind, ProblemKind::Missing));
    // A manifest whose blob is missing cannot be committed again.
    assert!(s.commit(&r("again"), &m, "test").is_err());
    // Re-adding the content repairs the store.
    s.add_blob_from_bytes(b"the weights of a model").unwrap();
    s.add_blob_from_bytes(b"Apache License 2.0").unwrap();
    assert!(s.verify(None).unwrap().is_ok());
}

#[test]
fn concurrent_writers_of_one_blob_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let want = Digest::of_bytes(&content);
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let home = dir.path().to_path_buf();
            let content = content.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                // Each thread its own Store, as separate processes would have.
                let s = Store::open(&home).unwrap();
                barrier.wait();
                let (d, _) = s.add_blob_from_bytes(&content).unwrap();
                let (cd, cs) = s.add_blob_from_bytes(b"{}").unwrap();
                let m = Manifest::new(
                    Descriptor::new(media::MODEL_CONFIG, cd, cs),
                    vec![
                        Descriptor::with_title(media::GGUF, d, content.len() as u64, "w.gguf")
                            .unwrap(),
                    ],
                );
                s.commit(&ModelRef::parse(&format!("m{i}")).unwrap(), &m, "thread")
                    .unwrap();
                d
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.list().unwrap().len(), n);
    assert!(s.verify(None).unwrap().is_ok());
    assert_eq!(std::fs::read(s.blob_path(&want)).unwrap(), content);
    // No temporary file is left behind by the losers of the rename race.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn partial_lock_serialises_downloads_of_one_blob() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"downloaded content".to_vec();
    let d = Digest::of_bytes(&content);
    let downloads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let home = dir.path().to_path_buf();
            let content = content.clone();
            let downloads = downloads.clone();
            std::thread::spawn(move || {
                let s = Store::open(&home).unwrap();
                let lock = s.lock_partial(&d).unwrap();
                if !s.has_blob(&d) {
                    downloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::fs::write(lock.partial_path(), &content).unwrap();
                    s.adopt_blob(lock.partial_path(), &d).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 1);
    let s = Store::open(dir.path()).unwrap();
    assert!(s.has_blob(&d));
    assert!(!s.partial_path(&d).exists());
}

#[test]
fn adopt_blob_rejects_wrong_content() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let want = Digest::of_bytes(b"the real thing");
    let p = s.partial_path(&want);
    std::fs::write(&p, b"something else").unwrap();
    let e = s.adopt_blob(&p, &want).unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&want.to_string()));
    assert!(!p.exists(), "a mismatching download is removed");
    assert!(!s.has_blob(&want));
}

#[test]
fn overrides_are_recorded_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m = small_model(&s, b"w");
    let d = s.commit(&r("m"), &m, "test").unwrap();
    assert!(s.overrides(&r("m")).unwrap().is_empty());
    s.record_override(
        &r("m"),
        "no-commercial-use",
        "alice@example.org",
        "research only",
    )
    .unwrap();
    let o = s.overrides(&r("m")).unwrap();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].rule, "no-commercial-use");
    assert_eq!(o[0].who, "alice@example.org");
    assert_eq!(o[0].why, "research only");
    assert_eq!(o[0].manifest, Some(d));
    assert!(s.record_override(&r("absent"), "x", "y", "z").is_err());
    assert!(s.record_override(&r("m"), "x", "", "z").is_err());
    // Survives reopening (it is in the catalog, not in memory).
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.overrides(&r("m")).unwrap().len(), 1);
}

#[test]
fn resolve_model_arg_tries_file_then_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("home")).unwrap();
    let m = small_model(&s, b"w");
    s.commit(&r("m"), &m, "test").unwrap();
    let file = dir.path().join("model.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    assert_eq!(s.resolve_model_arg(file.to_str().unwrap()).unwrap(), file);
    assert_eq!(
        s.resolve_model_arg("m").unwrap(),
        s.blob_path(&m.layers[0].digest)
    );
    for arg in ["nope.gguf", "no/such/file", "absent:tag"] {
        let e = s.resolve_model_arg(arg).unwrap_err().to_string();
        assert!(
            e.contains("neither a model file") && e.contains("store"),
            "{e}"
        );
    }
}

#[test]
fn offline_flag() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.set_offline(true);
    assert!(s.offline());
    s.set_offline(false);
    assert_eq!(
        s.offline(),
        std::env::var("FREEHOLD_OFFLINE").is_ok_and(|v| v == "1")
    );
}

#[test]
fn store_is_send_and_sync() {
    fn f<T: Send + Sync>() {}
    f::<Store>();
}

#[test]
fn hostile_catalog_rows_do_not_reach_paths() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m = small_model(&s, b"w");
    s.commit(&r("m"), &m, "test").unwrap();
    drop(s);
    // Someone edits the catalog by hand to point at ../../etc/passwd.
    let db = rusqlite_open(dir.path());
    db.execute(
        "UPDATE models SET manifest = 'sha256:../../../../etc/passwd'",
        [],
    )
    .unwrap();
    drop(db);
    let s = Store::open(dir.path()).unwrap();
    let e = s.resolve_gguf(&r("m")).unwrap_err();
    assert!(e.to_string().contains("invalid digest"), "{e}");
    assert!(s.list().is_err());
}

fn rusqlite_open(home: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(home.join("catalog.db")).unwrap()
}
