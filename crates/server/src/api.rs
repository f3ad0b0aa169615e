//! The OpenAI endpoints: request validation (every field's type and range checked, errors
//! naming the field), chat rendering and tokenization, submission to the model's scheduler,
//! and the JSON or server-sent-events answer.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use engine::SamplingParams;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokenizer::chat::RenderRequest;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::models::{Lease, LoadedModel};
use crate::scheduler::{Event, Finish, GenParams, Job, TokenLogprob};
use crate::{AppState, SelfObserved};

/// The response header that carries adjustments made to a request (e.g. `max_tokens`
/// clamped to the context); non-streaming bodies also carry it as a `warning` field.
pub const WARNING_HEADER: &str = "x-freehold-warning";

/// What the audit line of a request reports, attached to its response.
#[derive(Clone, Debug, Default)]
pub struct AuditInfo {
    /// The model id requested.
    pub model: String,
    /// Prompt tokens (all prompts).
    pub prompt_tokens: usize,
    /// Generated tokens (all choices).
    pub completion_tokens: usize,
    /// The error message, when the request failed.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Chat => "/v1/chat/completions",
            Kind::Completion => "/v1/completions",
        }
    }
}

/// A JSON object with typed, range-checked accessors whose errors name the field.
struct Obj<'a>(&'a Map<String, Value>);

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(name: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid_code(
        name,
        "invalid_type",
        format!(
            "Invalid type for '{name}': expected {want}, but got {}.",
            type_name(got)
        ),
    )
}

impl<'a> Obj<'a> {
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn number(&self, k: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let x = v.as_f64().ok_or_else(|| wrong_type(k, "a number", v))?;
        if !(lo..=hi).contains(&x) {
            return Err(ApiError::invalid_code(
                k,
                "invalid_value",
                format!("'{k}' must be between {lo} and {hi}, got {x}."),
            ));
        }
        Ok(Some(x))
    }

    fn integer(&self, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let x = v
            .as_i64()
            .or_else(|| v.as_u64().map(|u| u.min(i64::MAX as u64) as i64))
            .ok_or_else(|| wrong_type(k, "an integer", v))?;
        if !(lo..=hi).contains(&x) {
            return Err(ApiError::invalid_code(
                k,
                "invalid_value",
                format!("'{k}' must be between {lo} and {hi}, got {x}."),
            ));
        }
        Ok(Some(x))
    }

    fn boolean(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong_type(k, "a boolean", v)),
        }
    }

    fn string(&self, k: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(k, "a string", v)),
        }
    }
}

/// Settings common to both endpoints.
struct Common {
    model: String,
    stream: bool,
    include_usage: bool,
    /// (value, the field it came from)
    max_tokens: Option<(usize, &'static str)>,
    sampling: SamplingParams,
    seed_given: bool,
    stop: Vec<String>,
    n: usize,
    logprobs: Option<usize>,
    user: Option<String>,
}

fn parse_common(o: &Obj<'_>, kind: Kind, max_n: usize) -> Result<Common, ApiError> {
    let model = match o.get("model") {
        None => {
            return Err(ApiError::invalid(
                Some("model".to_string()),
                "you must provide a model parameter",
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(wrong_type("model", "a string", v)),
    };
    let stream = o.boolean("stream")?.unwrap_or(false);
    let include_usage = match o.get("stream_options") {
        None => false,
        Some(Value::Object(m)) => {
            if !stream {
                return Err(ApiError::invalid(
                    Some("stream_options".to_string()),
                    "'stream_options' is only allowed when 'stream' is true.",
                ));
            }
            Obj(m).boolean("include_usage")?.unwrap_or(false)
        }
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    let mut max_tokens = None;
    for k in ["max_tokens", "max_completion_tokens"] {
        if kind == Kind::Completion && k == "max_completion_tokens" {
            continue;
        }
        if let Some(x) = o.integer(k, 1, i64::MAX)? {
            let k: &'static str = if k == "max_tokens" {
                "max_tokens"
            } else {
                "max_completion_tokens"
            };
            // max_completion_tokens supersedes the deprecated max_tokens when both are given.
            if max_tokens.is_none() || k == "max_completion_tokens" {
                max_tokens = Some((x as usize, k));
            }
        }
    }
    if kind == Kind::Completion && max_tokens.is_none() {
        // OpenAI's legacy completions default.
        max_tokens = Some((16, "max_tokens"));
    }
    let temperature = o.number("temperature", 0.0, 2.0)?.unwrap_or(1.0) as f32;
    let top_p = o.number("top_p", 0.0, 1.0)?.unwrap_or(1.0) as f32;
    let presence = o.number("presence_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32;
    let frequency = o.number("frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32;
    let seed = o.integer("seed", i64::MIN, i64::MAX)?;
    let n = o.integer("n", 1, max_n as i64)?.unwrap_or(1) as usize;
    let stop = match o.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > 4 {
                return Err(ApiError::invalid_code(
                    "stop",
                    "invalid_value",
                    format!("'stop' may hold at most 4 sequences, got {}.", a.len()),
                ));
            }
            a.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| wrong_type("stop", "a string or an array of strings", s))
                })
                .collect::<Result<_, _>>()?
        }
        Some(v) => return Err(wrong_type("stop", "a string or an array of strings", v)),
    };
    let logprobs = match kind {
        Kind::Chat => {
            let on = o.boolean("logprobs")?.unwrap_or(false);
            let top = o.integer("top_logprobs", 0, 20)?;
            if top.is_some() && !on {
                return Err(ApiError::invalid(
                    Some("top_logprobs".to_string()),
                    "'top_logprobs' requires 'logprobs' to be true.",
                ));
            }
            on.then_some(top.unwrap_or(0) as usize)
        }
        Kind::Completion => o.integer("logprobs", 0, 5)?.map(|x| x as usize),
    };
    let user = o.string("user")?.map(str::to_string);
    if user.as_ref().is_some_and(|u| u.len() > 256) {
        return Err(ApiError::invalid_code(
            "user",
            "invalid_value",
            "'user' must be at most 256 characters.",
        ));
    }
    for unsupported in ["tools", "functions", "tool_choice", "function_call"] {
        if o.get(unsupported).is_some() {
            return Err(ApiError::invalid_code(
                unsupported,
                "unsupported_parameter",
                format!("'{unsupported}' is not supported by this server."),
            ));
        }
    }
    if let Some(rf) = o.get("response_format") {
        if rf.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid_code(
                "response_format",
                "unsupported_parameter",
                "only 'response_format' {\"type\": \"text\"} is supported by this server.",
            ));
        }
    }
    if kind == Kind::Completion {
        if o.boolean("echo")? == Some(true) {
            return Err(ApiError::invalid_code(
                "echo",
                "unsupported_parameter",
                "'echo' is not supported by this server.",
            ));
        }
        if o.get("suffix").is_some() {
            return Err(ApiError::invalid_code(
                "suffix",
                "unsupported_parameter",
                "'suffix' is not supported by this server.",
            ));
        }
        // Only the default: one sequence generated per choice.
        o.integer("best_of", 1, 1)?;
    }
    let seed_given = seed.is_some();
    let seed = seed.map(|s| s as u64).unwrap_or_else(random_u64);
    Ok(Common {
        model,
        stream,
        include_usage,
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_k: 0,
            top_p,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: usize::MAX,
            presence_penalty: presence,
            frequency_penalty: frequency,
            seed,
        },
        seed_given,
        stop,
        n,
        logprobs,
        user,
    })
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = Sha256::digest(format!("{t}:{c}:{}", std::process::id()));
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:08x}", random_u64(), random_u64() as u32)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn read_body(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let limit = st.cfg.max_body_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(ApiError::too_large(limit));
        }
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .map(|s| s.to_string().contains("length limit"))
            .unwrap_or(false)
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid(None, format!("reading the request body: {e}"))
        }
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            None,
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(ApiError::invalid(
            None,
            format!(
                "The request body must be a JSON object, got {}.",
                type_name(&v)
            ),
        ));
    }
    Ok(v)
}

/// Chat messages as the template expects them: `{role, content}` with content flattened to
/// text; refuses what a text model cannot take.
fn chat_messages(v: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let param = || Some("messages".to_string());
    let arr = match v {
        None => {
            return Err(ApiError::invalid(
                param(),
                "Missing required parameter: 'messages'.",
            ))
        }
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong_type("messages", "an array", v)),
    };
    if arr.is_empty() {
        return Err(ApiError::invalid(
            param(),
            "'messages' must hold at least one message.",
        ));
    }
    let mut out = Vec::with_capacity(arr.len());
    for (i, m) in arr.iter().enumerate() {
        let p = format!("messages[{i}]");
        let Value::Object(m) = m else {
            return Err(wrong_type(&p, "an object", m));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.as_str(),
            Some(v) => return Err(wrong_type(&format!("{p}.role"), "a string", v)),
            None => {
                return Err(ApiError::invalid(
                    Some(format!("{p}.role")),
                    format!("Missing required parameter: '{p}.role'."),
                ))
            }
        };
        let role = match role {
            "system" | "user" | "assistant" | "tool" => role,
            // The newer name of the system role; the model's template knows only "system".
            "developer" => "system",
            other => {
                return Err(ApiError::invalid_code(
                    &format!("{p}.role"),
                    "invalid_value",
                    format!("'{p}.role' must be one of system, developer, user, assistant, tool; got {other:?}."),
                ))
            }
        };
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for (j, part) in parts.iter().enumerate() {
                    let pp = format!("{p}.content[{j}]");
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => match part.get("text") {
                            Some(Value::String(t)) => s.push_str(t),
                            Some(v) => return Err(wrong_type(&format!("{pp}.text"), "a string", v)),
                            None => {
                                return Err(ApiError::invalid(
                                    Some(format!("{pp}.text")),
                                    format!("Missing required parameter: '{pp}.text'."),
                                ))
                            }
                        },
                        Some(t) => {
                            return Err(ApiError::invalid_code(
                                &pp,
                                "unsupported_content",
                                format!("content parts of type {t:?} are not supported: this server serves text models."),
                            ))
                        }
                        None => return Err(ApiError::invalid(Some(pp.clone()), format!("'{pp}' needs a \"type\"."))),
                    }
                }
                s
            }
            Some(v) => {
                return Err(wrong_type(
                    &format!("{p}.content"),
                    "a string or an array of content parts",
                    v,
                ))
            }
        };
        out.push(json!({"role": role, "content": content}));
    }
    Ok(out)
}

/// Completion prompts: a string, strings, token ids, or lists of token ids.
enum PromptIn {
    Text(String),
    Ids(Vec<u32>),
}

fn completion_prompts(v: Option<&Value>, n_vocab: usize) -> Result<Vec<PromptIn>, ApiError> {
    let ids = |a: &Vec<Value>, p: &str| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|x| {
                x.as_u64()
                    .filter(|&i| (i as usize) < n_vocab)
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        ApiError::invalid_code(
                            p,
                            "invalid_value",
                            format!("'{p}' holds {x}, which is not a token id below the vocabulary size {n_vocab}."),
                        )
                    })
            })
            .collect()
    };
    match v {
        None => Err(ApiError::invalid(
            Some("prompt".into()),
            "Missing required parameter: 'prompt'.",
        )),
        Some(Value::String(s)) => Ok(vec![PromptIn::Text(s.clone())]),
        Some(Value::Array(a)) if a.is_empty() => Err(ApiError::invalid(
            Some("prompt".into()),
            "'prompt' must not be an empty array.",
        )),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(a
            .iter()
            .map(|s| PromptIn::Text(s.as_str().unwrap_or_default().to_string()))
            .collect()),
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => {
            Ok(vec![PromptIn::Ids(ids(a, "prompt")?)])
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_array) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                Ok(PromptIn::Ids(ids(
                    x.as_array().expect("checked"),
                    &format!("prompt[{i}]"),
                )?))
            })
            .collect(),
        Some(v) => Err(wrong_type(
            "prompt",
            "a string, an array of strings, or an array of token ids",
            v,
        )),
    }
}

/// Tokenizes a rendered prompt with special-token parsing, adding BOS only if the text does
/// not already start with it (a template's `{{ bos_token }}` is not doubled).
fn encode_prompt(model: &engine::Model, text: &str) -> Vec<u32> {
    let tok = &model.tokenizer;
    let bos_text = tok
        .bos_id()
        .map(|b| String::from_utf8_lossy(&tok.token_to_piece(b, true)).into_owned());
    let has_bos = bos_text.is_some_and(|b| !b.is_empty() && text.starts_with(&b));
    tok.encode(text, !has_bos, true)
}

fn render_chat(lm: &LoadedModel, messages: &[Value]) -> Result<String, ApiError> {
    let tok = &lm.model.tokenizer;
    let piece = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(&tok.token_to_piece(i, true)).into_owned())
            .unwrap_or_default()
    };
    let req = RenderRequest {
        messages,
        add_generation_prompt: true,
        bos_token: &piece(tok.bos_id()),
        eos_token: &piece(tok.eos_id()),
        tools: None,
        extra: None,
        now: None,
    };
    lm.template.0.render(&req).map_err(|e| {
        ApiError::invalid_code(
            "messages",
            "invalid_messages",
            format!("the model's chat template refused these messages: {e}"),
        )
    })
}

/// A validated generation request, ready to submit.
struct Prepared {
    kind: Kind,
    common: Common,
    prompts: Vec<Arc<Vec<u32>>>,
    max_tokens: usize,
    warning: Option<String>,
    prompt_text: Option<String>,
}

fn check_lengths(
    kind: Kind,
    lm: &LoadedModel,
    common: &Common,
    prompts: &[Arc<Vec<u32>>],
) -> Result<(usize, Option<String>), ApiError> {
    let param = if kind == Kind::Chat {
        "messages"
    } else {
        "prompt"
    };
    let n_ctx = lm.n_ctx;
    let mut room = usize::MAX;
    for p in prompts {
        if p.is_empty() {
            return Err(ApiError::invalid_code(
                param,
                "invalid_value",
                "the prompt has no tokens",
            ));
        }
        if p.len() >= n_ctx {
            return Err(ApiError::invalid_code(
                param,
                "context_length_exceeded",
                format!(
                    "This model's context is {n_ctx} tokens per sequence, but the prompt is {} tokens{}. Shorten the prompt or start the server with a larger --ctx.",
                    p.len(),
                    if p.len() == n_ctx { ", which leaves no room to generate" } else { "" }
                ),
            ));
        }
        room = room.min(n_ctx - p.len());
    }
    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    Ok(match common.max_tokens {
        None => (room, None),
        Some((m, _)) if m <= room => (m, None),
        Some((m, field)) => (
            room,
            Some(format!(
                "{field} {m} was clamped to {room}: the prompt is {longest} tokens and the context {n_ctx}"
            )),
        ),
    })
}

async fn prepare(
    kind: Kind,
    st: &AppState,
    lease: &Lease,
    body: &Value,
    common: Common,
) -> Result<Prepared, ApiError> {
    let obj = Obj(body.as_object().expect("read_body checked"));
    let lm = lease.model().clone();
    let log_prompts = st.cfg.log_prompts;
    let (prompts, prompt_text) = match kind {
        Kind::Chat => {
            let messages = chat_messages(obj.get("messages"))?;
            // Rendering and tokenizing a large prompt takes a while: off the async workers.
            let (ids, text) = tokio::task::spawn_blocking(move || {
                let text = render_chat(&lm, &messages)?;
                Ok::<_, ApiError>((encode_prompt(&lm.model, &text), text))
            })
            .await
            .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))??;
            (vec![Arc::new(ids)], log_prompts.then_some(text))
        }
        Kind::Completion => {
            let inputs = completion_prompts(obj.get("prompt"), lm.model.hp.n_vocab)?;
            let text = log_prompts.then(|| {
                inputs
                    .iter()
                    .map(|p| match p {
                        PromptIn::Text(t) => t.clone(),
                        PromptIn::Ids(ids) => format!("{ids:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            });
            let ids = tokio::task::spawn_blocking(move || {
                inputs
                    .into_iter()
                    .map(|p| {
                        Arc::new(match p {
                            PromptIn::Text(t) => encode_prompt(&lm.model, &t),
                            PromptIn::Ids(ids) => ids,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?;
            (ids, text)
        }
    };
    if prompts.len() * common.n > 4 * st.cfg.max_n {
        return Err(ApiError::invalid_code(
            "n",
            "invalid_value",
            format!(
                "{} prompts x n={} is more than the {} sequences one request may ask for.",
                prompts.len(),
                common.n,
                4 * st.cfg.max_n
            ),
        ));
    }
    let (max_tokens, warning) = check_lengths(kind, lease.model(), &common, &prompts)?;
    Ok(Prepared {
        kind,
        common,
        prompts,
        max_tokens,
        warning,
        prompt_text,
    })
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    generate(Kind::Chat, st, caller, headers, body).await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    generate(Kind::Completion, st, caller, headers, body).await
}

fn fail(e: ApiError, model: &str) -> Response {
    let mut r = e.clone().into_response();
    r.extensions_mut().insert(AuditInfo {
        model: model.to_string(),
        error: Some(e.message),
        ..Default::default()
    });
    r
}

async fn generate(
    kind: Kind,
    st: Arc<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let t0 = Instant::now();
    if st.draining.load(Ordering::SeqCst) {
        return fail(ApiError::unavailable("the server is shutting down"), "");
    }
    let body = match read_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(e) => return fail(e, ""),
    };
    let obj = Obj(body.as_object().expect("read_body checked"));
    let common = match parse_common(&obj, kind, st.cfg.max_n) {
        Ok(c) => c,
        Err(e) => {
            let model = obj.string("model").ok().flatten().unwrap_or("");
            return fail(e, model);
        }
    };
    let model_id = common.model.clone();
    let lease = match st.models.get(&common.model).await {
        Ok(l) => l,
        Err(e) => return fail(e, &model_id),
    };
    if let Err(e) = st.auth.admit(&caller) {
        return fail(e, &model_id);
    }
    let prep = match prepare(kind, &st, &lease, &body, common).await {
        Ok(p) => p,
        Err(e) => return fail(e, &model_id),
    };
    let (tx, rx) = unbounded_channel();
    let n = prep.common.n;
    let mut index = 0;
    for prompt in &prep.prompts {
        for _ in 0..n {
            let mut sampling = prep.common.sampling.clone();
            // Each choice draws its own numbers; a given seed still reproduces all of them.
            sampling.seed = sampling.seed.wrapping_add(index as u64);
            let job = Job {
                index,
                prompt: prompt.clone(),
                params: GenParams {
                    max_tokens: prep.max_tokens,
                    stop: prep.common.stop.clone(),
                    sampling,
                    logprobs: prep.common.logprobs,
                    no_prefix_cache: prep.common.seed_given,
                },
                tx: tx.clone(),
                arrived: t0,
            };
            if !lease.model().submit(job) {
                return fail(
                    ApiError::unavailable(format!("model {model_id} is being unloaded; retry")),
                    &model_id,
                );
            }
            index += 1;
        }
    }
    drop(tx);
    let ctx = Ctx {
        st: st.clone(),
        caller,
        model_id: lease.model().id.clone(),
        lease,
        kind,
        id: new_id(if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        }),
        created: unix_now(),
        t0,
        total: index,
        prompt_tokens: prep.prompts.iter().map(|p| p.len()).sum(),
        warning: prep.warning.clone(),
        user: prep.common.user.clone(),
        seed_given: prep.common.seed_given,
        prompt_text: prep.prompt_text.clone(),
        completion_tokens: 0,
        cached_tokens: 0,
        completion_text: String::new(),
        recorded: false,
    };
    if prep.common.stream {
        stream_response(ctx, rx, prep)
    } else {
        collect_response(ctx, rx, prep).await
    }
}

/// Per-request state shared by the JSON and streaming paths; records metrics, quota and the
/// audit line exactly once (a stream dropped by its client records status 499).
struct Ctx {
    st: Arc<AppState>,
    caller: Caller,
    model_id: String,
    #[allow(dead_code)] // held so the model is not evicted while the request runs
    lease: Lease,
    kind: Kind,
    id: String,
    created: u64,
    t0: Instant,
    total: usize,
    prompt_tokens: usize,
    warning: Option<String>,
    user: Option<String>,
    seed_given: bool,
    prompt_text: Option<String>,
    completion_tokens: usize,
    cached_tokens: usize,
    completion_text: String,
    recorded: bool,
}

impl Ctx {
    fn record(&mut self, status: u16, error: Option<&str>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let secs = self.t0.elapsed().as_secs_f64();
        self.st.metrics.request(self.kind.endpoint(), status, secs);
        self.st.auth.spend(
            &self.caller,
            (self.prompt_tokens + self.completion_tokens) as u64,
        );
        let log_prompts = self.st.cfg.log_prompts;
        tracing::info!(
            target: "audit",
            key_id = %self.caller.key_id,
            endpoint = self.kind.endpoint(),
            request_id = %self.id,
            model = %self.model_id,
            user = self.user.as_deref().unwrap_or(""),
            prompt_tokens = self.prompt_tokens,
            cached_tokens = self.cached_tokens,
            completion_tokens = self.completion_tokens,
            choices = self.total,
            seeded = self.seed_given,
            status,
            seconds = secs,
            error = error.unwrap_or(""),
            prompt = if log_prompts { self.prompt_text.as_deref().unwrap_or("") } else { "" },
            completion = if log_prompts { self.completion_text.as_str() } else { "" },
            "request"
        );
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }

    fn finish_response(&mut self, mut r: Response) -> Response {
        if let Some(w) = &self.warning {
            if let Ok(v) = HeaderValue::from_str(w) {
                r.headers_mut().insert(WARNING_HEADER, v);
            }
        }
        r.extensions_mut().insert(SelfObserved);
        r
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Only reached unrecorded when a client went away mid-stream.
        self.record(499, Some("client closed the connection"));
    }
}

#[derive(Default)]
struct Choice {
    text: String,
    logprobs: Vec<TokenLogprob>,
    finish: Option<Finish>,
}

fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|l| {
            json!({
                "token": l.token,
                "logprob": l.logprob,
                "bytes": l.bytes,
                "top_logprobs": l.top.iter().map(|(t, b, lp)| json!({"token": t, "logprob": lp, "bytes": b})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"content": content, "refusal": null})
}

fn completion_logprobs(lps: &[TokenLogprob], mut offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(lps.len());
    for l in lps {
        text_offset.push(offset);
        offset += l.token.len();
    }
    json!({
        "tokens": lps.iter().map(|l| l.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|l| {
            let mut m = Map::new();
            for (t, _, lp) in &l.top {
                m.entry(t.clone()).or_insert(json!(lp));
            }
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

async fn collect_response(
    mut ctx: Ctx,
    mut rx: UnboundedReceiver<(usize, Event)>,
    prep: Prepared,
) -> Response {
    let mut choices: Vec<Choice> = (0..ctx.total).map(|_| Choice::default()).collect();
    let mut done = 0;
    while done < ctx.total {
        let Some((i, ev)) = rx.recv().await else {
            let e = ApiError::internal("the model's scheduler stopped before finishing");
            ctx.record(500, Some(&e.message));
            return fail(e, &ctx.model_id);
        };
        match ev {
            Event::Text { text, logprobs } => {
                choices[i].text.push_str(&text);
                choices[i].logprobs.extend(logprobs);
            }
            Event::Done {
                finish,
                cached_tokens,
                completion_tokens,
                ..
            } => {
                choices[i].finish = Some(finish);
                ctx.completion_tokens += completion_tokens;
                ctx.cached_tokens += cached_tokens;
                done += 1;
            }
            Event::Error(msg) => {
                let e = ApiError::internal(format!("the engine failed: {msg}"));
                ctx.record(500, Some(&e.message));
                return fail(e, &ctx.model_id);
            }
        }
    }
    if prep.common.n > 1 {
        // Prompt tokens are billed once per prompt, not once per choice, as OpenAI does.
        ctx.cached_tokens /= prep.common.n;
    }
    let want_lp = prep.common.logprobs.is_some();
    let out_choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let finish = c.finish.map(Finish::as_str);
            match ctx.kind {
                Kind::Chat => json!({
                    "index": i,
                    "message": {"role": "assistant", "content": c.text, "refusal": null},
                    "logprobs": if want_lp { chat_logprobs(&c.logprobs) } else { Value::Null },
                    "finish_reason": finish,
                }),
                Kind::Completion => json!({
                    "index": i,
                    "text": c.text,
                    "logprobs": if want_lp { completion_logprobs(&c.logprobs, 0) } else { Value::Null },
                    "finish_reason": finish,
                }),
            }
        })
        .collect();
    ctx.completion_text = choices
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let mut body = json!({
        "id": ctx.id,
        "object": if ctx.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
        "created": ctx.created,
        "model": ctx.model_id,
        "system_fingerprint": fingerprint(),
        "choices": out_choices,
        "usage": ctx.usage(),
    });
    if let Some(w) = &ctx.warning {
        body["warning"] = json!(w);
    }
    ctx.record(200, None);
    let r = Json(body).into_response();
    ctx.finish_response(r)
}

fn fingerprint() -> String {
    format!("freehold-{}", env!("CARGO_PKG_VERSION"))
}

/// State of a server-sent-events answer.
struct StreamState {
    ctx: Ctx,
    rx: UnboundedReceiver<(usize, Event)>,
    include_usage: bool,
    want_lp: bool,
    n: usize,
    started: Vec<bool>,
    offsets: Vec<usize>,
    done: usize,
    finished: bool,
}

impl StreamState {
    fn chunk(&self, choices: Vec<Value>) -> SseEvent {
        let c = &self.ctx;
        let mut v = json!({
            "id": c.id,
            "object": if c.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": c.created,
            "model": c.model_id,
            "system_fingerprint": fingerprint(),
            "choices": choices,
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        SseEvent::default().data(v.to_string())
    }

    fn text_chunk(&mut self, i: usize, text: String, lps: &[TokenLogprob]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        match self.ctx.kind {
            Kind::Chat => {
                if !self.started[i] {
                    self.started[i] = true;
                    out.push(self.chunk(vec![json!({
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": null,
                        "finish_reason": null,
                    })]));
                }
                if !text.is_empty() || !lps.is_empty() {
                    out.push(self.chunk(vec![json!({
                        "index": i,
                        "delta": {"content": text},
                        "logprobs": if self.want_lp { chat_logprobs(lps) } else { Value::Null },
                        "finish_reason": null,
                    })]));
                }
            }
            Kind::Completion => {
                if !text.is_empty() || !lps.is_empty() {
                    let lp = if self.want_lp {
                        completion_logprobs(lps, self.offsets[i])
                    } else {
                        Value::Null
                    };
                    self.offsets[i] += lps.iter().map(|l| l.token.len()).sum::<usize>();
                    out.push(self.chunk(vec![json!({
                        "index": i, "text": text, "logprobs": lp, "finish_reason": null,
                    })]));
                }
            }
        }
        if self.ctx.st.cfg.log_prompts {
            self.ctx.completion_text.push_str(&text);
        }
        out
    }

    fn finish_chunk(&mut self, i: usize, f: Finish) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.ctx.kind == Kind::Chat && !self.started[i] {
            out.extend(self.text_chunk(i, String::new(), &[]));
        }
        out.push(self.chunk(vec![match self.ctx.kind {
            Kind::Chat => {
                json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": f.as_str()})
            }
            Kind::Completion => {
                json!({"index": i, "text": "", "logprobs": null, "finish_reason": f.as_str()})
            }
        }]));
        out
    }

    async fn next_events(&mut self) -> Option<Vec<SseEvent>> {
        if self.finished {
            return None;
        }
        if self.done == self.ctx.total {
            self.finished = true;
            let mut out = Vec::new();
            if self.include_usage {
                if self.n > 1 {
                    self.ctx.cached_tokens /= self.n;
                }
                let c = &self.ctx;
                let v = json!({
                    "id": c.id,
                    "object": if c.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
                    "created": c.created,
                    "model": c.model_id,
                    "system_fingerprint": fingerprint(),
                    "choices": [],
                    "usage": c.usage(),
                });
                out.push(SseEvent::default().data(v.to_string()));
            }
            out.push(SseEvent::default().data("[DONE]"));
            self.ctx.record(200, None);
            return Some(out);
        }
        match self.rx.recv().await {
            None => {
                self.finished = true;
                let e = ApiError::internal("the model's scheduler stopped before finishing");
                self.ctx.record(500, Some(&e.message));
                Some(vec![SseEvent::default().data(e.body().to_string())])
            }
            Some((i, Event::Text { text, logprobs })) => Some(self.text_chunk(i, text, &logprobs)),
            Some((
                i,
                Event::Done {
                    finish,
                    cached_tokens,
                    completion_tokens,
                    ..
                },
            )) => {
                self.ctx.completion_tokens += completion_tokens;
                self.ctx.cached_tokens += cached_tokens;
                self.done += 1;
                Some(self.finish_chunk(i, finish))
            }
            Some((_, Event::Error(msg))) => {
                self.finished = true;
                let e = ApiError::internal(format!("the engine failed: {msg}"));
                self.ctx.record(500, Some(&e.message));
                Some(vec![SseEvent::default().data(e.body().to_string())])
            }
        }
    }
}

fn stream_response(ctx: Ctx, rx: UnboundedReceiver<(usize, Event)>, prep: Prepared) -> Response {
    let total = ctx.total;
    let state = StreamState {
        ctx,
        rx,
        include_usage: prep.common.include_usage,
        want_lp: prep.common.logprobs.is_some(),
        n: prep.common.n,
        started: vec![false; total],
        offsets: vec![0; total],
        done: 0,
        finished: false,
    };
    let warning = prep.warning.clone();
    let _ = prep.kind;
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let evs = s.next_events().await?;
        Some((futures_util::stream::iter(evs), s))
    })
    .flatten()
    .map(Ok::<_, Infallible>);
    let mut r = Sse::new(stream).into_response();
    if let Some(w) = warning {
        if let Ok(v) = HeaderValue::from_str(&w) {
            r.headers_mut().insert(WARNING_HEADER, v);
        }
    }
    r.extensions_mut().insert(SelfObserved);
    r
}

fn model_object(id: &str) -> Value {
    // `created` is required by clients' schemas; a local file has no publication date.
    json!({"id": id, "object": "model", "created": 0, "owned_by": "freehold"})
}

/// `GET /v1/models`.
pub async fn list_models(State(st): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = st
        .models
        .specs()
        .iter()
        .map(|s| model_object(&s.id))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}` (ids may contain `/`).
pub async fn get_model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match st.models.find(&id) {
        Some(s) => Json(model_object(&s.id)).into_response(),
        None => fail(ApiError::model_not_found(&id), &id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(v: Value, kind: Kind) -> Result<Common, ApiError> {
        parse_common(&Obj(v.as_object().unwrap()), kind, 16)
    }

    #[test]
    fn fields_are_type_and_range_checked() {
        let e = common(json!({"model": "m", "temperature": "hot"}), Kind::Chat)
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("a number"), "{}", e.message);
        let e = common(json!({"model": "m", "temperature": 3}), Kind::Chat)
            .err()
            .unwrap();
        assert!(e.message.contains("between 0 and 2"));
        let e = common(json!({"model": 5}), Kind::Chat).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = common(json!({"temperature": 1}), Kind::Chat).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = common(
            json!({"model": "m", "stop": ["a", "b", "c", "d", "e"]}),
            Kind::Chat,
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("stop"));
        let e = common(json!({"model": "m", "max_tokens": 0}), Kind::Chat)
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = common(json!({"model": "m", "n": 17}), Kind::Chat)
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = common(json!({"model": "m", "top_logprobs": 2}), Kind::Chat)
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("top_logprobs"));
        let e = common(
            json!({"model": "m", "stream_options": {"include_usage": true}}),
            Kind::Chat,
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("stream_options"));
        let e = common(json!({"model": "m", "tools": []}), Kind::Chat)
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("tools"));
        assert!(common(json!({"model": "m", "echo": true}), Kind::Completion).is_err());
    }

    #[test]
    fn defaults_follow_openai() {
        let c = common(
            json!({"model": "m", "seed": -1, "stop": "x", "temperature": null}),
            Kind::Completion,
        )
        .unwrap();
        assert_eq!(c.max_tokens, Some((16, "max_tokens")));
        assert_eq!(c.sampling.temperature, 1.0);
        assert_eq!(c.sampling.seed, u64::MAX);
        assert_eq!(c.stop, vec!["x".to_string()]);
        let c = common(
            json!({"model": "m", "max_tokens": 5, "max_completion_tokens": 7}),
            Kind::Chat,
        )
        .unwrap();
        assert_eq!(c.max_tokens, Some((7, "max_completion_tokens")));
        let c = common(
            json!({"model": "m", "logprobs": true, "top_logprobs": 3}),
            Kind::Chat,
        )
        .unwrap();
        assert_eq!(c.logprobs, Some(3));
    }

    #[test]
    fn messages_are_checked() {
        assert!(chat_messages(None).is_err());
        assert!(chat_messages(Some(&json!([]))).is_err());
        let e = chat_messages(Some(&json!([{"role": "robot", "content": "x"}])))
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = chat_messages(Some(&json!([{"role": "user", "content": 3}])))
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = chat_messages(Some(
            &json!([{"role": "user", "content": [{"type": "image_url"}]}]),
        ))
        .err()
        .unwrap();
        assert_eq!(e.code, Some("unsupported_content"));
        let m = chat_messages(Some(&json!([{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]))).unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "ab"}));
    }

    #[test]
    fn prompts_are_checked() {
        assert!(completion_prompts(Some(&json!([1, 2, 99])), 50).is_err());
        assert_eq!(
            completion_prompts(Some(&json!([[1], [2, 3]])), 50)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            completion_prompts(Some(&json!(["a", "b"])), 50)
                .unwrap()
                .len(),
            2
        );
        assert!(completion_prompts(Some(&json!([1, "a"])), 50).is_err());
        assert!(completion_prompts(Some(&json!({})), 50).is_err());
        assert!(completion_prompts(None, 50).is_err());
    }
}
