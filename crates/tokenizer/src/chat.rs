//! Chat templates: renders a model's `tokenizer.chat_template` (a Jinja2 string from GGUF
//! metadata or `tokenizer_config.json`) the way Hugging Face transformers'
//! `apply_chat_template` does, with minijinja in a Python-compatible setup.
//!
//! Environment (mirrors transformers' `_compile_jinja_template`):
//! - `trim_blocks` and `lstrip_blocks` on, trailing newline dropped, no auto-escaping;
//! - `{% break %}` / `{% continue %}` (jinja2's `loopcontrols` extension) and
//!   `{% generation %}...{% endgeneration %}` (transformers' assistant-mask tag, rendered as
//!   its plain body);
//! - globals `raise_exception(msg)` (fails the render with `msg`, see
//!   [`TemplateError::Raised`]) and `strftime_now(fmt)` (the render's clock, see
//!   [`RenderRequest::now`]);
//! - `tojson` like transformers' (`ensure_ascii=False`, optional `indent`, `separators`,
//!   `sort_keys`, Python's `json.dumps` spacing);
//! - Python `str`/`dict`/`list` methods (`.strip()`, `.split()`, `.items()`, `.get()`, ...)
//!   from `minijinja-contrib`'s pycompat;
//! - printed values look like Python's: `True`/`False`/`None`, dicts and lists as `repr()`;
//! - jinja2's `sequence`/`iterable` tests (true for strings and mappings too), `string` filter
//!   as Python's `str()`.
//!
//! Freehold extension (llama.cpp has it, transformers does not): a `from_json` filter.
//!
//! Rendering never panics on a hostile template: errors carry minijinja's description of the
//! construct with the template line. Loops are bounded by minijinja's fuel (see
//! [`RENDER_FUEL`]), recursion by its recursion limit.

mod pyfmt;
mod strftime;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

pub use strftime::TemplateTime;

/// Fallback ChatML template for models whose metadata has no chat template. This is
/// transformers' historical default (`<|im_start|>role\ncontent<|im_end|>\n` per message, then
/// `<|im_start|>assistant\n` when a generation prompt is asked for). The CLI uses it (and says so)
/// when a GGUF lacks `tokenizer.chat_template`.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Fallback for Gemma-family files without a template: Gemma's turn format
/// (`<start_of_turn>user ... <end_of_turn>`, the assistant role called `model`), with a system
/// message folded into the first user turn as Gemma's own template does.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\\n\\n' %}{% else %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' }}{% if m['role'] == 'user' %}{{ ns.sys }}{% set ns.sys = '' %}{% endif %}{{ m['content'] | trim }}{{ '<end_of_turn>\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

/// The built-in template for a model family whose file carries none: Gemma's turn format for
/// `gemma*` architectures, ChatML otherwise.
pub fn fallback_template_for(architecture: &str) -> &'static str {
    if architecture.starts_with("gemma") {
        GEMMA_TEMPLATE
    } else {
        CHATML_TEMPLATE
    }
}

/// Name under which the template is compiled; minijinja errors say `(in chat_template:LINE)`.
const TEMPLATE_NAME: &str = "chat_template";

/// Upper bound on minijinja instructions per render, so a template with a huge loop cannot
/// hang a request. Real chat templates use a few thousand per message.
pub const RENDER_FUEL: u64 = 50_000_000;

/// Largest accepted template source, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// A simple chat message (`role` + text `content`). Messages with multi-part content or tool
/// calls are passed to [`RenderRequest`] as plain `serde_json::Value`s instead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// `{"role": ..., "content": ...}`, in that key order.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), self.role.clone().into());
        m.insert("content".into(), self.content.clone().into());
        serde_json::Value::Object(m)
    }
}

/// What a template can be rendered with. Template variables: `messages`, `tools` (`None` when
/// absent, as transformers passes it), `documents` (`None`), `add_generation_prompt`,
/// `bos_token`, `eos_token`, and every key of `extra`.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    pub messages: &'a [serde_json::Value],
    pub add_generation_prompt: bool,
    pub bos_token: &'a str,
    pub eos_token: &'a str,
    /// OpenAI-style tool list (`[{"type": "function", "function": {...}}]`).
    pub tools: Option<&'a serde_json::Value>,
    /// Further template variables (other special tokens, `enable_thinking`, ...). They may not
    /// replace `messages`, `tools`, `documents` or `add_generation_prompt`.
    pub extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// Clock for `strftime_now`; `None` means the current UTC time (transformers uses the
    /// local time of the process; Freehold does not read time zones).
    pub now: Option<TemplateTime>,
}

impl<'a> RenderRequest<'a> {
    /// Messages only: no generation prompt, empty BOS/EOS, no tools, no extras, system clock.
    pub fn new(messages: &'a [serde_json::Value]) -> Self {
        RenderRequest {
            messages,
            add_generation_prompt: false,
            bos_token: "",
            eos_token: "",
            tools: None,
            extra: None,
            now: None,
        }
    }
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The template does not parse (or is too large). `message` names the construct.
    Syntax {
        message: String,
        line: Option<usize>,
    },
    /// The template called `raise_exception(message)`.
    Raised {
        message: String,
        line: Option<usize>,
    },
    /// Rendering failed: unknown filter/test/method, undefined value, type error, fuel...
    Render {
        message: String,
        line: Option<usize>,
    },
    /// The request itself is unusable (e.g. `extra` tries to replace `messages`).
    Request { message: String },
}

impl TemplateError {
    /// The template line the error points at, when known (1-based).
    pub fn line(&self) -> Option<usize> {
        match self {
            TemplateError::Syntax { line, .. }
            | TemplateError::Raised { line, .. }
            | TemplateError::Render { line, .. } => *line,
            TemplateError::Request { .. } => None,
        }
    }

    /// The bare message (for `Raised`, exactly what the template passed).
    pub fn message(&self) -> &str {
        match self {
            TemplateError::Syntax { message, .. }
            | TemplateError::Raised { message, .. }
            | TemplateError::Render { message, .. }
            | TemplateError::Request { message } => message,
        }
    }

    fn from_minijinja(err: &Error, compiling: bool) -> TemplateError {
        let line = err.line();
        if let Some(raised) = find_raised(err) {
            return TemplateError::Raised {
                message: raised,
                line,
            };
        }
        // minijinja's Display: "<kind>: <detail> (in chat_template:LINE)", plus causes.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        if compiling || err.kind() == ErrorKind::SyntaxError {
            TemplateError::Syntax { message, line }
        } else {
            TemplateError::Render { message, line }
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Syntax { message, .. } => {
                write!(f, "chat template does not compile: {message}")
            }
            TemplateError::Raised { message, line } => {
                write!(f, "chat template raised an exception: {message}")?;
                if let Some(l) = line {
                    write!(f, " (raise_exception at chat_template line {l})")?;
                }
                Ok(())
            }
            TemplateError::Render { message, .. } => {
                write!(f, "chat template failed to render: {message}")
            }
            TemplateError::Request { message } => write!(f, "chat template request: {message}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Marker source attached to the minijinja error made by `raise_exception`.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn find_raised(err: &Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        source = s.source();
    }
    None
}

thread_local! {
    /// The clock of the render running on this thread (minijinja renders synchronously).
    static RENDER_NOW: RefCell<Option<TemplateTime>> = const { RefCell::new(None) };
}

struct NowGuard;

impl NowGuard {
    fn set(now: TemplateTime) -> NowGuard {
        RENDER_NOW.with(|n| *n.borrow_mut() = Some(now));
        NowGuard
    }
}

impl Drop for NowGuard {
    fn drop(&mut self) {
        RENDER_NOW.with(|n| *n.borrow_mut() = None);
    }
}

/// A compiled chat template. Compile once with [`ChatTemplate::new`], render many times;
/// `ChatTemplate` is `Send + Sync`.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_bytes", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`. Fails with [`TemplateError::Syntax`] naming the construct and line.
    pub fn new(source: &str) -> Result<ChatTemplate, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::Syntax {
                message: format!(
                    "template is {} bytes, more than the {MAX_TEMPLATE_BYTES}-byte limit",
                    source.len()
                ),
                line: None,
            });
        }
        let mut env = python_environment();
        let rewritten = rewrite_generation_tags(source);
        env.add_template_owned(TEMPLATE_NAME, rewritten)
            .map_err(|e| TemplateError::from_minijinja(&e, true))?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
        })
    }

    /// The fallback ChatML template ([`CHATML_TEMPLATE`]).
    pub fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML_TEMPLATE).expect("built-in ChatML template compiles")
    }

    /// The template source as given to [`ChatTemplate::new`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation into a prompt string.
    pub fn render(&self, req: &RenderRequest<'_>) -> Result<String, TemplateError> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(extra) = req.extra {
            for (k, v) in extra {
                if matches!(
                    k.as_str(),
                    "messages" | "tools" | "documents" | "add_generation_prompt"
                ) {
                    return Err(TemplateError::Request {
                        message: format!(
                            "extra variable `{k}` would replace a standard template variable"
                        ),
                    });
                }
                ctx.insert(k.clone(), Value::from_serialize(v));
            }
        }
        ctx.entry("bos_token".into())
            .or_insert_with(|| Value::from(req.bos_token));
        ctx.entry("eos_token".into())
            .or_insert_with(|| Value::from(req.eos_token));
        ctx.insert("messages".into(), Value::from_serialize(req.messages));
        ctx.insert(
            "tools".into(),
            req.tools
                .map(Value::from_serialize)
                .unwrap_or(Value::from(())),
        );
        ctx.insert("documents".into(), Value::from(()));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(req.add_generation_prompt),
        );

        let _guard = NowGuard::set(req.now.unwrap_or_else(TemplateTime::now_utc));
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::from_minijinja(&e, true))?;
        tmpl.render(Value::from(ctx))
            .map_err(|e| TemplateError::from_minijinja(&e, false))
    }
}

/// Builds the transformers-like environment (without the template).
fn python_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| pyfmt::write_str_of(out, value));

    env.add_filter("tojson", tojson_filter);
    env.add_filter("from_json", from_json_filter);
    env.add_filter("string", |v: Value| -> Result<Value, Error> {
        if v.kind() == ValueKind::String {
            return Ok(v);
        }
        let mut s = String::new();
        pyfmt::py_str(&mut s, &v)?;
        Ok(Value::from(s))
    });
    env.add_filter("indent", indent_filter);
    env.add_test("sequence", |v: Value| {
        matches!(
            v.kind(),
            ValueKind::Seq | ValueKind::String | ValueKind::Map
        )
    });
    env.add_test("iterable", |v: Value| {
        matches!(
            v.kind(),
            ValueKind::Seq | ValueKind::String | ValueKind::Map | ValueKind::Iterable
        )
    });
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

fn raise_exception(message: Option<Value>) -> Result<Value, Error> {
    let msg = match message {
        Some(v) if v.kind() == ValueKind::String => v.as_str().unwrap_or_default().to_owned(),
        Some(v) => {
            let mut s = String::new();
            pyfmt::py_str(&mut s, &v)?;
            s
        }
        None => String::new(),
    };
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {msg}"),
    )
    .with_source(Raised(msg)))
}

fn strftime_now(format: String) -> Result<Value, Error> {
    let now = RENDER_NOW
        .with(|n| *n.borrow())
        .unwrap_or_else(TemplateTime::now_utc);
    Ok(Value::from(now.strftime(&format)))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson_filter(
    _state: &State,
    value: Value,
    ensure_ascii: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let mut opts = pyfmt::JsonOptions::default();
    if let Some(v) = ensure_ascii {
        opts.ensure_ascii = v.is_true();
    }
    if let Some(v) = kwargs.get::<Option<Value>>("ensure_ascii")? {
        opts.ensure_ascii = v.is_true();
    }
    if let Some(v) = kwargs.get::<Option<Value>>("indent")? {
        opts.indent = pyfmt::JsonIndent::from_value(&v)?;
    }
    if let Some(v) = kwargs.get::<Option<Value>>("separators")? {
        if !v.is_none() {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                    opts.separators = Some((
                        a.as_str().unwrap_or("").to_owned(),
                        b.as_str().unwrap_or("").to_owned(),
                    ));
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
    }
    if let Some(v) = kwargs.get::<Option<Value>>("sort_keys")? {
        opts.sort_keys = v.is_true();
    }
    kwargs.assert_all_used()?;
    let mut out = String::new();
    pyfmt::json_dumps(&mut out, &value, &opts, 0)?;
    Ok(Value::from(out))
}

/// jinja2's `indent(s, width=4, first=False, blank=False)`, including its handling of the
/// trailing newline (kept) and Python's `str.splitlines` line breaks.
fn indent_filter(
    value: Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let width = match kwargs.get::<Option<Value>>("width")? {
        Some(w) => Some(w),
        None => width,
    };
    let first = kwargs
        .get::<Option<bool>>("first")?
        .or(first)
        .unwrap_or(false);
    let blank = kwargs
        .get::<Option<bool>>("blank")?
        .or(blank)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let indention = match width {
        None => "    ".to_owned(),
        Some(w) if w.as_str().is_some() => w.as_str().unwrap_or_default().to_owned(),
        Some(w) => match w.as_i64() {
            Some(n) => " ".repeat(n.clamp(0, 1024) as usize),
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "indent: width must be an integer or a string",
                ))
            }
        },
    };
    let mut text = String::new();
    pyfmt::py_str(&mut text, &value)?;
    text.push('\n');
    let lines = pyfmt::splitlines(&text);
    let mut rv = String::new();
    if blank {
        rv = lines.join(&format!("\n{indention}"));
    } else if let Some((head, tail)) = lines.split_first() {
        rv.push_str(head);
        if !tail.is_empty() {
            rv.push('\n');
            let body: Vec<String> = tail
                .iter()
                .map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("{indention}{l}")
                    }
                })
                .collect();
            rv.push_str(&body.join("\n"));
        }
    }
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(Value::from(rv))
}

fn from_json_filter(value: String) -> Result<Value, Error> {
    let parsed: serde_json::Value = serde_json::from_str(&value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("from_json: invalid JSON: {e}"),
        )
    })?;
    Ok(Value::from_serialize(&parsed))
}

/// Turns transformers' `{% generation %}` / `{% endgeneration %}` into `{% if true %}` /
/// `{% endif %}`: same body, same whitespace handling (both are block tags), no custom tag
/// support needed in minijinja. Whitespace-control markers (`-`, `+`) are kept.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        let after_open = &tag[2..];
        let (marker, body) = match after_open.as_bytes().first() {
            Some(b'-') | Some(b'+') => (&after_open[..1], &after_open[1..]),
            _ => ("", after_open),
        };
        let trimmed = body.trim_start();
        let ws_len = body.len() - trimmed.len();
        let replacement = if let Some(r) = keyword(trimmed, "endgeneration") {
            Some(("endif", r))
        } else {
            keyword(trimmed, "generation").map(|r| ("if true", r))
        };
        match replacement {
            Some((new_kw, remainder)) => {
                out.push_str("{%");
                out.push_str(marker);
                out.push_str(&body[..ws_len]);
                out.push_str(new_kw);
                rest = remainder;
            }
            None => {
                out.push_str("{%");
                rest = after_open;
            }
        }
    }
    out.push_str(rest);
    out
}

/// If `s` starts with the keyword `kw` followed by whitespace or a block end, the rest of `s`
/// after the keyword.
fn keyword<'s>(s: &'s str, kw: &str) -> Option<&'s str> {
    let rest = s.strip_prefix(kw)?;
    let next = rest.trim_start();
    if next.starts_with("%}") || next.starts_with("-%}") || next.starts_with("+%}") {
        Some(rest)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            rewrite_generation_tags(
                "a{%- generation %}b{% endgeneration -%}c{% if x %}{% endif %}"
            ),
            "a{%- if true %}b{% endif -%}c{% if x %}{% endif %}"
        );
        assert_eq!(
            rewrite_generation_tags("{% generations %}"),
            "{% generations %}"
        );
    }

    #[test]
    fn chat_template_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
        assert_send_sync::<TemplateError>();
    }

    #[test]
    fn chatml_fallback_renders() {
        let msgs = [ChatMessage::new("user", "hi").to_json()];
        let mut req = RenderRequest::new(&msgs);
        req.add_generation_prompt = true;
        assert_eq!(
            ChatTemplate::chatml().render(&req).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
