//! Importing local files: a GGUF file, a Hugging Face style model directory, or an archive
//! written by `export`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use gguf::{GgufFile, Value};
use serde::Serialize;
use serde_json::{json, Map};

use crate::manifest::media;
use crate::names::{check_file_name, sanitize_name};
use crate::{Descriptor, Digest, Manifest, ModelRef, Store, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// Largest JSON side file (config.json and the like) read into memory to summarise it.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest safetensors header accepted (the format's own reference reader uses 100 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;
/// GGUF metadata arrays longer than this are left out of the config blob (vocabularies).
const MAX_CONFIG_ARRAY: usize = 64;

/// Choices for [`Store::import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Name to import as; derived from the model's metadata or file name when absent.
    pub name: Option<ModelRef>,
    /// A licence file to keep with the model as a licence layer.
    pub license: Option<PathBuf>,
    /// From a directory holding several GGUF files: the one to take (file name).
    pub weights: Option<String>,
}

/// What an import did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// The name it is visible under.
    #[serde(serialize_with = "ser_display")]
    pub model: ModelRef,
    /// Its manifest digest.
    pub manifest: Digest,
    /// The manifest the name pointed at before, when it pointed at another one.
    pub replaced: Option<Digest>,
    /// `gguf`, `safetensors` or `archive`.
    pub format: String,
    /// The config blob and every layer.
    pub layers: Vec<Descriptor>,
    /// Files of a directory that were not kept, with the reason.
    pub skipped: Vec<String>,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The llama.cpp `general.file_type` names (`llama_ftype` in llama.h).
fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => json!(s),
        Value::Bool(b) => json!(b),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(_, items) => serde_json::Value::Array(items.iter().map(value_json).collect()),
        other => other
            .as_i64()
            .map(|i| json!(i))
            .or_else(|| other.as_u64().map(|u| json!(u)))
            .unwrap_or(serde_json::Value::Null),
    }
}

/// The config blob's summary of a GGUF file: what `list`, `show` and the licence checks
/// need without reopening the weights (shared by import and pull).
pub fn gguf_summary(g: &GgufFile) -> Map<String, serde_json::Value> {
    let arch = g.get_str("general.architecture");
    let params: u64 = g
        .tensors()
        .iter()
        .map(|t| t.n_elements())
        .fold(0, u64::saturating_add);
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for t in g.tensors() {
        *by_type.entry(t.ty.name()).or_default() += t.n_bytes;
    }
    let dominant = by_type
        .iter()
        .max_by_key(|(_, b)| **b)
        .map(|(t, _)| t.to_string());
    let ftype = g.get("general.file_type").and_then(Value::as_u64);
    let mut general = Map::new();
    for (k, v) in g.metadata() {
        if !k.starts_with("general.") {
            continue;
        }
        if v.as_array().is_some_and(|a| a.len() > MAX_CONFIG_ARRAY) {
            continue;
        }
        general.insert(k.clone(), value_json(v));
    }
    let mut m = Map::new();
    m.insert("format".into(), json!("gguf"));
    m.insert("architecture".into(), json!(arch));
    m.insert("parameters".into(), json!(params));
    m.insert(
        "file_type".into(),
        json!(ftype.map(|f| file_type_name(f)
            .map(str::to_string)
            .unwrap_or_else(|| format!("ftype {f}")))),
    );
    m.insert("quantization".into(), json!(dominant));
    m.insert(
        "context_length".into(),
        json!(arch.and_then(|a| g
            .get(&format!("{a}.context_length"))
            .and_then(Value::as_u64))),
    );
    m.insert("tensor_types".into(), json!(by_type));
    m.insert("general".into(), serde_json::Value::Object(general));
    m
}

/// Default name of a GGUF model: `general.basename` (plus `general.size_label`), else
/// `general.name`, else the file name.
fn gguf_default_name(g: &GgufFile, path: &Path) -> Option<String> {
    let from_meta = g
        .get_str("general.basename")
        .map(|b| match g.get_str("general.size_label") {
            Some(s) => format!("{b}-{s}"),
            None => b.to_string(),
        })
        .or_else(|| g.get_str("general.name").map(str::to_string))
        .and_then(|s| sanitize_name(&s));
    from_meta.or_else(|| sanitize_name(&file_stem(path)))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_name(path: &Path) -> Result<String> {
    let n = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_file_name(&n).map_err(|why| StoreError::Import {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(n)
}

/// Which layer a file of a model directory becomes, or why it is skipped (shared by import
/// and pull, so a model gets the same layers whichever way it arrives).
pub fn classify(name: &str) -> std::result::Result<&'static str, &'static str> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.split('.').next().unwrap_or("");
    if lower.ends_with(".gguf") {
        return Ok(media::GGUF);
    }
    if lower.ends_with(".safetensors") {
        return Ok(media::SAFETENSORS);
    }
    if lower.ends_with(".safetensors.index.json") {
        return Ok(media::SAFETENSORS_INDEX);
    }
    if stem.starts_with("license") || stem.starts_with("licence") || stem == "copying" {
        return Ok(media::LICENSE);
    }
    if stem.starts_with("notice") {
        return Ok(media::NOTICE);
    }
    if stem.replace('-', "_").contains("use_policy") {
        return Ok(media::USE_POLICY);
    }
    Ok(match lower.as_str() {
        "readme.md" => media::MODEL_CARD,
        "config.json" => media::CONFIG_JSON,
        "tokenizer.json" => media::TOKENIZER,
        "tokenizer_config.json" => media::TOKENIZER_CONFIG,
        "chat_template.jinja" | "chat_template.json" => media::TEMPLATE,
        "generation_config.json" => media::PARAMS,
        "special_tokens_map.json"
        | "added_tokens.json"
        | "vocab.txt"
        | "vocab.json"
        | "merges.txt"
        | "tokenizer.model"
        | "spiece.model"
        | "preprocessor_config.json"
        | "modules.json"
        | "sentence_bert_config.json"
        | "config_sentence_transformers.json" => media::FILE,
        _ => return Err("not a file freehold keeps with a model"),
    })
}

/// Order of layers in a manifest: weights first, licence texts last.
pub fn layer_rank(media_type: &str) -> usize {
    [
        media::GGUF,
        media::SAFETENSORS,
        media::SAFETENSORS_INDEX,
        media::CONFIG_JSON,
        media::TOKENIZER,
        media::TOKENIZER_CONFIG,
        media::TEMPLATE,
        media::FILE,
        media::PARAMS,
        media::MODEL_CARD,
        media::LICENSE,
        media::NOTICE,
        media::USE_POLICY,
    ]
    .iter()
    .position(|m| *m == media_type)
    .unwrap_or(usize::MAX)
}

/// `model-00001-of-00003.gguf` style split files.
fn is_split_part(name: &str) -> bool {
    let s = name.to_ascii_lowercase();
    let Some(s) = s.strip_suffix(".gguf") else {
        return false;
    };
    let parts: Vec<&str> = s.rsplitn(4, '-').collect();
    parts.len() == 4
        && parts[1] == "of"
        && parts[0].len() == 5
        && parts[2].len() == 5
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[2].bytes().all(|b| b.is_ascii_digit())
}

/// Checks a safetensors file's header and returns (parameters, bytes per dtype).
fn safetensors_summary(path: &Path, shown: &Path) -> Result<(u64, BTreeMap<String, u64>)> {
    let bad = |why: String| StoreError::Import {
        path: shown.to_path_buf(),
        why: format!("not a valid safetensors file: {why}"),
    };
    let mut f = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| StoreError::io("reading", path, e))?
        .len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| {
        bad(format!(
            "{len} bytes, too short for the 8-byte header length"
        ))
    })?;
    let n = u64::from_le_bytes(n);
    if n > MAX_SAFETENSORS_HEADER || n > len - 8 {
        return Err(bad(format!(
            "header length {n} at offset 0 exceeds the file ({len} bytes) or the {MAX_SAFETENSORS_HEADER}-byte limit"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| StoreError::io("reading", path, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_len = len - 8 - n;
    let mut params = 0u64;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let tbad = |why: &str| bad(format!("tensor {name:?}: {why}"));
        let dtype = t
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| tbad("no dtype"))?;
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| tbad("no shape"))?;
        let mut numel = 1u64;
        for d in shape {
            let d = d
                .as_u64()
                .ok_or_else(|| tbad("shape holds a non-integer"))?;
            numel = numel
                .checked_mul(d)
                .ok_or_else(|| tbad("element count overflows"))?;
        }
        let offs = t
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| tbad("data_offsets is not two integers"))?;
        if offs.0 > offs.1 || offs.1 > data_len {
            return Err(tbad(&format!(
                "data_offsets [{}, {}] outside the {data_len} data bytes",
                offs.0, offs.1
            )));
        }
        let elem_bits: Option<u64> = match dtype {
            "F64" | "I64" | "U64" => Some(64),
            "F32" | "I32" | "U32" => Some(32),
            "F16" | "BF16" | "I16" | "U16" => Some(16),
            "F8_E4M3" | "F8_E5M2" | "I8" | "U8" | "BOOL" => Some(8),
            _ => None,
        };
        if let Some(bits) = elem_bits {
            let want = numel.checked_mul(bits / 8);
            if want != Some(offs.1 - offs.0) {
                return Err(tbad(&format!(
                    "{} data bytes for {numel} {dtype} elements",
                    offs.1 - offs.0
                )));
            }
        }
        params = params.saturating_add(numel);
        *by_type.entry(dtype.to_string()).or_default() += offs.1 - offs.0;
    }
    Ok((params, by_type))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let f = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("reading", path, e))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(StoreError::Import {
            path: path.to_path_buf(),
            why: format!("larger than the {MAX_JSON_BYTES}-byte limit for JSON files"),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Import {
        path: path.to_path_buf(),
        why: format!("not valid JSON: {e}"),
    })
}

/// A Hugging Face cache repository (`models--org--name` with `snapshots/` and
/// `refs/main`) resolves to the snapshot `refs/main` names; other directories are used as
/// they are.
fn resolve_hf_cache(dir: &Path) -> Result<PathBuf> {
    let snaps = dir.join("snapshots");
    if !snaps.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let refp = dir.join("refs/main");
    if let Ok(rev) = std::fs::read_to_string(&refp) {
        let rev = rev.trim();
        if rev.is_empty()
            || rev.len() > 128
            || !rev.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(StoreError::Import {
                path: refp,
                why: format!("{:?} is not a revision name", crate::error::clip(rev)),
            });
        }
        return Ok(snaps.join(rev));
    }
    let subs: Vec<PathBuf> = std::fs::read_dir(&snaps)
        .map_err(|e| StoreError::io("listing", &snaps, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match subs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(StoreError::Import {
            path: dir.to_path_buf(),
            why: format!(
                "a Hugging Face cache with {} snapshots and no refs/main: import one snapshot directory",
                subs.len()
            ),
        }),
    }
}

/// Default model name for a directory: the repository part of `models--org--name`, else
/// the directory's name.
fn dir_default_name(dir: &Path) -> Option<String> {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let n = canon.file_name()?.to_string_lossy().into_owned();
    let n = match n.strip_prefix("models--") {
        Some(rest) => rest.rsplit("--").next().unwrap_or(rest).to_string(),
        None => n,
    };
    sanitize_name(&n)
}

fn no_default_name(path: &Path) -> StoreError {
    StoreError::Import {
        path: path.to_path_buf(),
        why: "no usable model name in its metadata or file name: give one with --name".into(),
    }
}

impl Store {
    /// Imports `path`: a GGUF file, a model directory (Hugging Face layout or cache), or an
    /// archive written by [`Store::export`]. Nothing is visible until the final commit.
    pub fn import(&self, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
        let before = self.pending_snapshot();
        let r = self.import_any(path, opts);
        if r.is_err() {
            self.abandon_since(before);
        }
        r
    }

    fn import_any(&self, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
        let meta = std::fs::metadata(path).map_err(|e| StoreError::io("reading", path, e))?;
        if meta.is_dir() {
            return self.import_dir(path, opts);
        }
        let mut magic = [0u8; 512];
        let mut f = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
        let mut got = 0;
        while got < magic.len() {
            match f.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(StoreError::io("reading", path, e)),
            }
        }
        if got >= 4 && &magic[..4] == b"GGUF" {
            return self.import_gguf(path, opts);
        }
        if got >= 262 && &magic[257..262] == b"ustar" {
            return self.import_archive(path, opts.name.as_ref());
        }
        Err(StoreError::Import {
            path: path.to_path_buf(),
            why: "neither a GGUF file (no GGUF magic), a tar archive from `freehold export`, nor a model directory".into(),
        })
    }

    /// Copies a GGUF file into tmp/, validates the copy (so what is checked is what is
    /// stored) and describes it.
    fn gguf_layer(
        &self,
        path: &Path,
    ) -> Result<(Descriptor, Map<String, serde_json::Value>, Option<String>)> {
        let title = file_name(path)?;
        let f = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
        let tmp = self.write_temp(f, path)?;
        let (summary, name) = {
            let g = GgufFile::open(tmp.path()).map_err(|e| StoreError::Import {
                path: path.to_path_buf(),
                why: format!("not a valid GGUF file: {e}"),
            })?;
            (gguf_summary(&g), gguf_default_name(&g, path))
        };
        let (digest, size) = self.install(tmp)?;
        Ok((
            Descriptor::with_title(media::GGUF, digest, size, &title)?,
            summary,
            name,
        ))
    }

    fn file_layer(&self, path: &Path, media_type: &str) -> Result<Descriptor> {
        let title = file_name(path)?;
        let (digest, size) = self.add_blob_from_file(path)?;
        Descriptor::with_title(media_type, digest, size, &title)
    }

    fn finish(
        &self,
        name: ModelRef,
        config: Map<String, serde_json::Value>,
        mut layers: Vec<Descriptor>,
        source: &Path,
        skipped: Vec<String>,
    ) -> Result<ImportReport> {
        layers.sort_by(|a, b| {
            (layer_rank(&a.media_type), a.title()).cmp(&(layer_rank(&b.media_type), b.title()))
        });
        let format = config
            .get("format")
            .and_then(|f| f.as_str())
            .unwrap_or("")
            .to_string();
        let bytes = serde_json::to_vec_pretty(&serde_json::Value::Object(config))
            .expect("JSON values serialise");
        let (cd, cs) = self.add_blob_from_bytes(&bytes)?;
        let manifest = Manifest::new(Descriptor::new(media::MODEL_CONFIG, cd, cs), layers);
        let before = self.manifest_digest(&name).ok();
        let source = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
        let digest = self.commit(&name, &manifest, &source.display().to_string())?;
        Ok(ImportReport {
            model: name,
            manifest: digest,
            replaced: before.filter(|b| *b != digest),
            format,
            layers: manifest.blobs().cloned().collect(),
            skipped,
        })
    }

    fn license_layer(&self, opts: &ImportOptions) -> Result<Option<Descriptor>> {
        match &opts.license {
            None => Ok(None),
            Some(p) => {
                if !p.is_file() {
                    return Err(StoreError::Import {
                        path: p.clone(),
                        why: "the --license file does not exist or is not a file".into(),
                    });
                }
                self.file_layer(p, media::LICENSE).map(Some)
            }
        }
    }

    fn import_gguf(&self, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
        let (layer, mut summary, default) = self.gguf_layer(path)?;
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => ModelRef::new(&default.ok_or_else(|| no_default_name(path))?, "latest")?,
        };
        let mut layers = vec![layer];
        layers.extend(self.license_layer(opts)?);
        summary.insert("weights".into(), json!([file_name(path)?]));
        self.finish(name, summary, layers, path, Vec::new())
    }

    fn import_dir(&self, given: &Path, opts: &ImportOptions) -> Result<ImportReport> {
        let dir = resolve_hf_cache(given)?;
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let mut skipped = Vec::new();
        for ent in std::fs::read_dir(&dir).map_err(|e| StoreError::io("listing", &dir, e))? {
            let ent = ent.map_err(|e| StoreError::io("listing", &dir, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let p = ent.path();
            if name.starts_with('.') {
                skipped.push(format!("{name}: hidden"));
                continue;
            }
            // Follows symlinks: a Hugging Face cache snapshot is made of links into blobs/.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => files.push((name, p)),
                Ok(m) if m.is_dir() => skipped.push(format!("{name}/: sub-directory")),
                Ok(_) => skipped.push(format!("{name}: not a regular file")),
                Err(e) => skipped.push(format!("{name}: {e}")),
            }
        }
        files.sort();
        let mut kept: Vec<(&'static str, String, PathBuf)> = Vec::new();
        for (name, p) in files {
            match classify(&name) {
                Ok(m) => {
                    if let Err(why) = check_file_name(&name) {
                        skipped.push(format!("{name}: {why}"));
                        continue;
                    }
                    kept.push((m, name, p))
                }
                Err(why) => skipped.push(format!("{name}: {why}")),
            }
        }
        if let Some(w) = &opts.weights {
            if !kept
                .iter()
                .any(|(m, n, _)| n == w && (*m == media::GGUF || *m == media::SAFETENSORS))
            {
                return Err(StoreError::Import {
                    path: dir.clone(),
                    why: format!("no weights file named {w:?} in the directory"),
                });
            }
            kept.retain(|(m, n, _)| {
                let weights = *m == media::GGUF || *m == media::SAFETENSORS;
                let keep = !weights || n == w;
                if !keep {
                    skipped.push(format!("{n}: not the weights file chosen"));
                }
                keep
            });
        }
        let ggufs: Vec<&String> = kept
            .iter()
            .filter(|(m, _, _)| *m == media::GGUF)
            .map(|(_, n, _)| n)
            .collect();
        if ggufs.len() > 1 && !ggufs.iter().all(|n| is_split_part(n)) {
            return Err(StoreError::Import {
                path: dir.clone(),
                why: format!(
                    "the directory holds {} GGUF files ({}): choose one with --weights FILE",
                    ggufs.len(),
                    ggufs
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let has_gguf = !ggufs.is_empty();
        if !has_gguf && !kept.iter().any(|(m, _, _)| *m == media::SAFETENSORS) {
            return Err(StoreError::Import {
                path: dir.clone(),
                why: "no weights: expected *.safetensors or *.gguf files".into(),
            });
        }
        let mut layers = Vec::new();
        let mut summary: Option<Map<String, serde_json::Value>> = None;
        let mut st_params = 0u64;
        let mut st_types: BTreeMap<String, u64> = BTreeMap::new();
        let mut hf_config = serde_json::Value::Null;
        let mut weights = Vec::new();
        for (m, name, p) in &kept {
            if *m == media::GGUF {
                let (layer, s, _) = self.gguf_layer(p)?;
                summary.get_or_insert(s);
                weights.push(name.clone());
                layers.push(layer);
                continue;
            }
            if *m == media::CONFIG_JSON
                || *m == media::TOKENIZER_CONFIG
                || *m == media::SAFETENSORS_INDEX
            {
                let v = read_json(p)?;
                if *m == media::CONFIG_JSON {
                    hf_config = v;
                }
            }
            if *m == media::SAFETENSORS {
                // Validate the copy in tmp/, not the source, so what is checked is stored.
                let f = File::open(p).map_err(|e| StoreError::io("opening", p, e))?;
                let tmp = self.write_temp(f, p)?;
                let (n, types) = safetensors_summary(tmp.path(), p)?;
                st_params = st_params.saturating_add(n);
                for (t, b) in types {
                    *st_types.entry(t).or_default() += b;
                }
                let (digest, size) = self.install(tmp)?;
                weights.push(name.clone());
                layers.push(Descriptor::with_title(m, digest, size, name)?);
                continue;
            }
            layers.push(self.file_layer(p, m)?);
        }
        layers.extend(self.license_layer(opts)?);
        let mut summary = match summary {
            Some(s) => s,
            None => {
                let s = |k: &str| hf_config.get(k).cloned().unwrap_or(serde_json::Value::Null);
                let arch = hf_config
                    .get("architectures")
                    .and_then(|a| a.get(0))
                    .cloned()
                    .unwrap_or_else(|| s("model_type"));
                let dominant = st_types.iter().max_by_key(|(_, b)| **b).map(|(t, _)| t);
                let mut m = Map::new();
                m.insert("format".into(), json!("safetensors"));
                m.insert("architecture".into(), arch);
                m.insert("parameters".into(), json!(st_params));
                m.insert("file_type".into(), json!(dominant));
                m.insert("quantization".into(), json!(dominant));
                m.insert("context_length".into(), s("max_position_embeddings"));
                m.insert("tensor_types".into(), json!(st_types));
                m.insert("model_type".into(), s("model_type"));
                m
            }
        };
        summary.insert("weights".into(), json!(weights));
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => ModelRef::new(
                &dir_default_name(given).ok_or_else(|| no_default_name(given))?,
                "latest",
            )?,
        };
        self.finish(name, summary, layers, given, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_licence_variants() {
        for n in [
            "LICENSE",
            "LICENSE.txt",
            "license.md",
            "LICENCE",
            "LICENSE-APACHE",
            "COPYING",
        ] {
            assert_eq!(classify(n), Ok(media::LICENSE), "{n}");
        }
        assert_eq!(classify("USE_POLICY.md"), Ok(media::USE_POLICY));
        assert_eq!(classify("NOTICE.txt"), Ok(media::NOTICE));
        assert_eq!(classify("README.md"), Ok(media::MODEL_CARD));
        assert!(classify("pytorch_model.bin").is_err());
    }

    #[test]
    fn split_parts() {
        assert!(is_split_part("m-00001-of-00003.gguf"));
        assert!(!is_split_part("m-q4_k_m.gguf"));
        assert!(!is_split_part("m-0001-of-0003.gguf"));
    }
}
