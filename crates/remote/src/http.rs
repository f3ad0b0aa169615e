//! The one HTTP client every remote source goes through: manual redirects (so credentials stay
//! bound to the origin they were issued for), retries with exponential backoff on transport
//! errors, 5xx and 429, and a hard refusal to touch the network when offline.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::http::{self, HeaderMap, Method, Response, Uri};

use crate::RemoteError;

/// Redirect hops followed before giving up; the hub uses one (resolve -> CDN), registries
/// at most two (blob -> storage backend).
const MAX_REDIRECTS: u32 = 8;

/// How often and how patiently a failed request is tried again.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, first one included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one wait, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), capped by `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Options shared by every client built on [`Client`].
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Refuse every request (the `--offline` / `FREEHOLD_OFFLINE=1` guarantee, enforced here so
    /// no code path above can forget it).
    pub offline: bool,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// Parallel range requests per large file (0 or 1: one stream).
    pub parts: usize,
    /// Files at least this large are fetched in `parts` parallel ranges.
    pub parallel_threshold: u64,
    /// Draw progress bars on stderr (only honoured when stderr is a terminal).
    pub progress: bool,
}

impl ClientOptions {
    /// The defaults for interactive use: 4 parts for files of 64 MiB and more.
    pub fn standard(offline: bool) -> Self {
        ClientOptions {
            offline,
            retry: RetryPolicy::default(),
            parts: 4,
            parallel_threshold: 64 << 20,
            progress: true,
        }
    }
}

/// A credential bound to one origin (`scheme://host:port`). It is attached to a request only
/// when the request's own origin is that one, so a redirect to a CDN or storage backend on
/// another host never receives it.
#[derive(Clone)]
pub struct Auth {
    origin: String,
    header: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in debug output.
        write!(f, "Auth({} <redacted>)", self.origin)
    }
}

impl Auth {
    /// `Authorization: <header>` for requests to `url`'s origin only.
    pub fn for_origin_of(url: &str, header: String) -> Result<Auth, RemoteError> {
        Ok(Auth {
            origin: origin_of(url)?,
            header,
        })
    }

    /// The origin this credential belongs to.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// A request body that can be replayed for a retry.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A whole file, re-opened for every attempt.
    File(&'a Path),
}

/// One request to send: method, absolute URL, extra headers and an optional origin-bound
/// credential.
#[derive(Clone, Debug)]
pub struct Req {
    /// HTTP method.
    pub method: Method,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Extra headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Attached only to requests whose origin matches.
    pub auth: Option<Auth>,
    /// Follow redirects (GET and HEAD only); off to read a redirect's own headers.
    pub follow: bool,
}

impl Req {
    /// A request without extra headers or credentials.
    pub fn new(method: Method, url: impl Into<String>) -> Req {
        Req {
            method,
            url: url.into(),
            headers: Vec::new(),
            auth: None,
            follow: true,
        }
    }

    /// Returns redirects as responses instead of following them.
    pub fn no_follow(mut self) -> Req {
        self.follow = false;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Req {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the credential.
    pub fn auth(mut self, auth: Option<Auth>) -> Req {
        self.auth = auth;
        self
    }
}

/// A received response: status, headers, the URL that finally answered (after redirects) and
/// the unread body.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// URL of the final hop.
    pub url: String,
    /// Body, not yet read.
    pub body: ureq::Body,
}

impl Resp {
    /// A header as text (first value), if present and valid ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the whole body, refusing more than `limit` bytes.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, RemoteError> {
        let mut out = Vec::new();
        let mut reader = self.body.as_reader().take(limit + 1);
        reader
            .read_to_end(&mut out)
            .map_err(|e| RemoteError::Transport {
                url: self.url.clone(),
                detail: format!("reading the body: {e}"),
            })?;
        if out.len() as u64 > limit {
            return Err(RemoteError::Protocol {
                url: self.url.clone(),
                detail: format!("response body larger than the {limit}-byte limit"),
            });
        }
        Ok(out)
    }

    /// The body as text for an error message: at most 300 bytes, lossy, one line.
    pub fn error_text(&mut self) -> String {
        let mut buf = Vec::new();
        let _ = self.body.as_reader().take(300).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The blocking HTTP client.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    opts: ClientOptions,
}

impl Client {
    /// A client with these options.
    pub fn new(opts: ClientOptions) -> Client {
        let config = ureq::Agent::config_builder()
            // Redirects are followed by hand in `send` so credentials stay origin-bound.
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("freehold/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            // A stalled transfer is an error (and then a retry from where it stopped).
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            opts,
        }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Sends once, following redirects for GET and HEAD (credentials only to their own
    /// origin). Transport failures are errors; any status is a response.
    pub fn send_once(&self, req: &Req, payload: Payload<'_>) -> Result<Resp, RemoteError> {
        if self.opts.offline {
            return Err(RemoteError::Offline {
                what: format!("{} {}", req.method, req.url),
            });
        }
        let follow = req.follow && (req.method == Method::GET || req.method == Method::HEAD);
        let mut url = req.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send_one_hop(req, &url, payload)?;
            let is_redirect = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            if !(follow && is_redirect) {
                let (parts, body) = resp.into_parts();
                return Ok(Resp {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    url,
                    body,
                });
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RemoteError::Protocol {
                    url: url.clone(),
                    detail: format!("redirect {} without a Location header", resp.status()),
                })?;
            url = resolve_location(&url, location)?;
        }
        Err(RemoteError::Protocol {
            url: req.url.clone(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    fn send_one_hop(
        &self,
        req: &Req,
        url: &str,
        payload: Payload<'_>,
    ) -> Result<Response<ureq::Body>, RemoteError> {
        let uri: Uri = url.parse().map_err(|e| RemoteError::BadUrl {
            url: url.to_string(),
            detail: format!("{e}"),
        })?;
        let mut builder = http::Request::builder().method(req.method.clone()).uri(uri);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(auth) = &req.auth {
            if origin_of(url)? == auth.origin {
                builder = builder.header("authorization", auth.header.as_str());
            }
        }
        let transport = |e: ureq::Error| RemoteError::Transport {
            url: url.to_string(),
            detail: e.to_string(),
        };
        let bad = |e: http::Error| RemoteError::BadUrl {
            url: url.to_string(),
            detail: e.to_string(),
        };
        match payload {
            Payload::Empty => {
                let r = builder.body(()).map_err(bad)?;
                self.agent.run(r).map_err(transport)
            }
            Payload::Bytes(b) => {
                let r = builder.body(b).map_err(bad)?;
                self.agent.run(r).map_err(transport)
            }
            Payload::File(p) => {
                let f = File::open(p).map_err(|e| RemoteError::Io {
                    path: PathBuf::from(p),
                    detail: format!("opening for upload: {e}"),
                })?;
                let r = builder.body(f).map_err(bad)?;
                self.agent.run(r).map_err(transport)
            }
        }
    }

    /// Sends with retries: transport errors, 5xx and 429 are tried again after a backoff
    /// (honouring `Retry-After` in seconds, capped); other statuses are returned as they are.
    pub fn send(&self, req: &Req, payload: Payload<'_>) -> Result<Resp, RemoteError> {
        let policy = &self.opts.retry;
        let attempts = policy.attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = self.send_once(req, payload);
            let retryable = match &result {
                Ok(r) => r.status >= 500 || r.status == 429,
                Err(RemoteError::Transport { .. }) => true,
                Err(_) => false,
            };
            if !retryable || attempt >= attempts {
                return result;
            }
            let mut delay = policy.delay(attempt);
            if let Ok(r) = &result {
                if let Some(secs) = r.header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
                    delay = Duration::from_secs(secs).min(policy.max_delay);
                }
            }
            std::thread::sleep(delay);
            attempt += 1;
        }
    }
}

/// `scheme://host[:port]` of an absolute URL, lower-cased, default ports made explicit, so
/// `https://h` and `https://h:443` are the same origin.
pub fn origin_of(url: &str) -> Result<String, RemoteError> {
    let uri: Uri = url.parse().map_err(|e| RemoteError::BadUrl {
        url: url.to_string(),
        detail: format!("{e}"),
    })?;
    let scheme = uri.scheme_str().ok_or_else(|| RemoteError::BadUrl {
        url: url.to_string(),
        detail: "not an absolute URL".into(),
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let host = uri.host().ok_or_else(|| RemoteError::BadUrl {
        url: url.to_string(),
        detail: "no host".into(),
    })?;
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(p), _) => p,
        (None, "https") => 443,
        (None, "http") => 80,
        (None, other) => {
            return Err(RemoteError::BadUrl {
                url: url.to_string(),
                detail: format!("unsupported scheme {other:?}"),
            })
        }
    };
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

/// The absolute URL a `Location` header points to, relative to the URL that sent it.
pub fn resolve_location(base: &str, location: &str) -> Result<String, RemoteError> {
    let bad = |detail: &str| RemoteError::Protocol {
        url: base.to_string(),
        detail: format!("redirect to {location:?}: {detail}"),
    };
    if location.starts_with("http://") || location.starts_with("https://") {
        origin_of(location)?;
        return Ok(location.to_string());
    }
    if location.contains("://") {
        return Err(bad("unsupported scheme"));
    }
    let uri: Uri = base.parse().map_err(|_| bad("base URL does not parse"))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| bad("base is not absolute"))?;
    let authority = uri.authority().ok_or_else(|| bad("base has no host"))?;
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    // Relative to the base's directory.
    let path = uri.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Ok(format!("{scheme}://{authority}{dir}{location}"))
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved characters kept).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a `/`-separated path, keeping the separators.
pub fn encode_path(s: &str) -> String {
    s.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://Hub.example/a/b").unwrap(),
            "https://hub.example:443"
        );
        assert_eq!(
            origin_of("https://hub.example:443/x").unwrap(),
            "https://hub.example:443"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_ne!(
            origin_of("http://127.0.0.1:8080/").unwrap(),
            origin_of("http://127.0.0.1:8081/").unwrap()
        );
        assert!(origin_of("/relative").is_err());
        assert!(origin_of("ftp://x/").is_err());
    }

    #[test]
    fn locations() {
        let base = "http://h:1/a/b/c?q=1";
        assert_eq!(
            resolve_location(base, "https://cdn/x").unwrap(),
            "https://cdn/x"
        );
        assert_eq!(resolve_location(base, "/z").unwrap(), "http://h:1/z");
        assert_eq!(resolve_location(base, "d").unwrap(), "http://h:1/a/b/d");
        assert_eq!(
            resolve_location(base, "//other:2/p").unwrap(),
            "http://other:2/p"
        );
        assert!(resolve_location(base, "file:///etc/passwd").is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_component("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_path("a b/c.gguf"), "a%20b/c.gguf");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(4), Duration::from_millis(800));
        assert_eq!(p.delay(5), Duration::from_secs(1));
        assert_eq!(p.delay(100), Duration::from_secs(1));
    }

    #[test]
    fn offline_refuses_before_any_io() {
        let c = Client::new(ClientOptions {
            offline: true,
            ..ClientOptions::default()
        });
        let err = c
            .send(
                &Req::new(Method::GET, "http://127.0.0.1:9/never"),
                Payload::Empty,
            )
            .err()
            .unwrap();
        assert!(matches!(err, RemoteError::Offline { .. }), "{err}");
    }
}
