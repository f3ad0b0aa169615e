//! The store commands: `import`, `list`, `show`, `rm`, `verify`, `gc`, `export`. Thin:
//! argument parsing and output formatting over the `store` crate.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use store::{media, Descriptor, ImportOptions, ModelRef, Store};

/// Arguments of `freehold import`.
#[derive(Args)]
pub struct ImportArgs {
    /// A GGUF file, a model directory (Hugging Face layout or cache), or a tar archive
    /// written by `freehold export`.
    pub path: PathBuf,
    /// Name to import as (`name[:tag]`); by default from the model's metadata or file name.
    #[arg(long)]
    pub name: Option<String>,
    /// A licence text file to keep with the model.
    #[arg(long)]
    pub license: Option<PathBuf>,
    /// From a directory holding several GGUF files: the file name of the one to import.
    #[arg(long)]
    pub weights: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freehold list`.
#[derive(Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freehold show`.
#[derive(Args)]
pub struct ShowArgs {
    /// The model (`name[:tag]`).
    pub model: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freehold rm`.
#[derive(Args)]
pub struct RmArgs {
    /// The models to remove (`name[:tag]`); their files stay until `freehold gc`.
    #[arg(required = true)]
    pub models: Vec<String>,
}

/// Arguments of `freehold verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The model to check (`name[:tag]`); every model when absent.
    pub model: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freehold gc`.
#[derive(Args)]
pub struct GcArgs {
    /// Also remove interrupted downloads younger than a day (never one in progress).
    #[arg(long)]
    pub all_partials: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freehold export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The model (`name[:tag]`).
    pub model: String,
    /// The tar file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn open() -> Result<Store> {
    let home = store::default_home()?;
    Store::open(&home).with_context(|| format!("opening the store {}", home.display()))
}

fn model_ref(s: &str) -> Result<ModelRef> {
    Ok(ModelRef::parse(s)?)
}

/// Decimal units, as disk sizes are usually quoted.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC (civil-from-days, proleptic Gregorian).
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn ago(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let d = now - secs;
    match d {
        i64::MIN..=59 => "just now".into(),
        60..=3599 => format!("{} minutes ago", d / 60),
        3600..=86_399 => format!("{} hours ago", d / 3600),
        86_400..=2_591_999 => format!("{} days ago", d / 86_400),
        _ => utc(secs)[..10].to_string(),
    }
}

fn short_media(m: &str) -> &str {
    m.strip_prefix("application/vnd.freehold.model.")
        .unwrap_or(m)
}

fn layer_json(d: &Descriptor) -> serde_json::Value {
    json!({
        "mediaType": d.media_type,
        "digest": d.digest.to_string(),
        "size": d.size,
        "title": d.title(),
    })
}

/// Prints rows with columns padded to the widest cell.
fn table(rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// `freehold import`.
pub fn import(a: ImportArgs) -> Result<()> {
    let s = open()?;
    // Under a licence policy a denied model is refused before anything is stored when the
    // source shows its licence (GGUF metadata, card, licence files); an archive's licence
    // layers are checked once stored, and a denied one is removed again.
    let inputs = crate::license_cmd::inputs_of_source(&a.path, a.license.as_deref())?;
    let what = a.path.display().to_string();
    crate::license_cmd::enforce_for_fetch(inputs, &what, "import of")?;
    let opts = ImportOptions {
        name: a.name.as_deref().map(model_ref).transpose()?,
        license: a.license,
        weights: a.weights,
    };
    let rep = s.import(&a.path, &opts)?;
    crate::license_cmd::enforce_stored_after_import(&s, &rep.model)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": rep.model.to_string(),
                "manifest": rep.manifest.to_string(),
                "replaced": rep.replaced.map(|d| d.to_string()),
                "format": rep.format,
                "layers": rep.layers.iter().map(layer_json).collect::<Vec<_>>(),
                "skipped": rep.skipped,
            }))?
        );
        return Ok(());
    }
    let total: u64 = rep.layers.iter().map(|d| d.size).sum();
    println!(
        "imported {} ({}, {} layer(s), {})",
        rep.model,
        rep.manifest,
        rep.layers.len() - 1,
        human(total)
    );
    if let Some(r) = rep.replaced {
        println!("  replaces {r} (its files stay until `freehold gc`)");
    }
    let rows: Vec<Vec<String>> = rep.layers[1..]
        .iter()
        .map(|d| {
            vec![
                format!("  {}", short_media(&d.media_type)),
                d.title().unwrap_or("").to_string(),
                human(d.size),
            ]
        })
        .collect();
    table(&rows);
    for s in &rep.skipped {
        println!("  skipped {s}");
    }
    Ok(())
}

/// `freehold list`.
pub fn list(a: ListArgs) -> Result<()> {
    let s = open()?;
    let entries = s.list()?;
    if a.json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.model.name(),
                    "tag": e.model.tag(),
                    "manifest": e.manifest.to_string(),
                    "size": e.size,
                    "architecture": e.architecture,
                    "quantization": e.quantization,
                    "parameters": e.parameters,
                    "source": e.source,
                    "created": e.created,
                    "modified": e.modified,
                    "modified_utc": utc(e.modified),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no models in {} (add one with `freehold import FILE`)",
            s.home().display()
        );
        return Ok(());
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "TAG".into(),
        "SIZE".into(),
        "QUANT/ARCH".into(),
        "MODIFIED".into(),
    ]];
    for e in &entries {
        rows.push(vec![
            e.model.name().to_string(),
            e.model.tag().to_string(),
            human(e.size),
            format!(
                "{}/{}",
                e.quantization.as_deref().unwrap_or("-"),
                e.architecture.as_deref().unwrap_or("-")
            ),
            ago(e.modified),
        ]);
    }
    table(&rows);
    Ok(())
}

/// `freehold show`.
pub fn show(a: ShowArgs) -> Result<()> {
    let s = open()?;
    let m = model_ref(&a.model)?;
    let entry = s.entry(&m)?;
    let (digest, manifest) = s.manifest(&m)?;
    let config = s.config_json(&m)?;
    let overrides = s.overrides(&m)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": m.to_string(),
                "manifest": digest.to_string(),
                "size": entry.size,
                "source": entry.source,
                "created": entry.created,
                "modified": entry.modified,
                "config": config,
                "config_digest": manifest.config.digest.to_string(),
                "layers": manifest.layers.iter().map(layer_json).collect::<Vec<_>>(),
                "overrides": overrides,
            }))?
        );
        return Ok(());
    }
    println!("{m}");
    println!("  manifest      {digest}");
    println!("  size          {}", human(entry.size));
    println!("  source        {}", entry.source);
    println!("  modified      {} UTC", utc(entry.modified));
    let field = |k: &str| -> Option<String> {
        match config.get(k)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    };
    for (label, key) in [
        ("format", "format"),
        ("architecture", "architecture"),
        ("parameters", "parameters"),
        ("file type", "file_type"),
        ("quantization", "quantization"),
        ("context", "context_length"),
    ] {
        if let Some(v) = field(key) {
            println!("  {label:<13} {v}");
        }
    }
    if let Some(g) = config.get("general").and_then(|g| g.as_object()) {
        for k in [
            "general.name",
            "general.license",
            "general.license.name",
            "general.license.link",
        ] {
            if let Some(v) = g.get(k) {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                println!("  {:<13} {v}", k.trim_start_matches("general."));
            }
        }
    }
    println!(
        "  config        {} ({})",
        manifest.config.digest,
        human(manifest.config.size)
    );
    println!("layers:");
    let rows: Vec<Vec<String>> = manifest
        .layers
        .iter()
        .map(|d| {
            vec![
                format!("  {}", short_media(&d.media_type)),
                d.title().unwrap_or("-").to_string(),
                human(d.size),
                d.digest.to_string(),
            ]
        })
        .collect();
    table(&rows);
    if manifest.layer(media::LICENSE).is_none() {
        println!("  (no licence text is stored with this model)");
    }
    if !overrides.is_empty() {
        println!("overrides:");
        for o in overrides {
            println!("  {} {} by {}: {}", utc(o.at), o.rule, o.who, o.why);
        }
    }
    Ok(())
}

/// `freehold rm`.
pub fn rm(a: RmArgs) -> Result<()> {
    let s = open()?;
    // Parse every name first so a typo in the last one removes nothing.
    let refs: Vec<ModelRef> = a
        .models
        .iter()
        .map(|m| model_ref(m))
        .collect::<Result<_>>()?;
    for m in &refs {
        let d = s.remove(m)?;
        println!("removed {m} ({d})");
    }
    println!("run `freehold gc` to delete files no model uses any more");
    Ok(())
}

/// `freehold verify`.
pub fn verify(a: VerifyArgs) -> Result<()> {
    let s = open()?;
    let m = a.model.as_deref().map(model_ref).transpose()?;
    let rep = s.verify(m.as_ref())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": rep.is_ok(),
                "models": rep.models,
            }))?
        );
    } else {
        for c in &rep.models {
            if c.problems.is_empty() {
                println!(
                    "ok       {} ({} blobs, {} re-hashed)",
                    c.model,
                    c.blobs,
                    human(c.bytes)
                );
            } else {
                println!("FAILED   {}", c.model);
                for p in &c.problems {
                    println!("  {p}");
                }
            }
        }
        if rep.models.is_empty() {
            println!("no models to verify");
        }
    }
    let bad: usize = rep.models.iter().map(|c| c.problems.len()).sum();
    if bad > 0 {
        let first = rep
            .models
            .iter()
            .flat_map(|c| c.problems.iter().map(move |p| format!("{}: {p}", c.model)))
            .next()
            .unwrap_or_default();
        bail!(
            "{bad} blob(s) missing or corrupt, first {first}; re-import or pull the model to repair it"
        );
    }
    Ok(())
}

/// `freehold gc`.
pub fn gc(a: GcArgs) -> Result<()> {
    let s = open()?;
    let grace = if a.all_partials {
        Duration::ZERO
    } else {
        store::DEFAULT_PARTIAL_GRACE
    };
    let rep = s.gc_with_grace(grace)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "blobs": rep.blobs.iter().map(|(d, n)| json!({"digest": d.to_string(), "size": n})).collect::<Vec<_>>(),
                "temp_files": rep.temp_files,
                "bytes_freed": rep.bytes_freed,
                "partials_kept": rep.partials_kept,
                "foreign": rep.foreign,
            }))?
        );
        return Ok(());
    }
    for (d, n) in &rep.blobs {
        println!("removed blob {d} ({})", human(*n));
    }
    for t in &rep.temp_files {
        println!("removed temporary file tmp/{t}");
    }
    println!(
        "freed {} ({} blobs, {} temporary files)",
        human(rep.bytes_freed),
        rep.blobs.len(),
        rep.temp_files.len()
    );
    if rep.partials_kept > 0 {
        println!(
            "kept {} interrupted download(s) for resuming (`freehold gc --all-partials` removes them)",
            rep.partials_kept
        );
    }
    for f in &rep.foreign {
        println!("left alone: blobs/sha256/{f} (not a digest name; not written by freehold)");
    }
    Ok(())
}

/// `freehold export`.
pub fn export(a: ExportArgs) -> Result<()> {
    let s = open()?;
    let m = model_ref(&a.model)?;
    let rep = s.export(&m, &a.output)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": m.to_string(),
                "path": rep.path,
                "manifest": rep.manifest.to_string(),
                "blobs": rep.blobs,
                "bytes": rep.bytes,
            }))?
        );
    } else {
        println!(
            "exported {m} ({}) to {} ({} blobs, {})",
            rep.manifest,
            rep.path.display(),
            rep.blobs,
            human(rep.bytes)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(98_362_432), "98.4 MB");
    }
}
