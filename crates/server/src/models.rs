//! The models a server offers: names resolved to files, loaded on first request with one
//! scheduler thread each, kept while requests use them, evicted least-recently-used when a new
//! one would exceed the memory budget.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use engine::Model;
use kernels::ThreadPool;
use tokenizer::chat::ChatTemplate;

use crate::error::ApiError;
use crate::metrics::{Metrics, ModelStats};
use crate::scheduler::{kv_bytes_per_slot, Job, Scheduler, SchedulerConfig};

/// A model offered to clients: the `id` they send, the `name` it loads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// What clients put in `model`.
    pub id: String,
    /// A file path or a store name.
    pub name: String,
}

impl ModelSpec {
    /// Parses `--model` values: `ID=NAME`, or `NAME` whose id is the file name without
    /// `.gguf` for a `.gguf` path, the name itself otherwise.
    pub fn parse(arg: &str) -> Result<ModelSpec> {
        if let Some((id, name)) = arg.split_once('=') {
            if id.is_empty() || name.is_empty() {
                bail!("--model {arg:?}: expected ID=NAME with neither empty");
            }
            return Ok(ModelSpec {
                id: id.into(),
                name: name.into(),
            });
        }
        if arg.is_empty() {
            bail!("--model: empty name");
        }
        let p = Path::new(arg);
        let id = if p.extension().is_some_and(|e| e == "gguf") {
            p.file_name()
                .map(|f| f.to_string_lossy().trim_end_matches(".gguf").to_string())
                .unwrap_or_else(|| arg.to_string())
        } else {
            arg.to_string()
        };
        Ok(ModelSpec {
            id,
            name: arg.into(),
        })
    }
}

/// How a model name becomes a weights file, installed by the binary (which knows the store
/// and the licence policy; this crate knows neither).
pub type ModelResolver = dyn Fn(&str) -> Result<PathBuf> + Send + Sync;

static RESOLVER: std::sync::OnceLock<Box<ModelResolver>> = std::sync::OnceLock::new();

/// Installs the resolver every later load goes through (once per process; a second call is
/// ignored so a running server cannot be switched to another policy).
pub fn set_model_resolver(resolver: Box<ModelResolver>) {
    let _ = RESOLVER.set(resolver);
}

/// A model name to its weights file: through the installed resolver (store names, licence
/// policy), else only existing file paths.
pub fn resolve_model_name(name: &str) -> Result<PathBuf> {
    if let Some(r) = RESOLVER.get() {
        return r(name);
    }
    let p = Path::new(name);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    bail!("model {name:?}: no such file")
}

/// Loads a model by name: the one function that turns a name into weights, so the licence
/// policy can be enforced here when the store lands.
pub fn load_model(name: &str) -> Result<Arc<Model>> {
    let path = resolve_model_name(name)?;
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    Ok(Arc::new(model))
}

/// Sizing of every loaded model's scheduler.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Slots per model (`--parallel`).
    pub slots: usize,
    /// Context per slot; `None`: the model's training context capped at 4096.
    pub ctx: Option<usize>,
    /// Engine threads per model.
    pub threads: usize,
    /// Prompt chunk while others decode.
    pub chunk: usize,
    /// Bytes all loaded models (weights + KV) may take together.
    pub memory_budget: u64,
}

/// A loaded model with its scheduler.
pub struct LoadedModel {
    /// The id clients use.
    pub id: String,
    /// The weights and tokenizer (the HTTP side tokenizes; only the scheduler runs it).
    pub model: Arc<Model>,
    /// The chat template, and whether it is a built-in fallback.
    pub template: (ChatTemplate, bool),
    /// Context per slot.
    pub n_ctx: usize,
    /// Weights + KV bytes counted against the budget.
    pub bytes: u64,
    /// Live state for /metrics.
    pub stats: Arc<ModelStats>,
    /// Unix time of loading (OpenAI's `created`).
    pub created: u64,
    tx: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    active: AtomicUsize,
    last_used: Mutex<Instant>,
}

impl LoadedModel {
    /// Hands jobs to the scheduler; false when it has stopped.
    pub fn submit(&self, job: Job) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.as_ref().is_some_and(|t| t.send(job).is_ok())
    }
}

/// A use of a model; the model cannot be evicted while one exists.
pub struct Lease(Arc<LoadedModel>);

impl Lease {
    /// The model.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        *self.0.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// The models on offer and those loaded.
pub struct Models {
    specs: Vec<ModelSpec>,
    cfg: ModelConfig,
    metrics: Arc<Metrics>,
    loaded: Mutex<HashMap<String, Arc<LoadedModel>>>,
    /// One load at a time: two requests for a cold model load it once.
    load_lock: tokio::sync::Mutex<()>,
}

impl Models {
    /// Offers `specs`; loads nothing yet.
    pub fn new(specs: Vec<ModelSpec>, cfg: ModelConfig, metrics: Arc<Metrics>) -> Models {
        Models {
            specs,
            cfg,
            metrics,
            loaded: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The models on offer.
    pub fn specs(&self) -> &[ModelSpec] {
        &self.specs
    }

    /// The spec a client's `model` value names (its id, or the name it was given as).
    pub fn find(&self, requested: &str) -> Option<&ModelSpec> {
        self.specs
            .iter()
            .find(|s| s.id == requested)
            .or_else(|| self.specs.iter().find(|s| s.name == requested))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LoadedModel>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loaded models with their memory and live state, for /metrics.
    pub fn loaded(&self) -> Vec<(String, u64, Arc<ModelStats>)> {
        let mut v: Vec<_> = self
            .map()
            .values()
            .map(|m| (m.id.clone(), m.bytes, m.stats.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn lease(m: &Arc<LoadedModel>) -> Lease {
        m.active.fetch_add(1, Ordering::AcqRel);
        *m.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Lease(m.clone())
    }

    /// The model a request names, loading it (and evicting idle ones) when needed.
    pub async fn get(&self, requested: &str) -> Result<Lease, ApiError> {
        let spec = self
            .find(requested)
            .ok_or_else(|| ApiError::model_not_found(requested))?
            .clone();
        if let Some(m) = self.map().get(&spec.id) {
            return Ok(Self::lease(m));
        }
        let _guard = self.load_lock.lock().await;
        if let Some(m) = self.map().get(&spec.id) {
            return Ok(Self::lease(m));
        }
        let t0 = Instant::now();
        let name = spec.name.clone();
        let model = tokio::task::spawn_blocking(move || load_model(&name))
            .await
            .map_err(|e| ApiError::internal(format!("loading model {}: {e}", spec.id)))?
            .map_err(|e| {
                tracing::error!(model = %spec.id, error = %format!("{e:#}"), "model failed to load");
                ApiError::internal(format!("model {} failed to load: {e:#}", spec.id))
            })?;
        let n_ctx = self
            .cfg
            .ctx
            .unwrap_or_else(|| model.hp.n_ctx_train.min(4096))
            .max(1);
        let kv_slot = kv_bytes_per_slot(&model, n_ctx);
        let kv = kv_slot * self.cfg.slots;
        let bytes = model.weight_bytes() + kv as u64;
        self.make_room(&spec.id, bytes)?;
        let template = match model.file.get_str("tokenizer.chat_template") {
            Some(src) => (
                ChatTemplate::new(src).map_err(|e| {
                    ApiError::internal(format!("model {}: its chat template: {e}", spec.id))
                })?,
                false,
            ),
            None => (
                ChatTemplate::new(tokenizer::chat::fallback_template_for(model.hp.arch.name()))
                    .map_err(|e| ApiError::internal(format!("built-in template: {e}")))?,
                true,
            ),
        };
        let stats = Arc::new(ModelStats::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let scfg = SchedulerConfig {
            slots: self.cfg.slots,
            n_ctx,
            chunk: self.cfg.chunk,
            idle_chunk: self.cfg.chunk.max(512),
        };
        let pool = Arc::new(ThreadPool::new(self.cfg.threads));
        let sched = Scheduler::new(
            model.clone(),
            spec.id.clone(),
            pool,
            scfg,
            stats.clone(),
            self.metrics.clone(),
        );
        std::thread::Builder::new()
            .name(format!("sched-{}", spec.id))
            .spawn(move || sched.run(rx))
            .map_err(|e| ApiError::internal(format!("starting the scheduler thread: {e}")))?;
        tracing::info!(
            model = %spec.id,
            path = %spec.name,
            weights_mib = model.weight_bytes() as f64 / 1048576.0,
            load_seconds = t0.elapsed().as_secs_f64(),
            "model loaded; KV budget: {} slots x {} tokens = {:.1} MiB (f16)",
            self.cfg.slots,
            n_ctx,
            kv as f64 / 1048576.0
        );
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let lm = Arc::new(LoadedModel {
            id: spec.id.clone(),
            model,
            template,
            n_ctx,
            bytes,
            stats,
            created,
            tx: Mutex::new(Some(tx)),
            active: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        });
        let lease = Self::lease(&lm);
        self.map().insert(spec.id.clone(), lm);
        Ok(lease)
    }

    /// Evicts idle models, least recently used first, until `bytes` more fit in the budget.
    fn make_room(&self, id: &str, bytes: u64) -> Result<(), ApiError> {
        let budget = self.cfg.memory_budget;
        if bytes > budget {
            return Err(ApiError::unavailable(format!(
                "model {id} needs {:.1} MiB (weights + KV) but the model memory budget is {:.1} MiB",
                bytes as f64 / 1048576.0,
                budget as f64 / 1048576.0
            )));
        }
        let mut map = self.map();
        loop {
            let used: u64 = map.values().map(|m| m.bytes).sum();
            if used + bytes <= budget {
                return Ok(());
            }
            let victim = map
                .values()
                .filter(|m| m.active.load(Ordering::Acquire) == 0)
                .min_by_key(|m| *m.last_used.lock().unwrap_or_else(|e| e.into_inner()))
                .map(|m| m.id.clone());
            let Some(v) = victim else {
                return Err(ApiError::unavailable(format!(
                    "model {id} needs {:.1} MiB but {:.1} MiB of the {:.1} MiB budget are held by models in use; retry later",
                    bytes as f64 / 1048576.0,
                    used as f64 / 1048576.0,
                    budget as f64 / 1048576.0
                )));
            };
            if let Some(m) = map.remove(&v) {
                // Closing the channel ends the scheduler thread, which frees the sessions.
                m.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
                tracing::info!(model = %v, freed_mib = m.bytes as f64 / 1048576.0, "model evicted (least recently used)");
            }
        }
    }

    /// Stops every scheduler once their queued sequences finish.
    pub fn shutdown(&self) {
        for m in self.map().values() {
            m.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_ids() {
        let s = ModelSpec::parse("/m/SmolLM2.Q4_1.gguf").unwrap();
        assert_eq!(
            (s.id.as_str(), s.name.as_str()),
            ("SmolLM2.Q4_1", "/m/SmolLM2.Q4_1.gguf")
        );
        let s = ModelSpec::parse("smol=/m/x.gguf").unwrap();
        assert_eq!(s.id, "smol");
        assert_eq!(ModelSpec::parse("org/model").unwrap().id, "org/model");
        assert_eq!(ModelSpec::parse("llama").unwrap().id, "llama");
        assert!(ModelSpec::parse("=x").is_err());
        assert!(ModelSpec::parse("").is_err());
    }

    #[test]
    fn unknown_names_fail_with_the_name() {
        let e = load_model("/nonexistent/x.gguf").err().unwrap().to_string();
        assert!(e.contains("/nonexistent/x.gguf"), "{e}");
    }
}
