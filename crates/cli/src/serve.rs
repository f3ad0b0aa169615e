//! `freehold serve`: the OpenAI-compatible HTTP server (all of it lives in the `server` crate).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to bind; the default accepts local connections only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, logged at startup).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A model to offer: a GGUF path or a store name, optionally `ID=NAME` (repeatable).
    /// Loaded on first request.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// API keys file: one key per line, optionally `rpm=N tpm=N`; FREEHOLD_API_KEYS
    /// (comma-separated) adds keys. With any key configured, requests need one.
    #[arg(long)]
    pub api_keys: Option<PathBuf>,
    /// Sequences decoded together per model (continuous batching slots).
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Context per sequence in tokens (default: the model's, capped at 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Engine threads per model (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body: usize,
    /// Default requests per minute per key (keys file lines may override).
    #[arg(long)]
    pub rate_limit: Option<u64>,
    /// Default tokens (prompt + generated) per minute per key.
    #[arg(long)]
    pub token_quota: Option<u64>,
    /// Memory for loaded models (weights + KV) in MiB; least recently used idle models are
    /// evicted to stay under it (default: half the machine's memory).
    #[arg(long)]
    pub model_memory: Option<u64>,
    /// Prompt tokens evaluated per step while other sequences decode.
    #[arg(long, default_value_t = 128)]
    pub prefill_chunk: usize,
    /// Write prompts and completions into the audit log.
    #[arg(long)]
    pub log_prompts: bool,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    // Under a licence policy every configured model is judged before the server starts (a
    // refusal names the model and the reason), and again at each (re)load.
    for arg in &a.models {
        let spec = server::models::ModelSpec::parse(arg)?;
        crate::license_cmd::enforce_for_load(&spec.name, &format!("serving {}", spec.name))?;
    }
    server::models::set_model_resolver(Box::new(|name: &str| {
        crate::license_cmd::enforce_for_load(name, &format!("serving {name}"))?;
        Ok(store::resolve_model_arg(name)?)
    }));
    server::init_logging();
    server::serve(server::ServerConfig {
        host: a.host,
        port: a.port,
        models: a.models,
        api_keys_file: a.api_keys,
        parallel: a.parallel,
        ctx: a.ctx,
        threads: a.threads,
        max_body_bytes: a.max_body,
        limits: server::Limits {
            rpm: a.rate_limit,
            tpm: a.token_quota,
        },
        model_memory_bytes: a.model_memory.map(|m| m << 20),
        prefill_chunk: a.prefill_chunk,
        log_prompts: a.log_prompts,
        ..server::ServerConfig::default()
    })
}
