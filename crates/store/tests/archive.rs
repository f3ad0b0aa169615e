//! `export` / archive import: a round trip between two stores, and hostile archives
//! (tampered blobs, path traversal, absolute names, links, bad digests, lying indexes)
//! rejected with nothing made visible and nothing written outside the store.

use std::io::Read;
use std::path::{Path, PathBuf};

use store::{media, Descriptor, Digest, ImportOptions, Manifest, ModelRef, Store, StoreError};
use tar::{EntryType, Header};

fn r(s: &str) -> ModelRef {
    ModelRef::parse(s).unwrap()
}

fn small_model(s: &Store) -> Manifest {
    let (wd, ws) = s.add_blob_from_bytes(b"GGUF pretend weights").unwrap();
    let (ld, ls) = s.add_blob_from_bytes(b"MIT licence").unwrap();
    let (cd, cs) = s.add_blob_from_bytes(b"{}").unwrap();
    let m = Manifest::new(
        Descriptor::new(media::MODEL_CONFIG, cd, cs),
        vec![
            Descriptor::with_title(media::GGUF, wd, ws, "w.gguf").unwrap(),
            Descriptor::with_title(media::LICENSE, ld, ls, "LICENSE").unwrap(),
        ],
    );
    s.commit(&r("small:v1"), &m, "test").unwrap();
    m
}

/// (entry name, bytes) of every entry, in order.
fn entries(tar_path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (name, v)
        })
        .collect()
}

/// A tar entry with exactly `name` in its header, no validation (hostile archives).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, ty: EntryType, data: &[u8], link: &str) {
    let mut h = Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(ty);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn write_tar(path: &Path, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    exported: PathBuf,
    manifest: Manifest,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let s = Store::open(&root.join("a")).unwrap();
    let manifest = small_model(&s);
    let exported = root.join("small.tar");
    s.export(&r("small:v1"), &exported).unwrap();
    Fixture {
        _dir: dir,
        root,
        exported,
        manifest,
    }
}

/// Imports `tar` into a fresh store; the error, after checking nothing became visible.
fn import_fails(root: &Path, tar: &Path) -> String {
    let home = root.join(format!("b-{}", tar.file_stem().unwrap().to_string_lossy()));
    let s = Store::open(&home).unwrap();
    let e = s
        .import(tar, &ImportOptions::default())
        .expect_err("hostile archive accepted");
    assert!(s.list().unwrap().is_empty(), "a model became visible");
    assert_eq!(
        std::fs::read_dir(home.join("tmp")).unwrap().count(),
        0,
        "temporary files left"
    );
    assert_eq!(
        std::fs::read_dir(home.join("blobs/sha256"))
            .unwrap()
            .count(),
        0,
        "blobs installed from a rejected archive"
    );
    e.to_string()
}

#[test]
fn export_import_round_trip() {
    let f = fixture();
    let names: Vec<String> = entries(&f.exported).into_iter().map(|e| e.0).collect();
    let md = f.manifest.digest();
    let mut want = vec![
        "oci-layout".to_string(),
        "index.json".into(),
        "manifest.json".into(),
        format!("blobs/sha256/{}", md.hex()),
    ];
    for d in f.manifest.blobs() {
        want.push(format!("blobs/sha256/{}", d.digest.hex()));
    }
    want.push("SHA256SUMS".into());
    assert_eq!(names, want);
    // No temporary file is left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(&f.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let b = Store::open(&f.root.join("b")).unwrap();
    let rep = b.import(&f.exported, &ImportOptions::default()).unwrap();
    assert_eq!(rep.model, r("small:v1"));
    assert_eq!(rep.manifest, md);
    assert_eq!(rep.format, "archive");
    assert!(b.verify(None).unwrap().is_ok());
    assert_eq!(
        std::fs::read(b.resolve_gguf(&r("small:v1")).unwrap()).unwrap(),
        b"GGUF pretend weights"
    );
    // Under another name too.
    let rep = b
        .import(
            &f.exported,
            &ImportOptions {
                name: Some(r("copy")),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rep.model, r("copy:latest"));
    assert_eq!(b.list().unwrap().len(), 2);
}

#[test]
fn real_gguf_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(&dir.path().join("a")).unwrap();
    let rep = a
        .import(&testdata::model("tiny.gguf"), &ImportOptions::default())
        .unwrap();
    let out = dir.path().join("tiny.tar");
    let ex = a.export(&rep.model, &out).unwrap();
    assert_eq!(ex.blobs, 3);
    let b = Store::open(&dir.path().join("b")).unwrap();
    let rep2 = b.import(&out, &ImportOptions::default()).unwrap();
    assert_eq!(rep2.manifest, rep.manifest);
    assert_eq!(b.config_json(&rep2.model).unwrap()["architecture"], "llama");
}

#[test]
fn tampered_blob_is_named() {
    let f = fixture();
    let mut bytes = std::fs::read(&f.exported).unwrap();
    let needle = b"GGUF pretend weights";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + 5] ^= 0x20;
    let bad = f.root.join("tampered.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let e = import_fails(&f.root, &bad);
    let wd = f.manifest.layers[0].digest;
    assert!(e.contains(&wd.to_string()) && e.contains("tampered"), "{e}");
}

#[test]
fn tampered_manifest_is_rejected() {
    let f = fixture();
    // A manifest.json edited to point at other content no longer matches index.json.
    let mut m = f.manifest.clone();
    m.annotations.insert("x".into(), "y".into());
    let ents = entries(&f.exported);
    let bad = f.root.join("manifest.tar");
    write_tar(&bad, |b| {
        for (name, data) in &ents {
            let data = if name == "manifest.json" {
                m.to_canonical_bytes()
            } else {
                data.clone()
            };
            raw(b, name, EntryType::Regular, &data, "");
        }
    });
    let e = import_fails(&f.root, &bad);
    assert!(e.contains("index.json names manifest"), "{e}");
}

/// Writes one hostile entry into an archive.
type Hostile = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;

#[test]
fn hostile_entry_names_and_types_are_rejected() {
    let f = fixture();
    let ents = entries(&f.exported);
    let wd = f.manifest.layers[0].digest;
    let cases: Vec<(&str, Hostile, &str)> = vec![
        (
            "dotdot",
            Box::new(|b| raw(b, "../x", EntryType::Regular, b"pwned", "")),
            "\"../x\"",
        ),
        (
            "nested-dotdot",
            Box::new(|b| {
                raw(
                    b,
                    "blobs/sha256/../../../x",
                    EntryType::Regular,
                    b"pwned",
                    "",
                )
            }),
            "blobs/sha256/../../../x",
        ),
        (
            "absolute",
            Box::new(|b| raw(b, "/tmp/freehold-pwned", EntryType::Regular, b"pwned", "")),
            "/tmp/freehold-pwned",
        ),
        (
            "symlink",
            Box::new(move |b| {
                raw(
                    b,
                    &format!("blobs/sha256/{}", wd.hex()),
                    EntryType::Symlink,
                    b"",
                    "/etc/passwd",
                )
            }),
            "symbolic link",
        ),
        (
            "hardlink",
            Box::new(move |b| {
                raw(
                    b,
                    &format!("blobs/sha256/{}", wd.hex()),
                    EntryType::Link,
                    b"",
                    "/etc/passwd",
                )
            }),
            "hard link",
        ),
        (
            "upper-hex",
            Box::new(move |b| {
                raw(
                    b,
                    &format!("blobs/sha256/{}", wd.hex().to_uppercase()),
                    EntryType::Regular,
                    b"x",
                    "",
                )
            }),
            "lowercase",
        ),
        (
            "other-dir",
            Box::new(|b| raw(b, "etc/", EntryType::Directory, b"", "")),
            "unexpected directory",
        ),
        (
            "fifo",
            Box::new(|b| raw(b, "index.json", EntryType::Fifo, b"", "")),
            "only regular files",
        ),
    ];
    for (label, hostile, want) in cases {
        let bad = f.root.join(format!("{label}.tar"));
        write_tar(&bad, |b| {
            // The hostile entry first, then an otherwise valid archive.
            hostile(b);
            for (name, data) in &ents {
                raw(b, name, EntryType::Regular, data, "");
            }
        });
        let e = import_fails(&f.root, &bad);
        assert!(e.contains(want), "{label}: {e}");
        assert!(e.contains(&bad.display().to_string()), "{label}: {e}");
    }
    assert!(!f.root.join("x").exists());
    assert!(!Path::new("/tmp/freehold-pwned").exists());
}

#[test]
fn missing_blob_and_lying_sums_are_rejected() {
    let f = fixture();
    let ents = entries(&f.exported);
    let wd = f.manifest.layers[0].digest;

    let bad = f.root.join("missing.tar");
    write_tar(&bad, |b| {
        for (name, data) in ents.iter().filter(|(n, _)| !n.ends_with(&wd.hex())) {
            raw(b, name, EntryType::Regular, data, "");
        }
    });
    let e = import_fails(&f.root, &bad);
    assert!(e.contains(&wd.to_string()) && e.contains("w.gguf"), "{e}");

    let bad = f.root.join("sums.tar");
    write_tar(&bad, |b| {
        for (name, data) in &ents {
            let data = if name == "SHA256SUMS" {
                String::from_utf8(data.clone())
                    .unwrap()
                    .replacen(&wd.hex(), &Digest::of_bytes(b"other").hex(), 1)
                    .into_bytes()
            } else {
                data.clone()
            };
            raw(b, name, EntryType::Regular, &data, "");
        }
    });
    let e = import_fails(&f.root, &bad);
    assert!(e.contains("SHA256SUMS line"), "{e}");

    let bad = f.root.join("twice.tar");
    write_tar(&bad, |b| {
        for (name, data) in ents.iter().chain(ents.iter().take(4)) {
            raw(b, name, EntryType::Regular, data, "");
        }
    });
    let e = import_fails(&f.root, &bad);
    assert!(e.contains("twice"), "{e}");

    let bad = f.root.join("noname.tar");
    write_tar(&bad, |b| {
        for (name, data) in ents.iter().filter(|(n, _)| n != "index.json") {
            raw(b, name, EntryType::Regular, data, "");
        }
    });
    let e = import_fails(&f.root, &bad);
    assert!(e.contains("--name"), "{e}");
}

#[test]
fn export_of_a_corrupt_blob_fails_and_writes_nothing() {
    let f = fixture();
    let s = Store::open(&f.root.join("a")).unwrap();
    let p = s.blob_path(&f.manifest.layers[1].digest);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let out = f.root.join("out/corrupt.tar");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let e = s.export(&r("small:v1"), &out).unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("LICENSE"), "{e}");
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);
}
