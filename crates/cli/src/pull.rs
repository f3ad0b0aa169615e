//! `freehold pull` and `freehold push`: the `remote` crate's clients glued to the store.
//!
//! A pull runs in three steps so a policy can refuse a model before its weights are fetched:
//! (1) the listing (hub) or manifest (registry) and the small metadata files (model card,
//! licence texts, configs) into memory; (2) [`pre_pull_check`]; (3) the large files, each
//! written to the store's partial path for its digest under the store's lock, verified by
//! `remote`, adopted by the store, and only then the manifest committed. A pull that is
//! killed leaves a partial file the next pull continues; nothing is visible before commit.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use store::{media, Descriptor, Digest, Manifest, ModelRef, Store};

use remote::hf::{self, HfClient, HfRef, HubFile};
use remote::oci::{BlobRef, OciClient, OciRef, Reference};
use remote::{ClientOptions, RemoteError};

/// Largest metadata layer of a registry artifact read into memory before the policy check.
const SMALL_BLOB_LIMIT: u64 = 64 << 20;

/// Arguments of `freehold pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// What to pull: `hf://ORG/REPO[/FILE][@REVISION]` or `oci://HOST[:PORT]/REPO[:TAG]`.
    pub source: String,
    /// Store it as NAME[:TAG] (default: the repository's name, tag `latest` or the OCI tag).
    #[arg(long)]
    pub name: Option<String>,
    /// Among several GGUF files, the one with this quantization in its name (e.g. Q4_K_M).
    #[arg(long)]
    pub quant: Option<String>,
    /// Hub endpoint (default: $HF_ENDPOINT, else the public hub). Token: $HF_TOKEN or
    /// $HF_HOME/token.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Talk to an OCI registry over plain HTTP (always so for 127.0.0.1 and localhost).
    #[arg(long)]
    pub plain_http: bool,
    /// Parallel range requests for large files.
    #[arg(long, default_value_t = 4)]
    pub parts: usize,
    /// No progress bars or per-file lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `freehold push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// A model in the store, NAME[:TAG].
    pub model: String,
    /// Where to: `oci://HOST[:PORT]/REPO:TAG`. Credentials: FREEHOLD_REGISTRY_USERNAME and
    /// FREEHOLD_REGISTRY_PASSWORD.
    pub dest: String,
    /// Talk to the registry over plain HTTP (always so for 127.0.0.1 and localhost).
    #[arg(long)]
    pub plain_http: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What a pull knows before any weights are downloaded: the input of [`pre_pull_check`].
#[derive(Clone, Debug)]
pub struct PullMetadata {
    /// The source as given (`hf://...`, `oci://...`).
    pub source: String,
    /// What the pull is pinned to: the hub commit, or the registry manifest digest.
    pub pinned: String,
    /// Every file the model will hold: (file name, size in bytes, layer media type).
    pub files: Vec<(String, u64, String)>,
    /// The small files already fetched and verified: (file name, bytes). The model card
    /// (`README.md`), licence texts (`LICENSE*`, `USE_POLICY*`, `NOTICE*`), `config.json`,
    /// tokenizer files.
    pub small_files: Vec<(String, Vec<u8>)>,
}

impl PullMetadata {
    /// The model card text (`README.md`), when the source has one.
    pub fn model_card(&self) -> Option<String> {
        self.text_of(|n| n.eq_ignore_ascii_case("README.md"))
            .into_iter()
            .next()
            .map(|(_, t)| t)
    }

    /// Licence, use-policy and notice texts as (file name, text).
    pub fn license_texts(&self) -> Vec<(String, String)> {
        self.text_of(|n| {
            matches!(
                store::classify(n),
                Ok(media::LICENSE | media::NOTICE | media::USE_POLICY)
            )
        })
    }

    /// One line for the user before the weights are fetched: what, pinned where, how big,
    /// and which licence evidence came with it.
    pub fn describe(&self) -> String {
        let total: u64 = self.files.iter().map(|(_, n, _)| *n).sum();
        let texts: Vec<String> = self.license_texts().into_iter().map(|(n, _)| n).collect();
        format!(
            "{} at {}: {} files, {}; model card: {}; licence texts: {}",
            self.source,
            self.pinned,
            self.files.len(),
            remote::progress::format_bytes(total),
            if self.model_card().is_some() {
                "yes"
            } else {
                "none"
            },
            if texts.is_empty() {
                "none".to_string()
            } else {
                texts.join(", ")
            }
        )
    }

    fn text_of(&self, pick: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        self.small_files
            .iter()
            .filter(|(n, _)| pick(n))
            .map(|(n, b)| (n.clone(), String::from_utf8_lossy(b).into_owned()))
            .collect()
    }
}

/// The policy gate between the metadata and the weights: under a configured licence policy,
/// a licence the model card or licence texts show to be denied stops the pull before any
/// large file is fetched.
pub fn pre_pull_check(meta: &PullMetadata) -> Result<()> {
    let inputs = ::license::LicenseInputs {
        gguf_metadata: Default::default(),
        model_card: meta.model_card(),
        files: meta.license_texts(),
    };
    crate::license_cmd::enforce_for_fetch(inputs, &meta.source, "pull of")
}

/// The same gate once the weights are verified but before the model is committed, now with
/// the GGUF `general.*` metadata too (the only licence evidence some files carry); a refusal
/// leaves only unreferenced blobs, which `gc` removes.
fn post_download_check(meta: &PullMetadata, config: &Map<String, Value>) -> Result<()> {
    let gguf_metadata = config
        .get("general")
        .and_then(|g| g.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Array(a) => Some((
                        k.clone(),
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )),
                    Value::Null | Value::Object(_) => None,
                    other => Some((k.clone(), other.to_string())),
                })
                .collect()
        })
        .unwrap_or_default();
    let inputs = ::license::LicenseInputs {
        gguf_metadata,
        model_card: meta.model_card(),
        files: meta.license_texts(),
    };
    crate::license_cmd::enforce_for_fetch(inputs, &meta.source, "pull of")
}

fn client_options(offline: bool, quiet: bool, parts: usize) -> ClientOptions {
    let mut o = ClientOptions::standard(offline);
    o.progress = !quiet;
    o.parts = parts.max(1);
    o
}

/// The store; its `offline()` covers `FREEHOLD_OFFLINE=1` and the global `--offline`.
fn open_store() -> Result<Store> {
    Store::open_default().context("opening the model store")
}

/// `freehold pull`.
pub fn pull(args: PullArgs) -> Result<()> {
    let store = open_store()?;
    if store.offline() {
        return Err(RemoteError::Offline {
            what: format!("pulling {}", args.source),
        }
        .into());
    }
    let opts = client_options(store.offline(), args.quiet, args.parts);
    if args.source.starts_with("hf://") {
        pull_hf(&store, &args, opts)
    } else if args.source.starts_with("oci://") {
        if args.quant.is_some() || args.endpoint.is_some() {
            bail!("--quant and --endpoint apply to hf:// sources only");
        }
        pull_oci(&store, &args, opts)
    } else {
        bail!(
            "cannot pull {:?}: expected hf://ORG/REPO[/FILE][@REVISION] or oci://HOST[:PORT]/REPO[:TAG] (local files: freehold import)",
            args.source
        )
    }
}

/// The layer media type of a pulled file, as the store's import classifies it; files import
/// would skip are kept as plain files (the hub selection already chose them).
fn media_type_of(name: &str) -> &'static str {
    store::classify(name).unwrap_or(media::FILE)
}

fn digest_of_hex(hex: &str) -> Result<Digest> {
    Ok(Digest::parse(&format!("sha256:{hex}"))?)
}

/// Say what is happening on stderr unless quiet.
struct Say(bool);

impl Say {
    fn line(&self, s: impl std::fmt::Display) {
        if !self.0 {
            eprintln!("{s}");
        }
    }
}

/// Downloads one large blob into the store: under the blob's partial lock, resuming the
/// partial file, verified by `fetch`, adopted (re-hashed) by the store. A blob already present
/// (or fetched meanwhile by a concurrent pull) is not fetched again.
fn fetch_into_store(
    store: &Store,
    digest: &Digest,
    say: &Say,
    label: &str,
    fetch: impl FnOnce(&Path) -> Result<remote::Downloaded, RemoteError>,
) -> Result<u64> {
    if let Some(n) = store.blob_size(digest) {
        say.line(format_args!("  {label}: already in the store"));
        return Ok(n);
    }
    let lock = store.lock_partial(digest)?;
    if let Some(n) = store.blob_size(digest) {
        // Another pull finished it while we waited for the lock.
        say.line(format_args!("  {label}: already in the store"));
        return Ok(n);
    }
    let got = fetch(lock.partial_path())?;
    let size = store.adopt_blob(lock.partial_path(), digest)?;
    let resumed = if got.resumed_from > 0 {
        format!(
            ", resumed at {}",
            remote::progress::format_bytes(got.resumed_from)
        )
    } else {
        String::new()
    };
    say.line(format_args!(
        "  {label}: {} verified {digest}{resumed}",
        remote::progress::format_bytes(size)
    ));
    Ok(size)
}

fn pull_hf(store: &Store, args: &PullArgs, opts: ClientOptions) -> Result<()> {
    let r = HfRef::parse(&args.source)?;
    let endpoint = hf::endpoint_from(args.endpoint.as_deref());
    let say = Say(args.quiet);
    let client = HfClient::new(&endpoint, hf::token_from_env(), opts)?;

    // (1) Listing and small files, into memory.
    let listing = client.listing(&r)?;
    let sel = hf::select(&listing, &r, args.quant.as_deref())?;
    say.line(format_args!(
        "pulling {} (commit {}): {}",
        r.repo_display(),
        listing.commit,
        sel.weights
            .iter()
            .chain(&sel.metadata)
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut small: Vec<(HubFile, Vec<u8>, String)> = Vec::new();
    for f in &sel.metadata {
        let (bytes, sha) = client.fetch_small(&r, &listing, f)?;
        small.push((f.clone(), bytes, sha));
    }
    let meta = PullMetadata {
        source: r.to_string(),
        pinned: listing.commit.clone(),
        files: sel
            .weights
            .iter()
            .chain(&sel.metadata)
            .map(|f| {
                (
                    f.name().to_string(),
                    f.size,
                    media_type_of(f.name()).to_string(),
                )
            })
            .collect(),
        small_files: small
            .iter()
            .map(|(f, b, _)| (f.name().to_string(), b.clone()))
            .collect(),
    };

    // (2) Policy.
    say.line(meta.describe());
    pre_pull_check(&meta)?;

    // (3) Large files, then the manifest.
    let mut layers = Vec::new();
    for (f, bytes, sha) in &small {
        let (d, size) = store.add_blob_from_bytes(bytes)?;
        if d != digest_of_hex(sha)? {
            bail!(
                "{}: the store hashed the file differently from the download",
                f.path
            );
        }
        layers.push(Descriptor::with_title(
            media_type_of(f.name()),
            d,
            size,
            f.name(),
        )?);
    }
    let mut weights = Vec::new();
    for f in &sel.weights {
        let d = match &f.sha256 {
            Some(hex) => {
                let d = digest_of_hex(hex)?;
                let size = fetch_into_store(store, &d, &say, f.name(), |dest| {
                    client.download(&r, &listing, f, dest)
                })?;
                if size != f.size {
                    bail!("{}: {size} bytes stored, {} listed", f.path, f.size);
                }
                d
            }
            None => {
                // Not in LFS: the hub publishes no sha256, only a size; small by nature.
                let (bytes, _) = client.fetch_small(&r, &listing, f)?;
                store.add_blob_from_bytes(&bytes)?.0
            }
        };
        weights.push(f.name().to_string());
        layers.push(Descriptor::with_title(
            media_type_of(f.name()),
            d,
            f.size,
            f.name(),
        )?);
    }
    let source = json!({
        "kind": "hf",
        "endpoint": endpoint,
        "repo": r.repo_id,
        "revision": r.revision,
        "commit": listing.commit,
        "file": r.file,
    });
    let config = model_config(store, &layers, &small, weights, source)?;
    let name = match &args.name {
        Some(n) => ModelRef::parse(n)?,
        None => {
            let repo = r.repo_id.rsplit('/').next().unwrap_or(&r.repo_id);
            let base = store::sanitize_name(repo).with_context(|| {
                format!(
                    "no usable model name in {:?}: give one with --name",
                    r.repo_id
                )
            })?;
            ModelRef::new(&base, store::DEFAULT_TAG)?
        }
    };
    post_download_check(&meta, &config)?;
    let provenance = format!("hf://{}@{} ({})", r.repo_id, listing.commit, endpoint);
    commit(store, &name, config, layers, &provenance)
}

/// The manifest's config blob: the store's summary keys (format, architecture, parameters,
/// file type, quantization, context length, tensor types, GGUF `general.*`), the weights'
/// file names and where the model came from.
fn model_config(
    store: &Store,
    layers: &[Descriptor],
    small: &[(HubFile, Vec<u8>, String)],
    weights: Vec<String>,
    source: Value,
) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    if let Some(g) = layers.iter().find(|d| d.media_type == media::GGUF) {
        let path = store.blob_path(&g.digest);
        // Opening validates every header field and tensor range of the stored bytes.
        let file = gguf::GgufFile::open(&path)
            .with_context(|| format!("{} is not a valid GGUF file", g.what()))?;
        m = store::gguf_summary(&file);
    } else {
        let cfg: Value = small
            .iter()
            .find(|(f, _, _)| f.name() == "config.json")
            .and_then(|(_, b, _)| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let s = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
        let arch = cfg
            .get("architectures")
            .and_then(|a| a.get(0))
            .cloned()
            .unwrap_or_else(|| s("model_type"));
        let format = if layers.iter().any(|d| d.media_type == media::SAFETENSORS) {
            "safetensors"
        } else {
            "files"
        };
        m.insert("format".into(), json!(format));
        m.insert("architecture".into(), arch);
        m.insert("context_length".into(), s("max_position_embeddings"));
        m.insert("model_type".into(), s("model_type"));
    }
    m.insert("weights".into(), json!(weights));
    m.insert("source".into(), source);
    Ok(m)
}

fn commit(
    store: &Store,
    name: &ModelRef,
    config: Map<String, Value>,
    mut layers: Vec<Descriptor>,
    provenance: &str,
) -> Result<()> {
    layers.sort_by(|a, b| {
        (store::layer_rank(&a.media_type), a.title())
            .cmp(&(store::layer_rank(&b.media_type), b.title()))
    });
    let bytes = serde_json::to_vec_pretty(&Value::Object(config))?;
    let (cd, cs) = store.add_blob_from_bytes(&bytes)?;
    let manifest = Manifest::new(Descriptor::new(media::MODEL_CONFIG, cd, cs), layers);
    let digest = store.commit(name, &manifest, provenance)?;
    println!(
        "pulled {provenance} as {name}: {} files, {}, manifest {digest}",
        manifest.layers.len(),
        remote::progress::format_bytes(manifest.total_size())
    );
    Ok(())
}

fn is_small_layer(d: &Descriptor) -> bool {
    [
        media::MODEL_CARD,
        media::LICENSE,
        media::NOTICE,
        media::USE_POLICY,
        media::CONFIG_JSON,
    ]
    .contains(&d.media_type.as_str())
        && d.size <= SMALL_BLOB_LIMIT
}

fn blob_ref(d: &Descriptor) -> BlobRef {
    BlobRef {
        sha256: d.digest.hex(),
        size: d.size,
        media_type: d.media_type.clone(),
    }
}

fn pull_oci(store: &Store, args: &PullArgs, opts: ClientOptions) -> Result<()> {
    let r = OciRef::parse(&args.source)?;
    let say = Say(args.quiet);
    let client = OciClient::new(
        &r,
        args.plain_http,
        remote::oci::credentials_from_env(),
        opts,
    )?;

    // (1) Manifest, config and small layers, into memory.
    let (bytes, sha) = client.get_manifest()?;
    let manifest = Manifest::from_bytes(&bytes)
        .with_context(|| format!("{r} is not a freehold model artifact"))?;
    let canonical = manifest.to_canonical_bytes() == bytes;
    say.line(format_args!(
        "pulling {r} (manifest sha256:{sha}): {} layers, {}",
        manifest.layers.len(),
        remote::progress::format_bytes(manifest.total_size())
    ));
    let config_bytes = client.fetch_blob_small(&blob_ref(&manifest.config), "config", 1 << 20)?;
    let mut small: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    for d in manifest.layers.iter().filter(|d| is_small_layer(d)) {
        let b = client.fetch_blob_small(&blob_ref(d), &d.what(), SMALL_BLOB_LIMIT)?;
        small.push((d.clone(), b));
    }
    let meta = PullMetadata {
        source: r.to_string(),
        pinned: format!("sha256:{sha}"),
        files: manifest
            .layers
            .iter()
            .map(|d| (d.what(), d.size, d.media_type.clone()))
            .collect(),
        small_files: small.iter().map(|(d, b)| (d.what(), b.clone())).collect(),
    };

    // (2) Policy.
    say.line(meta.describe());
    pre_pull_check(&meta)?;

    // (3) Everything else, then the manifest.
    let (cd, _) = store.add_blob_from_bytes(&config_bytes)?;
    if cd != manifest.config.digest {
        bail!("{r}: config blob hashed differently in the store");
    }
    for (d, b) in &small {
        if store.add_blob_from_bytes(b)?.0 != d.digest {
            bail!("{r}: {} hashed differently in the store", d.what());
        }
    }
    for d in manifest.layers.iter().filter(|d| !is_small_layer(d)) {
        fetch_into_store(store, &d.digest, &say, &d.what(), |dest| {
            client.download_blob(&blob_ref(d), &d.what(), dest)
        })?;
    }
    let name = match &args.name {
        Some(n) => ModelRef::parse(n)?,
        None => {
            let last = r.repo.rsplit('/').next().unwrap_or(&r.repo);
            let tag = match &r.reference {
                Reference::Tag(t) => t.as_str(),
                Reference::Digest(_) => store::DEFAULT_TAG,
            };
            ModelRef::new(last, tag).with_context(|| {
                format!("{r} does not make a valid model name: give one with --name")
            })?
        }
    };
    let stored_config: Value = serde_json::from_slice(&config_bytes).unwrap_or(Value::Null);
    if let Value::Object(config) = &stored_config {
        post_download_check(&meta, config)?;
    }
    let provenance = format!("{r}");
    let digest = store.commit(&name, &manifest, &provenance)?;
    if !canonical {
        say.line(format_args!(
            "note: the registry's manifest (sha256:{sha}) is not in freehold's canonical form; stored as {digest}"
        ));
    }
    println!(
        "pulled {provenance} as {name}: {} files, {}, manifest {digest}",
        manifest.layers.len(),
        remote::progress::format_bytes(manifest.total_size())
    );
    Ok(())
}

/// `freehold push`.
pub fn push(args: PushArgs) -> Result<()> {
    let store = open_store()?;
    if store.offline() {
        return Err(RemoteError::Offline {
            what: format!("pushing to {}", args.dest),
        }
        .into());
    }
    let model = ModelRef::parse(&args.model)?;
    let r = OciRef::parse(&args.dest)?;
    let Reference::Tag(tag) = &r.reference else {
        bail!("push to a tag (oci://HOST/REPO:TAG), not a digest: the digest follows from the content");
    };
    let (mdigest, manifest) = store.manifest(&model)?;
    // The exact stored bytes, so the registry's digest is the store's.
    let mbytes = store.read_blob(&mdigest, store::MAX_MANIFEST_BYTES as u64, "manifest")?;
    let say = Say(args.quiet);
    let client = OciClient::new(
        &r,
        args.plain_http,
        remote::oci::credentials_from_env(),
        client_options(false, args.quiet, 1),
    )?;
    client.ping()?;
    let mut uploaded = 0usize;
    for d in manifest.blobs() {
        let path = store.blob_path(&d.digest);
        match store.blob_size(&d.digest) {
            Some(n) if n == d.size => {}
            Some(n) => bail!(
                "{} of {model} is {n} bytes in the store, the manifest says {}: run `freehold verify`",
                d.what(),
                d.size
            ),
            None => bail!("{} of {model} is missing from the store: run `freehold verify`", d.what()),
        }
        // The registry re-hashes every upload and refuses a mismatch, so a corrupt local blob
        // cannot be published under its digest.
        if client.push_blob(&d.digest.hex(), &path)? {
            uploaded += 1;
            say.line(format_args!(
                "  {}: {} uploaded",
                d.what(),
                remote::progress::format_bytes(d.size)
            ));
        } else {
            say.line(format_args!("  {}: already in the registry", d.what()));
        }
    }
    let pushed = client.put_manifest(tag, &mbytes)?;
    if pushed != mdigest.hex() {
        bail!("the registry stored the manifest as sha256:{pushed}, expected {mdigest}");
    }
    println!(
        "pushed {model} to {r}: {} blobs ({uploaded} uploaded), manifest {mdigest}",
        manifest.layers.len() + 1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_store_import() {
        assert_eq!(media_type_of("m-Q4_K_M.gguf"), media::GGUF);
        assert_eq!(media_type_of("README.md"), media::MODEL_CARD);
        assert_eq!(media_type_of("LICENSE.txt"), media::LICENSE);
        assert_eq!(media_type_of("USE_POLICY.md"), media::USE_POLICY);
        assert_eq!(media_type_of("NOTICE"), media::NOTICE);
        assert_eq!(media_type_of("tokenizer.model"), media::FILE);
        assert_eq!(media_type_of("generation_config.json"), media::PARAMS);
        assert!(store::layer_rank(media::GGUF) < store::layer_rank(media::LICENSE));
    }

    #[test]
    fn metadata_views() {
        let m = PullMetadata {
            source: "hf://o/r@main".into(),
            pinned: "c".into(),
            files: vec![],
            small_files: vec![
                ("README.md".into(), b"---\nlicense: mit\n---\n".to_vec()),
                ("LICENSE".into(), b"MIT".to_vec()),
                ("config.json".into(), b"{}".to_vec()),
            ],
        };
        assert!(m.model_card().unwrap().contains("license: mit"));
        assert_eq!(m.license_texts(), vec![("LICENSE".into(), "MIT".into())]);
        assert!(pre_pull_check(&m).is_ok());
    }
}
