//! API keys and per-key limits. Keys are kept only as SHA-256 digests and compared in
//! constant time; a key is named in logs by a short hash of its digest, never by itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Per-key limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + generated) per minute.
    pub tpm: Option<u64>,
}

struct Key {
    digest: [u8; 32],
    id: String,
    limits: Limits,
}

#[derive(Default)]
struct Usage {
    window: Option<Instant>,
    requests: u64,
    tokens: u64,
}

/// Who is calling: the short key id used in logs, and the key's limits.
#[derive(Clone, Debug)]
pub struct Caller {
    /// 12 hex digits of SHA-256(SHA-256(key)); "anonymous" without keys.
    pub key_id: String,
    /// The limits that apply.
    pub limits: Limits,
}

/// The configured keys (possibly none: then every request is anonymous) and usage counters.
pub struct Auth {
    keys: Vec<Key>,
    defaults: Limits,
    usage: Mutex<HashMap<String, Usage>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn key_id(d: &[u8; 32]) -> String {
    Sha256::digest(d)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const WINDOW: Duration = Duration::from_secs(60);

impl Auth {
    /// Keys from `file` (one per line: `KEY [rpm=N] [tpm=N]`, `#` comments) and from the
    /// comma-separated `env` value; `defaults` apply where a line sets no limit.
    pub fn load(file: Option<&Path>, env: Option<&str>, defaults: Limits) -> Result<Auth> {
        let mut keys = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API keys file {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let key = parts.next().expect("line is not empty");
                let mut limits = defaults;
                for opt in parts {
                    let (name, value) = opt.split_once('=').with_context(|| {
                        format!(
                            "{}:{}: expected NAME=N after the key, got {opt:?}",
                            path.display(),
                            i + 1
                        )
                    })?;
                    let n: u64 = value.parse().with_context(|| {
                        format!(
                            "{}:{}: {name} must be a whole number, got {value:?}",
                            path.display(),
                            i + 1
                        )
                    })?;
                    match name {
                        "rpm" => limits.rpm = Some(n),
                        "tpm" => limits.tpm = Some(n),
                        _ => bail!(
                            "{}:{}: unknown limit {name:?} (known: rpm, tpm)",
                            path.display(),
                            i + 1
                        ),
                    }
                }
                Self::push_key(&mut keys, key, limits)
                    .with_context(|| format!("{}:{}", path.display(), i + 1))?;
            }
            if keys.is_empty() {
                bail!("the API keys file {} holds no key", path.display());
            }
        }
        if let Some(env) = env {
            for key in env.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                Self::push_key(&mut keys, key, defaults).context("FREEHOLD_API_KEYS")?;
            }
        }
        Ok(Auth {
            keys,
            defaults,
            usage: Mutex::new(HashMap::new()),
        })
    }

    fn push_key(keys: &mut Vec<Key>, key: &str, limits: Limits) -> Result<()> {
        if key.len() < 8 {
            bail!("an API key must be at least 8 characters");
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("an API key must be printable ASCII without spaces");
        }
        let d = digest(key);
        keys.push(Key {
            id: key_id(&d),
            digest: d,
            limits,
        });
        Ok(())
    }

    /// Whether requests must carry a key.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Number of keys configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        if self.keys.is_empty() {
            return Ok(Caller {
                key_id: "anonymous".into(),
                limits: self.defaults,
            });
        }
        let Some(h) = header else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key: send it as `Authorization: Bearer KEY`.",
            ));
        };
        let presented = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        let d = digest(presented);
        // Every key is compared, so the time taken says nothing about which one matched.
        let mut found: Option<&Key> = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&d)) {
                found = Some(k);
            }
        }
        match found {
            Some(k) => Ok(Caller {
                key_id: k.id.clone(),
                limits: k.limits,
            }),
            None => Err(ApiError::unauthorized("Incorrect API key provided.")),
        }
    }

    fn with_usage<T>(&self, id: &str, f: impl FnOnce(&mut Usage) -> T) -> T {
        let mut m = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = m.entry(id.to_string()).or_default();
        let now = Instant::now();
        if u.window.is_none_or(|w| now.duration_since(w) >= WINDOW) {
            *u = Usage {
                window: Some(now),
                ..Usage::default()
            };
        }
        f(u)
    }

    /// Counts a request against the caller's per-minute limits, or refuses it with 429.
    pub fn admit(&self, c: &Caller) -> Result<(), ApiError> {
        self.with_usage(&c.key_id, |u| {
            if let Some(rpm) = c.limits.rpm {
                if u.requests >= rpm {
                    return Err(ApiError::rate_limited(format!(
                        "Rate limit reached for key {}: {rpm} requests per minute.",
                        c.key_id
                    )));
                }
            }
            if let Some(tpm) = c.limits.tpm {
                if u.tokens >= tpm {
                    return Err(ApiError::rate_limited(format!(
                        "Token quota reached for key {}: {} of {tpm} tokens per minute used.",
                        c.key_id, u.tokens
                    )));
                }
            }
            u.requests += 1;
            Ok(())
        })
    }

    /// Adds the tokens a finished request used to the caller's quota.
    pub fn spend(&self, c: &Caller, tokens: u64) {
        self.with_usage(&c.key_id, |u| u.tokens += tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_and_env_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        std::fs::write(
            &p,
            "# team\nsk-alpha-123456 rpm=2\n\nsk-beta-1234567 tpm=10\n",
        )
        .unwrap();
        let a = Auth::load(Some(&p), Some("sk-gamma-12345, "), Limits::default()).unwrap();
        assert_eq!(a.len(), 3);
        assert!(a.authenticate(None).is_err());
        assert_eq!(
            a.authenticate(Some("Bearer nope-nope-nope"))
                .unwrap_err()
                .status,
            401
        );
        let alpha = a.authenticate(Some("Bearer sk-alpha-123456")).unwrap();
        assert_eq!(alpha.key_id.len(), 12);
        assert!(!alpha.key_id.contains("alpha"));
        assert!(a.admit(&alpha).is_ok());
        assert!(a.admit(&alpha).is_ok());
        assert_eq!(a.admit(&alpha).unwrap_err().status, 429);
        let beta = a.authenticate(Some("Bearer sk-beta-1234567")).unwrap();
        assert!(a.admit(&beta).is_ok());
        a.spend(&beta, 10);
        assert_eq!(a.admit(&beta).unwrap_err().status, 429);
        assert!(a.authenticate(Some("Bearer sk-gamma-12345")).is_ok());
    }

    #[test]
    fn bad_files_name_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        std::fs::write(&p, "sk-alpha-123456 rpm=x\n").unwrap();
        let e = format!(
            "{:#}",
            Auth::load(Some(&p), None, Limits::default()).err().unwrap()
        );
        assert!(e.contains(":1:") && e.contains("rpm"), "{e}");
        std::fs::write(&p, "short\n").unwrap();
        assert!(Auth::load(Some(&p), None, Limits::default()).is_err());
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(Auth::load(Some(&p), None, Limits::default()).is_err());
    }

    #[test]
    fn no_keys_means_anonymous() {
        let a = Auth::load(
            None,
            None,
            Limits {
                rpm: Some(1),
                tpm: None,
            },
        )
        .unwrap();
        let c = a.authenticate(None).unwrap();
        assert_eq!(c.key_id, "anonymous");
        assert!(a.admit(&c).is_ok());
        assert!(a.admit(&c).is_err());
    }
}
