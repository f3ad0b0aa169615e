//! Freehold's OpenAI-compatible HTTP server.
//!
//! The HTTP side (axum on tokio) parses and validates requests, renders chat templates,
//! tokenizes, checks keys and limits, and streams results; it never calls the engine. Each
//! loaded model has one scheduler thread ([`scheduler`]) that owns all of that model's
//! sessions and runs continuous batching. The two talk through channels only.

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod models;
pub mod scheduler;
pub mod text;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use auth::{Auth, Caller, Limits};
pub use error::ApiError;
pub use models::{load_model, resolve_model_name, ModelConfig, ModelSpec, Models};

/// Everything `freehold serve` is told.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind (127.0.0.1 unless told otherwise).
    pub host: String,
    /// Port (0: any free port; the chosen one is logged).
    pub port: u16,
    /// Models on offer (`--model`, repeatable).
    pub models: Vec<String>,
    /// API keys file; with `FREEHOLD_API_KEYS`, keys make authentication mandatory.
    pub api_keys_file: Option<PathBuf>,
    /// Sequences decoded together per model.
    pub parallel: usize,
    /// Context per sequence; default the model's, capped at 4096.
    pub ctx: Option<usize>,
    /// Engine threads per model (default: all cores).
    pub threads: Option<usize>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Default per-key limits (a keys file line can override them).
    pub limits: Limits,
    /// Weights + KV of all loaded models together; default half the machine's memory.
    pub model_memory_bytes: Option<u64>,
    /// Prompt tokens evaluated per step while other sequences decode.
    pub prefill_chunk: usize,
    /// Largest `n` accepted.
    pub max_n: usize,
    /// Put prompts and completions in the audit log.
    pub log_prompts: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            models: Vec::new(),
            api_keys_file: None,
            parallel: 4,
            ctx: None,
            threads: None,
            max_body_bytes: 4 << 20,
            limits: Limits::default(),
            model_memory_bytes: None,
            prefill_chunk: 128,
            max_n: 16,
            log_prompts: false,
        }
    }
}

/// Shared by every handler.
pub struct AppState {
    /// The configuration.
    pub cfg: ServerConfig,
    /// Models on offer and loaded.
    pub models: Models,
    /// Keys and limits.
    pub auth: Auth,
    /// Counters and histograms.
    pub metrics: Arc<metrics::Metrics>,
    /// Set on SIGINT/SIGTERM: /ready fails, new generations are refused, in-flight ones finish.
    pub draining: AtomicBool,
}

/// JSON logs to stderr (`FREEHOLD_LOG=debug|info|warn|error`, default info).
pub fn init_logging() {
    let level = std::env::var("FREEHOLD_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Builds the state and router for `cfg` (no socket yet).
pub fn build(cfg: ServerConfig) -> Result<(Arc<AppState>, Router)> {
    if cfg.models.is_empty() {
        bail!("serve needs at least one --model (a GGUF file path or a store name)");
    }
    if cfg.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if cfg.ctx == Some(0) {
        bail!("--ctx must be at least 1");
    }
    if cfg.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let mut specs: Vec<ModelSpec> = Vec::new();
    for m in &cfg.models {
        let s = ModelSpec::parse(m)?;
        if specs.iter().any(|o| o.id == s.id) {
            bail!(
                "--model {m:?}: the id {:?} is given twice (use ID=NAME to tell them apart)",
                s.id
            );
        }
        specs.push(s);
    }
    let env_keys = std::env::var("FREEHOLD_API_KEYS").ok();
    let auth = Auth::load(
        cfg.api_keys_file.as_deref(),
        env_keys.as_deref(),
        cfg.limits,
    )?;
    let threads = cfg.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let budget = cfg
        .model_memory_bytes
        .unwrap_or_else(|| physical_memory().unwrap_or(8 << 30) / 2);
    let metrics = Arc::new(metrics::Metrics::default());
    let models = Models::new(
        specs,
        ModelConfig {
            slots: cfg.parallel,
            ctx: cfg.ctx,
            threads,
            chunk: cfg.prefill_chunk.max(1),
            memory_budget: budget,
        },
        metrics.clone(),
    );
    tracing::info!(
        models = ?models.specs().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        api_keys = auth.len(),
        parallel = cfg.parallel,
        threads,
        model_memory_budget_mib = budget as f64 / 1048576.0,
        "configured"
    );
    let state = Arc::new(AppState {
        cfg,
        models,
        auth,
        metrics,
        draining: AtomicBool::new(false),
    });
    let router = Router::new()
        .route("/v1/chat/completions", post(api::chat_completions))
        .route("/v1/completions", post(api::completions))
        .route("/v1/models", get(api::list_models))
        .route("/v1/models/{*id}", get(api::get_model))
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_handler))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state.clone());
    Ok((state, router))
}

/// Runs the server until SIGINT/SIGTERM, then drains in-flight requests.
pub fn serve(cfg: ServerConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr: SocketAddr = format!("{}:{}", cfg.host, cfg.port)
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&(cfg.host.as_str(), cfg.port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or(())
            })
            .map_err(|_| {
                anyhow::anyhow!("--host {:?}: not an address or a resolvable name", cfg.host)
            })?;
        let (state, router) = build(cfg)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        tracing::info!(addr = %local, "listening");
        let st = state.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                st.draining.store(true, Ordering::SeqCst);
                tracing::info!("shutting down: draining in-flight requests");
            })
            .await
            .context("serving HTTP")?;
        state.models.shutdown();
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Marks a response whose handler records metrics and the audit line itself (streams do,
/// when the stream ends).
#[derive(Clone, Copy)]
pub(crate) struct SelfObserved;

/// Authentication for `/v1/*`, request metrics and the audit line for every other response.
async fn observe(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let path = req.uri().path().to_string();
    let endpoint = endpoint_label(&path);
    let mut caller = None;
    if path.starts_with("/v1/") || path == "/v1" {
        let h = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match st.auth.authenticate(h) {
            Ok(c) => {
                caller = Some(c.clone());
                req.extensions_mut().insert(c);
            }
            Err(e) => {
                let resp = e.clone().into_response();
                st.metrics
                    .request(endpoint, resp.status().as_u16(), t0.elapsed().as_secs_f64());
                tracing::info!(target: "audit", key_id = "unauthenticated", endpoint, status = resp.status().as_u16(), error = %e.message, "request");
                return resp;
            }
        }
    }
    let resp = next.run(req).await;
    if resp.extensions().get::<SelfObserved>().is_none() {
        let status = resp.status().as_u16();
        st.metrics
            .request(endpoint, status, t0.elapsed().as_secs_f64());
        if endpoint != "/metrics" && endpoint != "/health" && endpoint != "/ready" {
            let key_id = caller.as_ref().map(|c| c.key_id.as_str()).unwrap_or("-");
            let model = resp
                .extensions()
                .get::<api::AuditInfo>()
                .cloned()
                .unwrap_or_default();
            tracing::info!(
                target: "audit",
                key_id,
                endpoint,
                model = %model.model,
                prompt_tokens = model.prompt_tokens,
                completion_tokens = model.completion_tokens,
                status,
                seconds = t0.elapsed().as_secs_f64(),
                error = model.error.as_deref().unwrap_or(""),
                "request"
            );
        }
    }
    resp
}

/// A bounded set of endpoint labels, so unknown paths cannot blow up metric cardinality.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        "/openapi.json" => "/openapi.json",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

async fn fallback(req: Request) -> ApiError {
    ApiError::not_found(req.uri().path())
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{} is not allowed on {}", req.method(), req.uri().path()),
        kind: "invalid_request_error",
        param: None,
        code: Some("method_not_allowed"),
    }
}

/// The OpenAPI 3.1 description of this server.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn ready(State(st): State<Arc<AppState>>) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "draining"})),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({"status": "ready"})).into_response()
}

async fn metrics_handler(State(st): State<Arc<AppState>>) -> Response {
    let body = st.metrics.render(&st.models.loaded());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
