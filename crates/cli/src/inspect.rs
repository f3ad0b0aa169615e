use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Args;
use gguf::{GgufFile, Value};
use serde_json::{json, Map};

#[derive(Args)]
pub struct InspectArgs {
    /// GGUF model file or store name.
    #[arg(value_name = "MODEL")]
    pub file: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show every tensor (text output lists the first 40 otherwise).
    #[arg(long)]
    pub all_tensors: bool,
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => json!(s),
        Value::Bool(b) => json!(b),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(_, items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        other => other
            .as_i64()
            .map(|i| json!(i))
            .or_else(|| other.as_u64().map(|u| json!(u)))
            .unwrap_or(serde_json::Value::Null),
    }
}

fn is_provenance(key: &str) -> bool {
    key.starts_with("general.source.")
        || key.starts_with("general.base_model.")
        || key.starts_with("general.dataset")
        || matches!(
            key,
            "general.quantized_by"
                | "general.organization"
                | "general.author"
                | "general.url"
                | "general.repo_url"
                | "general.doi"
                | "general.uuid"
                | "general.version"
                | "general.finetune"
                | "general.basename"
                | "general.size_label"
                | "general.base_model.count"
                | "general.quantization_version"
                | "general.file_type"
        )
}

pub fn inspect(a: InspectArgs) -> Result<()> {
    let path = store::resolve_model_arg(&a.file)?;
    let f = GgufFile::open(&path)?;
    let arch = f
        .get_str("general.architecture")
        .unwrap_or("unknown")
        .to_string();
    let n_params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    let mut mix: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = mix.entry(t.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.n_bytes;
    }
    let hparams: Vec<(&str, &Value)> = f
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{arch}.")))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let licence: Vec<(&str, &Value)> = f
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("general.license"))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let provenance: Vec<(&str, &Value)> = f
        .metadata()
        .iter()
        .filter(|(k, _)| is_provenance(k))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tok_model = f.get_str("tokenizer.ggml.model").unwrap_or("none");
    let tok_pre = f.get_str("tokenizer.ggml.pre");
    let n_vocab = f
        .get_array("tokenizer.ggml.tokens")
        .map(|t| t.len())
        .unwrap_or(0);
    let template = f.get_str("tokenizer.chat_template");
    let weight_bytes: u64 = f.tensors().iter().map(|t| t.n_bytes).sum();

    if a.json {
        let mut meta = Map::new();
        for (k, v) in f.metadata() {
            // The vocabulary arrays are huge; summarise them.
            if let Value::Array(_, items) = v {
                if items.len() > 64 {
                    meta.insert(k.clone(), json!({"array_len": items.len()}));
                    continue;
                }
            }
            meta.insert(k.clone(), to_json(v));
        }
        let out = json!({
            "file": path,
            "file_bytes": f.len(),
            "gguf_version": f.version(),
            "architecture": arch,
            "name": f.get_str("general.name"),
            "parameters": n_params,
            "weight_bytes": weight_bytes,
            "hyperparameters": hparams.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect::<Map<_,_>>(),
            "quantization_mix": mix.iter().map(|(ty, (n, el, by))| json!({"type": ty, "tensors": n, "elements": el, "bytes": by})).collect::<Vec<_>>(),
            "tokenizer": {"model": tok_model, "pre": tok_pre, "vocab_size": n_vocab},
            "chat_template": template,
            "license": licence.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect::<Map<_,_>>(),
            "provenance": provenance.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect::<Map<_,_>>(),
            "tensors": f.tensors().iter().map(|t| json!({"name": t.name, "type": t.ty.name(), "shape": t.dims, "bytes": t.n_bytes, "offset": t.offset})).collect::<Vec<_>>(),
            "metadata": meta,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("serialising")?
        );
        return Ok(());
    }

    println!(
        "file:          {} ({} bytes, GGUF v{})",
        path.display(),
        f.len(),
        f.version()
    );
    println!(
        "name:          {}",
        f.get_str("general.name").unwrap_or("-")
    );
    println!("architecture:  {arch}");
    println!(
        "parameters:    {} ({:.1} M)",
        n_params,
        n_params as f64 / 1e6
    );
    println!(
        "weights:       {:.1} MiB in {} tensors",
        weight_bytes as f64 / 1048576.0,
        f.tensors().len()
    );
    println!("\nhyper-parameters:");
    for (k, v) in &hparams {
        println!("  {:<44} {}", k, v.display_short(6));
    }
    println!("\nquantization mix:");
    for (ty, (n, el, by)) in &mix {
        println!(
            "  {:<8} {:>4} tensors {:>12} elements {:>10.1} MiB ({:.1}%)",
            ty,
            n,
            el,
            *by as f64 / 1048576.0,
            100.0 * *by as f64 / weight_bytes.max(1) as f64
        );
    }
    println!(
        "\ntokenizer:     {tok_model}{} vocabulary {n_vocab}",
        tok_pre.map(|p| format!(" (pre {p})")).unwrap_or_default()
    );
    match template {
        Some(t) => println!("chat template: {} bytes\n{}", t.len(), indent(t, 2)),
        None => println!("chat template: none"),
    }
    println!("\nlicence:");
    if licence.is_empty() {
        println!("  (no general.license* keys)");
    }
    for (k, v) in &licence {
        println!("  {:<44} {}", k, v.display_short(6));
    }
    println!("\nprovenance:");
    for (k, v) in &provenance {
        println!("  {:<44} {}", k, v.display_short(6));
    }
    println!("\ntensors:");
    println!(
        "  {:<40} {:<6} {:<20} {:>12}",
        "name", "type", "shape", "bytes"
    );
    let limit = if a.all_tensors { usize::MAX } else { 40 };
    for t in f.tensors().iter().take(limit) {
        println!(
            "  {:<40} {:<6} {:<20} {:>12}",
            t.name,
            t.ty.name(),
            format!("{:?}", t.dims),
            t.n_bytes
        );
    }
    if f.tensors().len() > limit {
        println!("  ... {} more (--all-tensors)", f.tensors().len() - limit);
    }
    Ok(())
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .take(12)
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
        + if s.lines().count() > 12 {
            "\n  ..."
        } else {
            ""
        }
}
