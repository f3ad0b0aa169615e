//! CycloneDX 1.6 ML-BOM (JSON) for one model: the model as a `machine-learning-model`
//! component with its weights' hash, licence, model card and lineage (pedigree), the other
//! files (licence, notice, tokenizer...) as `file` components and the training data sets
//! named by the card as `data` components.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::resolve::{effective, Resolution};
use crate::terms::Outputs;

/// What a file of the model is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// The weights (GGUF, safetensors); its hash is the model component's.
    Weights,
    /// A licence text.
    Licence,
    /// A NOTICE file.
    Notice,
    /// An acceptable-use policy.
    UsePolicy,
    /// The model card.
    ModelCard,
    /// A configuration file.
    Config,
    /// Tokenizer files.
    Tokenizer,
    /// A chat template.
    Template,
    /// A LoRA or other adapter.
    Adapter,
    /// Anything else.
    Other,
}

/// One file (or store layer) of the model.
#[derive(Clone, Debug)]
pub struct BomFile {
    /// Its file name.
    pub name: String,
    /// SHA-256, 64 hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type, when known (store layers have one).
    pub media_type: Option<String>,
    /// What it is.
    pub role: FileRole,
}

/// Everything the BOM describes.
#[derive(Clone, Debug)]
pub struct BomInput {
    /// The model's name (store name, or file name).
    pub name: String,
    /// Its version (store tag, or manifest digest).
    pub version: String,
    /// Its files; the first [`FileRole::Weights`] one is the model's own hash.
    pub files: Vec<BomFile>,
    /// The model's licence.
    pub resolution: Resolution,
    /// Resolutions of its base models and adapters (from the store, or by name).
    pub lineage: Vec<Resolution>,
    /// The licence file's text, embedded when the licence has no SPDX id.
    pub licence_text: Option<String>,
    /// GGUF metadata as strings (`general.architecture`, `general.size_label`...).
    pub metadata: BTreeMap<String, String>,
    /// Where the model came from (a URL), if known.
    pub source: Option<String>,
}

/// The BOM with a fresh random serial number and the current time.
pub fn bom(model: &BomInput) -> Value {
    bom_with(model, uuid::Uuid::new_v4(), SystemTime::now())
}

/// The BOM with a given serial number and timestamp (reproducible output for tests).
pub fn bom_with(model: &BomInput, serial: uuid::Uuid, when: SystemTime) -> Value {
    let model_ref = format!("model:{}@{}", model.name, model.version);
    let r = &model.resolution;
    let mut components = Vec::new();
    let mut depends = Vec::new();

    let mut mc = Map::new();
    let mut params = Map::new();
    if let Some(task) = r.task.clone().or_else(|| {
        model
            .metadata
            .contains_key("general.architecture")
            .then(|| "text-generation".to_string())
    }) {
        params.insert("task".into(), json!(task));
    }
    if let Some(arch) = model.metadata.get("general.architecture") {
        params.insert("architectureFamily".into(), json!("transformer"));
        let size = model
            .metadata
            .get("general.size_label")
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        params.insert("modelArchitecture".into(), json!(format!("{arch}{size}")));
    }
    let mut dataset_refs = Vec::new();
    for (i, d) in r.datasets.iter().enumerate() {
        let dref = format!("data:{i}:{d}");
        components.push(json!({
            "type": "data",
            "bom-ref": dref,
            "name": d,
            "data": [{"type": "dataset", "name": d}],
        }));
        dataset_refs.push(json!({"ref": dref}));
        depends.push(dref);
    }
    if !dataset_refs.is_empty() {
        params.insert("datasets".into(), Value::Array(dataset_refs));
    }
    mc.insert("modelParameters".into(), Value::Object(params));
    mc.insert("considerations".into(), considerations(model));

    let mut hashes = Vec::new();
    if let Some(w) = model.files.iter().find(|f| f.role == FileRole::Weights) {
        if is_sha256(&w.sha256) {
            hashes.push(json!({"alg": "SHA-256", "content": w.sha256.to_ascii_lowercase()}));
        }
    }

    for (i, f) in model.files.iter().enumerate() {
        // The first weights file is the model component itself.
        if i == first_weights(model) {
            continue;
        }
        let fref = format!("file:{i}:{}", f.name);
        let mut c = json!({
            "type": "file",
            "bom-ref": fref,
            "name": f.name,
            "properties": [
                {"name": "freehold:role", "value": role_name(f.role)},
                {"name": "freehold:size", "value": f.size.to_string()},
            ],
        });
        if is_sha256(&f.sha256) {
            c["hashes"] = json!([{"alg": "SHA-256", "content": f.sha256.to_ascii_lowercase()}]);
        }
        if let Some(mt) = f.media_type.as_deref().filter(|m| is_mime(m)) {
            c["mime-type"] = json!(mt);
        }
        components.push(c);
        depends.push(fref);
    }

    let mut ext = Vec::new();
    if !r.terms.url.is_empty() {
        ext.push(json!({"type": "license", "url": r.terms.url}));
    }
    if let Some(src) = model.source.as_deref().filter(|s| is_url(s)) {
        ext.push(json!({"type": "distribution", "url": src}));
    }
    if let Some(p) = r.terms.use_policy {
        ext.push(json!({"type": "documentation", "url": p.url, "comment": p.name}));
    }

    let mut chain = vec![r.clone()];
    chain.extend(model.lineage.iter().cloned());
    let eff = effective(&chain);
    let ancestors: Vec<Value> = model
        .lineage
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let name = b
                .model_name
                .clone()
                .unwrap_or_else(|| format!("base model {i}"));
            json!({
                "type": "machine-learning-model",
                "bom-ref": format!("base:{i}:{name}"),
                "name": name,
                "licenses": licenses(b, None),
                "properties": [
                    {"name": "freehold:license.id", "value": b.id.as_str()},
                    {"name": "freehold:license.confidence", "value": b.confidence.to_string()},
                ],
            })
        })
        .collect();

    let mut props = vec![
        json!({"name": "freehold:license.id", "value": r.id.as_str()}),
        json!({"name": "freehold:license.confidence", "value": r.confidence.to_string()}),
        json!({"name": "freehold:effective.commercial", "value": eff.commercial.describe()}),
        json!({"name": "freehold:effective.outputs", "value": eff.outputs.describe()}),
    ];
    for e in &r.evidence {
        props.push(json!({"name": "freehold:license.evidence", "value": format!("{}: {}", e.source, e.detail)}));
    }
    for (k, v) in &model.metadata {
        if k.starts_with("general.") && !v.is_empty() && v.len() <= 1024 {
            props.push(json!({"name": format!("gguf:{k}"), "value": v}));
        }
    }

    let mut m = json!({
        "type": "machine-learning-model",
        "bom-ref": model_ref,
        "name": model.name,
        "version": model.version,
        "licenses": licenses(r, model.licence_text.as_deref()),
        "modelCard": Value::Object(mc),
        "properties": props,
    });
    if let Some(d) = &r.model_name {
        m["description"] = json!(d);
    }
    if !hashes.is_empty() {
        m["hashes"] = Value::Array(hashes);
    }
    if !ext.is_empty() {
        m["externalReferences"] = Value::Array(ext);
    }
    if !ancestors.is_empty() || !eff.notes.is_empty() {
        let mut p = Map::new();
        if !ancestors.is_empty() {
            p.insert("ancestors".into(), Value::Array(ancestors));
        }
        if !eff.notes.is_empty() {
            p.insert("notes".into(), json!(eff.notes.join("\n")));
        }
        m["pedigree"] = Value::Object(p);
    }
    components.insert(0, m);

    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", serial.hyphenated()),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(when),
            "tools": {"components": [{
                "type": "application",
                "name": "freehold",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
        },
        "components": components,
    });
    let mut deps = vec![json!({"ref": model_ref, "dependsOn": depends})];
    for c in doc["components"].as_array().into_iter().flatten().skip(1) {
        if let Some(r) = c.get("bom-ref") {
            deps.push(json!({"ref": r}));
        }
    }
    doc["dependencies"] = Value::Array(deps);
    doc
}

fn first_weights(model: &BomInput) -> usize {
    model
        .files
        .iter()
        .position(|f| f.role == FileRole::Weights)
        .unwrap_or(usize::MAX)
}

fn licenses(r: &Resolution, text: Option<&str>) -> Value {
    let t = r.terms;
    let mut l = Map::new();
    match t.spdx {
        Some(id) => {
            l.insert("id".into(), json!(id));
        }
        None => {
            l.insert("name".into(), json!(r.name));
            if let Some(body) = text {
                let html = body.trim_start().starts_with('<');
                l.insert(
                    "text".into(),
                    json!({"contentType": if html { "text/html" } else { "text/plain" }, "content": body}),
                );
            }
        }
    }
    if !t.url.is_empty() {
        l.insert("url".into(), json!(t.url));
    }
    json!([{ "license": Value::Object(l) }])
}

fn considerations(model: &BomInput) -> Value {
    let r = &model.resolution;
    let mut c = Map::new();
    if let Some(task) = &r.task {
        c.insert("useCases".into(), json!([task]));
    }
    let mut limits = Vec::new();
    if let Some(ft) = model.metadata.get("general.file_type") {
        limits.push(format!("quantized weights (GGUF file type {ft}): outputs differ slightly from the original model"));
    }
    if !limits.is_empty() {
        c.insert("technicalLimitations".into(), json!(limits));
    }
    let mut ethics = Vec::new();
    let mut chain = vec![r.clone()];
    chain.extend(model.lineage.iter().cloned());
    let eff = effective(&chain);
    for p in &eff.use_policies {
        ethics.push(json!({
            "name": format!("use restricted by the {} ({})", p.name, p.url),
            "mitigationStrategy": format!("comply with it; it is {}", p.flow_down),
        }));
    }
    if let Outputs::Prohibited(what) | Outputs::Conditional(what) = eff.outputs {
        ethics
            .push(json!({"name": "training other models on outputs", "mitigationStrategy": what}));
    }
    if eff.unknown || !eff.unresolved_bases.is_empty() {
        ethics.push(json!({
            "name": "licence of the model or a base model is unknown",
            "mitigationStrategy": "review the licence before use",
        }));
    }
    if !ethics.is_empty() {
        c.insert("ethicalConsiderations".into(), Value::Array(ethics));
    }
    Value::Object(c)
}

fn role_name(r: FileRole) -> &'static str {
    match r {
        FileRole::Weights => "weights",
        FileRole::Licence => "license",
        FileRole::Notice => "notice",
        FileRole::UsePolicy => "use-policy",
        FileRole::ModelCard => "model-card",
        FileRole::Config => "config",
        FileRole::Tokenizer => "tokenizer",
        FileRole::Template => "template",
        FileRole::Adapter => "adapter",
        FileRole::Other => "other",
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The schema's `mime-type` pattern: `type/subtype` of `[-+a-z0-9.]`.
fn is_mime(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-+.".contains(&b))
    };
    matches!(s.split_once('/'), Some((a, b)) if ok(a) && ok(b))
}

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains(char::is_whitespace)
}

/// `2026-11-22T17:00:00Z` (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (the well-known era-based conversion: 400-year eras of 146,097 days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_368_930)),
            "2026-11-22T17:35:30Z"
        );
    }

    #[test]
    fn mime_pattern() {
        assert!(is_mime("application/vnd.freehold.model.gguf"));
        assert!(is_mime("application/vnd.freehold.modelcard+markdown"));
        assert!(!is_mime("Text/Plain"));
        assert!(!is_mime("text/plain; charset=utf-8"));
    }
}
