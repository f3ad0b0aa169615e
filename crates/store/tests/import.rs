//! Importing local sources: a real GGUF file (validated, summarised into the config blob),
//! a Hugging Face style directory with safetensors and side files, and the bad inputs.

use std::path::Path;

use store::{media, ImportOptions, ModelRef, Store, StoreError};

fn tiny() -> std::path::PathBuf {
    testdata::model("tiny.gguf")
}

fn opts() -> ImportOptions {
    ImportOptions::default()
}

fn tmp_is_empty(home: &Path) -> bool {
    std::fs::read_dir(home.join("tmp")).unwrap().count() == 0
}

#[test]
fn gguf_file_with_licence() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("home")).unwrap();
    let lic = dir.path().join("LICENSE.txt");
    std::fs::write(&lic, "Apache License\nVersion 2.0\n").unwrap();
    let rep = s
        .import(
            &tiny(),
            &ImportOptions {
                license: Some(lic),
                ..opts()
            },
        )
        .unwrap();
    // tiny.gguf has no basename, general.name "content".
    assert_eq!(rep.model.to_string(), "content:latest");
    assert_eq!(rep.format, "gguf");
    let kinds: Vec<(&str, Option<&str>)> = rep
        .layers
        .iter()
        .map(|d| (d.media_type.as_str(), d.title()))
        .collect();
    assert_eq!(
        kinds,
        [
            (media::MODEL_CONFIG, None),
            (media::GGUF, Some("tiny.gguf")),
            (media::LICENSE, Some("LICENSE.txt"))
        ]
    );
    let cfg = s.config_json(&rep.model).unwrap();
    assert_eq!(cfg["architecture"], "llama");
    assert_eq!(cfg["parameters"], 1_032_272);
    assert_eq!(cfg["file_type"], "F16");
    assert_eq!(cfg["quantization"], "F16");
    assert_eq!(cfg["general"]["general.name"], "content");
    assert!(cfg["context_length"].is_u64());
    let e = &s.list().unwrap()[0];
    assert_eq!(e.parameters, Some(1_032_272));
    assert_eq!(e.quantization.as_deref(), Some("F16"));
    // The stored weights are the file, byte for byte.
    let p = s.resolve_gguf(&rep.model).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), std::fs::read(tiny()).unwrap());
    assert!(tmp_is_empty(s.home()));
    // Importing again is idempotent: same manifest, nothing replaced.
    let again = s
        .import(
            &tiny(),
            &ImportOptions {
                name: Some(ModelRef::parse("content").unwrap()),
                license: Some(dir.path().join("LICENSE.txt")),
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(again.manifest, rep.manifest);
    assert_eq!(again.replaced, None);
}

#[test]
fn real_smollm2_gets_its_name_from_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let rep = s
        .import(&testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf"), &opts())
        .unwrap();
    assert_eq!(rep.model.to_string(), "smollm2-135m:latest");
    let cfg = s.config_json(&rep.model).unwrap();
    assert_eq!(cfg["file_type"], "Q4_1");
    assert_eq!(cfg["parameters"], 134_515_008u64);
    assert_eq!(cfg["context_length"], 8192);
    assert_eq!(cfg["general"]["general.license"], "apache-2.0");
    assert_eq!(cfg["general"]["general.basename"], "smollm2");
}

#[test]
fn invalid_gguf_is_rejected_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("home")).unwrap();
    let bad = dir.path().join("broken.gguf");
    let mut bytes = std::fs::read(tiny()).unwrap();
    bytes.truncate(5000);
    std::fs::write(&bad, &bytes).unwrap();
    let e = s.import(&bad, &opts()).unwrap_err();
    assert!(matches!(e, StoreError::Import { .. }), "{e}");
    assert!(e.to_string().contains("broken.gguf"), "{e}");
    assert!(s.list().unwrap().is_empty());
    assert!(tmp_is_empty(s.home()));
    assert_eq!(
        std::fs::read_dir(s.home().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "hello").unwrap();
    let e = s.import(&junk, &opts()).unwrap_err().to_string();
    assert!(
        e.contains("notes.txt") && e.contains("neither a GGUF"),
        "{e}"
    );
    let e = s
        .import(&dir.path().join("absent.gguf"), &opts())
        .unwrap_err();
    assert!(e.to_string().contains("absent.gguf"), "{e}");
}

/// A safetensors file: 8-byte header length, JSON header, data.
fn safetensors(tensors: &[(&str, &[u64])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut off = 0u64;
    for (name, shape) in tensors {
        let n: u64 = shape.iter().product::<u64>() * 2;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(std::iter::repeat_n(0u8, off as usize));
    out
}

fn hf_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(d.join("onnx")).unwrap();
    std::fs::write(
        d.join("model.safetensors"),
        safetensors(&[("embed.weight", &[16, 8]), ("norm.weight", &[8])]),
    )
    .unwrap();
    std::fs::write(
        d.join("config.json"),
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","max_position_embeddings":2048}"#,
    )
    .unwrap();
    std::fs::write(d.join("tokenizer.json"), r#"{"model":{}}"#).unwrap();
    std::fs::write(d.join("tokenizer_config.json"), r#"{"bos_token":"<s>"}"#).unwrap();
    std::fs::write(
        d.join("README.md"),
        "---\nlicense: apache-2.0\n---\n# A model\n",
    )
    .unwrap();
    std::fs::write(d.join("LICENSE.txt"), "Apache License 2.0").unwrap();
    std::fs::write(d.join("USE_POLICY.md"), "Be nice.").unwrap();
    std::fs::write(d.join("NOTICE"), "Copyright someone").unwrap();
    std::fs::write(d.join("pytorch_model.bin"), "pickles").unwrap();
    std::fs::write(d.join(".gitattributes"), "*.bin lfs").unwrap();
    std::fs::write(d.join("onnx/model.onnx"), "onnx").unwrap();
    d
}

#[test]
fn hugging_face_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("home")).unwrap();
    let d = hf_dir(dir.path(), "My-Model_1.5B");
    let rep = s.import(&d, &opts()).unwrap();
    assert_eq!(rep.model.to_string(), "my-model_1.5b:latest");
    assert_eq!(rep.format, "safetensors");
    let got: Vec<(String, String)> = rep.layers[1..]
        .iter()
        .map(|l| (l.media_type.clone(), l.title().unwrap().to_string()))
        .collect();
    let want = [
        (media::SAFETENSORS, "model.safetensors"),
        (media::CONFIG_JSON, "config.json"),
        (media::TOKENIZER, "tokenizer.json"),
        (media::TOKENIZER_CONFIG, "tokenizer_config.json"),
        (media::MODEL_CARD, "README.md"),
        (media::LICENSE, "LICENSE.txt"),
        (media::NOTICE, "NOTICE"),
        (media::USE_POLICY, "USE_POLICY.md"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(rep.skipped.len(), 3, "{:?}", rep.skipped);
    assert!(rep.skipped.iter().any(|s| s.starts_with("onnx/")));
    let cfg = s.config_json(&rep.model).unwrap();
    assert_eq!(cfg["architecture"], "LlamaForCausalLM");
    assert_eq!(cfg["parameters"], 136);
    assert_eq!(cfg["quantization"], "BF16");
    assert_eq!(cfg["context_length"], 2048);
    // No GGUF in it: asking for one says so.
    let e = s.resolve_gguf(&rep.model).unwrap_err();
    assert!(matches!(e, StoreError::NoLayer { .. }), "{e}");
}

#[test]
fn hugging_face_cache_layout_and_gguf_choice() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("home")).unwrap();
    let repo = dir.path().join("models--SomeOrg--Tiny-Chat");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd\n").unwrap();
    std::fs::copy(tiny(), snap.join("tiny-f16.gguf")).unwrap();
    std::fs::write(snap.join("LICENSE"), "MIT").unwrap();
    let rep = s.import(&repo, &opts()).unwrap();
    assert_eq!(rep.model.to_string(), "tiny-chat:latest");
    assert_eq!(rep.format, "gguf");
    assert!(s.resolve_gguf(&rep.model).is_ok());

    // Two different GGUF files: the user must choose.
    std::fs::copy(tiny(), snap.join("tiny-copy.gguf")).unwrap();
    let e = s.import(&repo, &opts()).unwrap_err().to_string();
    assert!(
        e.contains("--weights") && e.contains("tiny-copy.gguf"),
        "{e}"
    );
    let rep = s
        .import(
            &repo,
            &ImportOptions {
                weights: Some("tiny-copy.gguf".into()),
                name: Some(ModelRef::parse("chosen:f16").unwrap()),
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(rep.layers[1].title(), Some("tiny-copy.gguf"));

    // A hostile refs/main cannot steer the import outside the snapshots.
    std::fs::write(repo.join("refs/main"), "../../../etc").unwrap();
    let e = s.import(&repo, &opts()).unwrap_err().to_string();
    assert!(e.contains("not a revision name"), "{e}");
}

#[test]
fn hostile_safetensors_and_json_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("home")).unwrap();
    let d = hf_dir(dir.path(), "m");
    let mut bytes = safetensors(&[("w", &[4, 4])]);
    bytes.truncate(bytes.len() - 2);
    std::fs::write(d.join("model.safetensors"), &bytes).unwrap();
    let e = s.import(&d, &opts()).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("\"w\""),
        "{e}"
    );

    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    std::fs::write(d.join("model.safetensors"), &huge).unwrap();
    let e = s.import(&d, &opts()).unwrap_err().to_string();
    assert!(e.contains("header length"), "{e}");

    std::fs::write(d.join("model.safetensors"), safetensors(&[("w", &[2])])).unwrap();
    std::fs::write(d.join("config.json"), "{not json").unwrap();
    let e = s.import(&d, &opts()).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");

    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("config.json"), "{}").unwrap();
    let e = s.import(&d, &opts()).unwrap_err().to_string();
    assert!(e.contains("no weights"), "{e}");
    assert!(s.list().unwrap().is_empty());
    assert!(tmp_is_empty(s.home()));
    // The side files the failed imports had stored are garbage, and this same process may
    // collect them: a failed import gives up its claim on what it wrote.
    let rep = s.gc().unwrap();
    assert!(!rep.blobs.is_empty());
    assert_eq!(
        std::fs::read_dir(s.home().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}
