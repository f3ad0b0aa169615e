//! `freehold license` (a model's licence, its terms with the operative clauses quoted, and
//! the policy verdict) and `freehold bom` (a CycloneDX 1.6 ML-BOM), for a GGUF file or a
//! model in the store.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ::license::{
    bom, effective, evaluate, evaluate_with_override, resolve, resolve_base_name, BomFile,
    BomInput, Decision, EffectiveTerms, FileRole, LicenseInputs, Override, Policy, Resolution,
    DISCLAIMER,
};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use gguf::{GgufFile, Value};
use serde_json::json;
use store::{media, Digest, ModelRef, Store};

/// Largest licence, notice, use-policy or model-card text read.
const MAX_TEXT_BYTES: u64 = 4 << 20;
/// How deep base models are followed through the store.
const MAX_LINEAGE_DEPTH: usize = 4;
/// The override rule name recorded in the store catalog.
const OVERRIDE_RULE: &str = "license";

/// Arguments of `freehold license`.
#[derive(Args)]
pub struct LicenseArgs {
    /// A GGUF file, or a model in the store (`name[:tag]`).
    pub model: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A licence, NOTICE or use-policy file of the model (repeatable).
    #[arg(long = "license-file", value_name = "FILE")]
    pub license_files: Vec<PathBuf>,
    /// The model card (README.md with YAML front matter).
    #[arg(long, value_name = "FILE")]
    pub card: Option<PathBuf>,
    /// Allow this stored model despite the policy, recording REASON in the store catalog.
    #[arg(long = "override", value_name = "REASON")]
    pub override_reason: Option<String>,
    /// Who records the override (default `$USER`).
    #[arg(long, value_name = "NAME", requires = "override_reason")]
    pub by: Option<String>,
}

/// Arguments of `freehold bom`.
#[derive(Args)]
pub struct BomArgs {
    /// A GGUF file, or a model in the store (`name[:tag]`).
    pub model: String,
    /// A licence, NOTICE or use-policy file of the model (repeatable).
    #[arg(long = "license-file", value_name = "FILE")]
    pub license_files: Vec<PathBuf>,
    /// The model card (README.md with YAML front matter).
    #[arg(long, value_name = "FILE")]
    pub card: Option<PathBuf>,
    /// Write the BOM to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Everything known about one model.
struct Gathered {
    inputs: LicenseInputs,
    files: Vec<BomFile>,
    name: String,
    version: String,
    source: Option<String>,
    stored: Option<(ModelRef, Digest)>,
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    let f = File::open(path).with_context(|| format!("{what} {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        bail!(
            "{what} {} is larger than the {MAX_TEXT_BYTES}-byte limit",
            path.display()
        );
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn role_of_name(name: &str) -> FileRole {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("notice") {
        FileRole::Notice
    } else if lower.replace('-', "_").contains("use_policy") {
        FileRole::UsePolicy
    } else if lower.starts_with("readme") {
        FileRole::ModelCard
    } else {
        FileRole::Licence
    }
}

fn role_of_media(mt: &str) -> FileRole {
    match mt {
        media::GGUF | media::SAFETENSORS => FileRole::Weights,
        media::LICENSE => FileRole::Licence,
        media::NOTICE => FileRole::Notice,
        media::USE_POLICY => FileRole::UsePolicy,
        media::MODEL_CARD => FileRole::ModelCard,
        media::CONFIG_JSON | media::PARAMS | media::SAFETENSORS_INDEX => FileRole::Config,
        media::TOKENIZER | media::TOKENIZER_CONFIG => FileRole::Tokenizer,
        media::TEMPLATE => FileRole::Template,
        media::ADAPTER => FileRole::Adapter,
        _ => FileRole::Other,
    }
}

fn gguf_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::F32(x) => Some(x.to_string()),
        Value::F64(x) => Some(x.to_string()),
        Value::Array(_, items) => {
            let parts: Vec<String> = items.iter().take(64).filter_map(gguf_string).collect();
            Some(parts.join(", "))
        }
        other => other
            .as_u64()
            .map(|u| u.to_string())
            .or_else(|| other.as_i64().map(|i| i.to_string())),
    }
}

fn json_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .take(64)
                .filter_map(json_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

fn add_extra_files(g: &mut Gathered, license_files: &[PathBuf], card: Option<&Path>) -> Result<()> {
    for p in license_files {
        let text = read_text(p, "licence file")?;
        let name = file_name(p);
        if role_of_name(&name) == FileRole::ModelCard && g.inputs.model_card.is_none() {
            g.inputs.model_card = Some(text);
        } else {
            g.inputs.files.push((name.clone(), text));
        }
        let (d, size) = Digest::of_reader(
            File::open(p).with_context(|| format!("licence file {}", p.display()))?,
        )
        .with_context(|| format!("hashing {}", p.display()))?;
        g.files.push(BomFile {
            name,
            sha256: d.hex(),
            size,
            media_type: None,
            role: role_of_name(&file_name(p)),
        });
    }
    if let Some(c) = card {
        g.inputs.model_card = Some(read_text(c, "model card")?);
        let (d, size) = Digest::of_reader(
            File::open(c).with_context(|| format!("model card {}", c.display()))?,
        )
        .with_context(|| format!("hashing {}", c.display()))?;
        g.files.push(BomFile {
            name: file_name(c),
            sha256: d.hex(),
            size,
            media_type: None,
            role: FileRole::ModelCard,
        });
    }
    Ok(())
}

/// A GGUF file: its `general.*` metadata; with `hash`, the file's SHA-256 for the BOM.
fn gather_file(path: &Path, hash: bool) -> Result<Gathered> {
    let g = GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
    let gguf_metadata: BTreeMap<String, String> = g
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("general."))
        .filter_map(|(k, v)| gguf_string(v).map(|s| (k.clone(), s)))
        .collect();
    drop(g);
    let mut files = Vec::new();
    if hash {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let (d, size) =
            Digest::of_reader(f).with_context(|| format!("hashing {}", path.display()))?;
        files.push(BomFile {
            name: file_name(path),
            sha256: d.hex(),
            size,
            media_type: Some(media::GGUF.into()),
            role: FileRole::Weights,
        });
    }
    let version = gguf_metadata
        .get("general.version")
        .cloned()
        .unwrap_or_else(|| "unversioned".into());
    Ok(Gathered {
        inputs: LicenseInputs {
            gguf_metadata,
            model_card: None,
            files: Vec::new(),
        },
        files,
        name: file_name(path),
        version,
        source: None,
        stored: None,
    })
}

/// A stored model: the config blob's `general` metadata and the licence, notice,
/// use-policy and model-card layers; every layer's digest for the BOM.
fn gather_stored(st: &Store, m: &ModelRef) -> Result<Gathered> {
    let (digest, manifest) = st.manifest(m)?;
    let config = st.config_json(m)?;
    let gguf_metadata: BTreeMap<String, String> = config
        .get("general")
        .and_then(|g| g.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| json_string(v).map(|s| (k.clone(), s)))
                .collect()
        })
        .unwrap_or_default();
    let mut inputs = LicenseInputs {
        gguf_metadata,
        model_card: None,
        files: Vec::new(),
    };
    let mut files = Vec::new();
    for (i, layer) in manifest.layers.iter().enumerate() {
        let name = layer
            .title()
            .map(str::to_string)
            .unwrap_or_else(|| format!("layer {i}"));
        let role = role_of_media(&layer.media_type);
        if matches!(
            role,
            FileRole::Licence | FileRole::Notice | FileRole::UsePolicy | FileRole::ModelCard
        ) {
            let bytes = st.read_blob(&layer.digest, MAX_TEXT_BYTES, &format!("{name} of {m}"))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if role == FileRole::ModelCard {
                inputs.model_card = Some(text);
            } else {
                inputs.files.push((name.clone(), text));
            }
        }
        files.push(BomFile {
            name,
            sha256: layer.digest.hex(),
            size: layer.size,
            media_type: Some(layer.media_type.clone()),
            role,
        });
    }
    let source = st
        .entry(m)
        .ok()
        .map(|e| e.source)
        .filter(|s| s.starts_with("http"));
    Ok(Gathered {
        inputs,
        files,
        name: m.name().to_string(),
        version: m.tag().to_string(),
        source,
        stored: Some((m.clone(), digest)),
    })
}

/// The model argument: an existing file is a GGUF file; anything else a store name.
fn gather(arg: &str, hash: bool) -> Result<(Gathered, Option<Store>)> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok((gather_file(p, hash)?, None));
    }
    let m = ModelRef::parse(arg)
        .map_err(|e| anyhow!("{arg} is neither a file nor a model name: {e}"))?;
    let st = Store::open_default()?;
    let g = gather_stored(&st, &m)?;
    Ok((g, Some(st)))
}

/// Base models, resolved from the store when a stored model has that name, else by name.
fn lineage(r: &Resolution, st: Option<&Store>) -> Vec<Resolution> {
    let mut out: Vec<Resolution> = Vec::new();
    let mut todo: Vec<(String, usize)> = r.base_models.iter().map(|b| (b.clone(), 1)).collect();
    let entries = st.and_then(|s| s.list().ok()).unwrap_or_default();
    while let Some((base, depth)) = todo.pop() {
        if out
            .iter()
            .any(|x| x.model_name.as_deref() == Some(base.as_str()))
        {
            continue;
        }
        let last = base
            .rsplit('/')
            .next()
            .unwrap_or(&base)
            .to_ascii_lowercase();
        let stored = st.and_then(|s| {
            entries
                .iter()
                .find(|e| e.model.name().eq_ignore_ascii_case(&last))
                .and_then(|e| gather_stored(s, &e.model).ok())
        });
        let mut res = match stored {
            Some(g) => {
                let mut res = resolve(&g.inputs);
                res.evidence.insert(
                    0,
                    ::license::Evidence {
                        source: format!("base model {base}"),
                        detail: format!("found in the store as {}", g.name),
                    },
                );
                res
            }
            None => resolve_base_name(&base),
        };
        res.model_name = Some(base.clone());
        if depth < MAX_LINEAGE_DEPTH {
            todo.extend(res.base_models.iter().map(|b| (b.clone(), depth + 1)));
        }
        out.push(res);
    }
    out
}

fn load_policy(path: Option<&Path>) -> Result<(Policy, bool)> {
    match path {
        Some(p) => Ok((Policy::load(p)?, true)),
        None => {
            let explicit =
                std::env::var_os(::license::policy::POLICY_ENV).is_some_and(|v| !v.is_empty());
            Ok((Policy::from_env()?, explicit))
        }
    }
}

fn whoami(by: Option<&str>) -> String {
    by.map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown user".into())
}

/// The latest override recorded for exactly this stored content (a re-import under the same
/// name does not inherit it).
fn recorded_override(st: Option<&Store>, g: &Gathered) -> Result<Option<Override>> {
    let (Some(st), Some((m, digest))) = (st, g.stored.as_ref()) else {
        return Ok(None);
    };
    Ok(st
        .overrides(m)?
        .into_iter()
        .rev()
        .find(|o| o.rule == OVERRIDE_RULE && o.manifest.as_ref() == Some(digest))
        .map(|o| Override {
            who: o.who,
            when: ::license::bom::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(o.at.max(0) as u64),
            ),
            reason: o.why,
        }))
}

/// The model's own resolution, its base models and the effective (most restrictive) terms.
fn resolve_chain(
    g: &Gathered,
    st: Option<&Store>,
) -> (Resolution, Vec<Resolution>, EffectiveTerms) {
    let r = resolve(&g.inputs);
    let bases = lineage(&r, st);
    let mut chain = vec![r.clone()];
    chain.extend(bases.iter().cloned());
    let eff = effective(&chain);
    (r, bases, eff)
}

/// The policy configured with the global `--policy` or `FREEHOLD_POLICY`; `None` when there
/// is none, in which case `pull`, `import`, `run` and `serve` enforce nothing.
pub fn configured_policy() -> Result<Option<Policy>> {
    let (policy, explicit) = load_policy(None)?;
    Ok(explicit.then_some(policy))
}

/// What `run` and `serve` do before loading a model (a file or a store name): under a
/// configured policy, a denied licence or one that needs review (with no override recorded
/// for this exact content) refuses the load with the reason; allowed obligations are
/// returned for the caller to show.
pub fn enforce_for_load(arg: &str, action: &str) -> Result<Vec<String>> {
    let Some(policy) = configured_policy()? else {
        return Ok(Vec::new());
    };
    let (g, st) = gather(arg, false)?;
    let (_, _, eff) = resolve_chain(&g, st.as_ref());
    let over = recorded_override(st.as_ref(), &g)?;
    match evaluate_with_override(&policy, &eff, over.as_ref()) {
        Decision::Allow { obligations } => Ok(obligations),
        Decision::Review { reason } => bail!(
            "{action} refused: {reason} ({}); a reviewer can allow it with `freehold license {arg} --override REASON`",
            policy.describe()
        ),
        Decision::Deny { reason } => {
            bail!("{action} refused by {}: {reason}", policy.describe())
        }
    }
}

/// What `pull` and `import` do before anything is stored: under a configured policy, a
/// licence the policy denies stops them (before any weights are downloaded when the model
/// card or licence texts already say enough). A licence that needs review is stored with a
/// warning, since a reviewer needs the model at hand; `run` and `serve` refuse it until an
/// override is recorded.
pub fn enforce_for_fetch(inputs: LicenseInputs, what: &str, action: &str) -> Result<()> {
    let Some(policy) = configured_policy()? else {
        return Ok(());
    };
    let g = Gathered {
        inputs,
        files: Vec::new(),
        name: what.to_string(),
        version: String::new(),
        source: None,
        stored: None,
    };
    let (r, _, eff) = resolve_chain(&g, None);
    match evaluate(&policy, &eff) {
        Decision::Deny { reason } => {
            bail!("{action} {what} refused by {}: {reason}", policy.describe())
        }
        Decision::Review { reason } if r.id != "unknown" || !g.inputs.gguf_metadata.is_empty() => {
            eprintln!(
                "warning: {what}: {reason} ({}); run and serve will refuse it until a reviewer records `freehold license NAME --override REASON`",
                policy.describe()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The licence inputs of a local source before import: a GGUF file's `general.*` metadata,
/// or a model directory's card and licence, notice and use-policy files, plus an extra
/// licence file given with `--license`.
pub fn inputs_of_source(path: &Path, extra_license: Option<&Path>) -> Result<LicenseInputs> {
    let mut inputs = if path.is_dir() {
        let mut inputs = LicenseInputs::default();
        let mut names: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            let name = file_name(&p);
            // The same classification the store's import gives these files as layers.
            match store::classify(&name) {
                Ok(media::MODEL_CARD) => {
                    inputs.model_card = Some(read_text(&p, "model card")?);
                }
                Ok(media::LICENSE | media::NOTICE | media::USE_POLICY) => {
                    inputs.files.push((name, read_text(&p, "licence file")?));
                }
                Ok(media::GGUF) if inputs.gguf_metadata.is_empty() => {
                    inputs.gguf_metadata = gather_file(&p, false)?.inputs.gguf_metadata;
                }
                _ => {}
            }
        }
        inputs
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        gather_file(path, false)?.inputs
    } else {
        // An exported archive: checked once imported, from its stored layers.
        return Ok(LicenseInputs::default());
    };
    if let Some(l) = extra_license {
        inputs
            .files
            .push((file_name(l), read_text(l, "licence file")?));
    }
    Ok(inputs)
}

/// After an import from an archive (whose licence layers are only readable once stored):
/// a denied model is removed again and the import fails.
pub fn enforce_stored_after_import(st: &Store, m: &ModelRef) -> Result<()> {
    let Some(policy) = configured_policy()? else {
        return Ok(());
    };
    let g = gather_stored(st, m)?;
    let (_, _, eff) = resolve_chain(&g, Some(st));
    if let Decision::Deny { reason } = evaluate(&policy, &eff) {
        st.remove(m)?;
        bail!("import of {m} refused by {}: {reason}", policy.describe());
    }
    Ok(())
}

/// `freehold license`.
pub fn license(a: LicenseArgs) -> Result<()> {
    // The global `--policy` reaches here as FREEHOLD_POLICY (set in main).
    let (policy, explicit) = load_policy(None)?;
    let (mut g, st) = gather(&a.model, false)?;
    add_extra_files(&mut g, &a.license_files, a.card.as_deref())?;
    let (r, bases, eff) = resolve_chain(&g, st.as_ref());

    if a.override_reason.is_some() && g.stored.is_none() {
        bail!("--override needs a model in the store (overrides are recorded in its catalog); {} is a file", a.model);
    }
    let mut recorded = None;
    if let (Some(reason), Some(st), Some((m, _))) =
        (a.override_reason.as_deref(), st.as_ref(), g.stored.as_ref())
    {
        let who = whoami(a.by.as_deref());
        let id = st.record_override(m, OVERRIDE_RULE, &who, reason)?;
        recorded = Some(id);
    }
    let over = recorded_override(st.as_ref(), &g)?;
    let decision = evaluate_with_override(&policy, &eff, over.as_ref());

    if a.json {
        let out = json!({
            "model": g.name,
            "version": g.version,
            "resolution": r,
            "lineage": bases,
            "effective": eff,
            "policy": {"source": policy.source, "decision": decision},
            "override_recorded": recorded,
            "disclaimer": DISCLAIMER,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", report(&g, &r, &bases, &eff, &policy, &decision));
        if let Some(id) = recorded {
            println!("Override #{id} recorded in the store catalog.");
        }
    }
    match decision {
        Decision::Deny { reason } if explicit => bail!("denied by policy: {reason}"),
        _ => Ok(()),
    }
}

fn report(
    g: &Gathered,
    r: &Resolution,
    bases: &[Resolution],
    e: &EffectiveTerms,
    policy: &Policy,
    d: &Decision,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Licence policy check for {} (not legal advice)", g.name);
    if let Some(n) = &r.model_name {
        let _ = writeln!(s, "Model:        {n}");
    }
    let _ = writeln!(
        s,
        "Licence:      {} ({}), confidence {}",
        r.name, r.id, r.confidence
    );
    let _ = writeln!(s, "Evidence:");
    for ev in &r.evidence {
        let _ = writeln!(s, "  - {}: {}", ev.source, ev.detail);
    }
    for c in &r.conflicts {
        let _ = writeln!(s, "  ! conflict: {c}");
    }
    for w in &r.warnings {
        let _ = writeln!(s, "  ! {w}");
    }
    if !bases.is_empty() {
        let _ = writeln!(s, "Lineage:");
        for b in bases {
            let how = b
                .evidence
                .first()
                .map(|ev| ev.detail.as_str())
                .unwrap_or("");
            let _ = writeln!(
                s,
                "  - {}: {} ({}), confidence {}; {how}",
                b.model_name.as_deref().unwrap_or("?"),
                b.name,
                b.id,
                b.confidence
            );
        }
    }
    let _ = writeln!(
        s,
        "Terms{}:",
        if bases.is_empty() {
            ""
        } else {
            " (most restrictive across the lineage)"
        }
    );
    let _ = writeln!(s, "  Commercial use:       {}", e.commercial.describe());
    let mut redistribution = Vec::new();
    let mut attribution = Vec::new();
    for link in &e.chain {
        if let Some(t) = ::license::terms::by_id(link.id.as_str()) {
            redistribution.extend(t.redistribution.iter().map(|x| format!("{x} [{}]", t.id)));
            attribution.extend(t.attribution.iter().map(|x| format!("{x} [{}]", t.id)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    redistribution.retain(|x| seen.insert(x.clone()));
    attribution.retain(|x| seen.insert(x.clone()));
    list(&mut s, "  Redistribution:", &redistribution);
    list(&mut s, "  Attribution:", &attribution);
    list(&mut s, "  Derivative naming:", &e.naming);
    let aups: Vec<String> = e
        .use_policies
        .iter()
        .map(|p| format!("{} <{}>: {}", p.name, p.url, p.flow_down))
        .collect();
    list(&mut s, "  Use policy flow-down:", &aups);
    let _ = writeln!(s, "  Training on outputs:  {}", e.outputs.describe());
    if e.share_alike {
        let _ = writeln!(
            s,
            "  Share-alike:          adaptations must carry the same licence"
        );
    }
    list(&mut s, "  Notes:", &e.notes);
    if !r.clauses.is_empty() {
        match &r.licence_file {
            Some(f) => {
                let _ = writeln!(s, "Operative clauses (quoted from {f}):");
            }
            None => {
                let _ = writeln!(
                    s,
                    "Operative clauses (no licence file given: summaries from the terms database):"
                );
            }
        }
        for c in &r.clauses {
            match &c.quote {
                Some(q) => {
                    let _ = writeln!(s, "  [{}] \"{q}\"\n      = {}", c.topic.label(), c.summary);
                }
                None => {
                    let _ = writeln!(s, "  [{}] {} ({})", c.topic.label(), c.summary, c.source);
                }
            }
        }
    }
    match d {
        Decision::Allow { obligations } => {
            let _ = writeln!(s, "Policy:       ALLOW under {}", policy.describe());
            list(&mut s, "  Obligations:", obligations);
        }
        Decision::Review { reason } => {
            let _ = writeln!(s, "Policy:       REVIEW: {reason}");
        }
        Decision::Deny { reason } => {
            let _ = writeln!(s, "Policy:       DENY: {reason}");
        }
    }
    let _ = writeln!(s, "{DISCLAIMER}");
    s
}

fn list(s: &mut String, head: &str, items: &[String]) {
    use std::fmt::Write as _;
    if items.is_empty() {
        let _ = writeln!(s, "{head:<23} none");
        return;
    }
    let _ = writeln!(s, "{head}");
    for i in items {
        let _ = writeln!(s, "    - {i}");
    }
}

/// `freehold bom`.
pub fn bom_cmd(a: BomArgs) -> Result<()> {
    let (mut g, st) = gather(&a.model, true)?;
    add_extra_files(&mut g, &a.license_files, a.card.as_deref())?;
    let r = resolve(&g.inputs);
    let lineage = lineage(&r, st.as_ref());
    let licence_text = r
        .licence_file
        .as_ref()
        .and_then(|f| g.inputs.files.iter().find(|(n, _)| n == f))
        .map(|(_, t)| t.clone());
    let input = BomInput {
        name: g.name.clone(),
        version: g.version.clone(),
        files: g.files.clone(),
        resolution: r,
        lineage,
        licence_text,
        metadata: g.inputs.gguf_metadata.clone(),
        source: g.source.clone(),
    };
    let doc = bom(&input);
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match &a.output {
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
        Some(p) => write_atomic(p, text.as_bytes()),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and
/// renamed over, so a reader never sees half a BOM.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{}.{}.tmp", file_name(path), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
