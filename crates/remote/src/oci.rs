//! An OCI distribution (v1.1) registry client: blob existence, monolithic upload
//! (`POST /v2/<name>/blobs/uploads/` then `PUT <location>?digest=`), verified blob download
//! with resume, and image-manifest `PUT`/`GET`.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: `Bearer` (a token from
//! the realm, asked with basic credentials when there are some) or `Basic`. Credentials come
//! from `FREEHOLD_REGISTRY_USERNAME` / `FREEHOLD_REGISTRY_PASSWORD`. The resulting
//! `Authorization` is bound to the registry's origin, so blob redirects to a storage backend
//! never carry it.

use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::Method;

use crate::download::{self, Expect, Source};
use crate::http::{origin_of, resolve_location, Auth, Client, ClientOptions, Payload, Req, Resp};
use crate::{is_sha256_hex, sha256_bytes, Downloaded, RemoteError};

/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Largest manifest accepted (the distribution spec lets registries refuse above 4 MiB).
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// What a reference points at inside a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A manifest digest (64 lowercase hex, `sha256:` removed).
    Digest(String),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => write!(f, ":{t}"),
            Reference::Digest(d) => write!(f, "@sha256:{d}"),
        }
    }
}

/// A parsed `oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]` (tag `latest` by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRef {
    /// `host[:port]`.
    pub host: String,
    /// Repository name (lowercase path components).
    pub repo: String,
    /// Tag or digest.
    pub reference: Reference,
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}{}", self.host, self.repo, self.reference)
    }
}

impl OciRef {
    /// Parses and validates against the distribution spec's name and tag grammar.
    pub fn parse(input: &str) -> Result<OciRef, RemoteError> {
        let bad = |reason: String| RemoteError::BadRef {
            input: input.to_string(),
            reason,
        };
        let rest = input
            .strip_prefix("oci://")
            .ok_or_else(|| bad("expected oci://HOST[:PORT]/REPO[:TAG]".into()))?;
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected a repository after the host".into()))?;
        validate_host(host).map_err(|r| bad(format!("host {host:?}: {r}")))?;
        let (name, reference) = if let Some((n, d)) = path.split_once('@') {
            let hex = d
                .strip_prefix("sha256:")
                .filter(|h| is_sha256_hex(h))
                .ok_or_else(|| bad(format!("digest {d:?} is not sha256:<64 lowercase hex>")))?;
            (n, Reference::Digest(hex.to_string()))
        } else {
            let last = path.rsplit('/').next().unwrap_or("");
            match last.rsplit_once(':') {
                Some((_, tag)) => {
                    let n = &path[..path.len() - tag.len() - 1];
                    validate_tag(tag).map_err(|r| bad(format!("tag {tag:?}: {r}")))?;
                    (n, Reference::Tag(tag.to_string()))
                }
                None => (path, Reference::Tag("latest".into())),
            }
        };
        validate_repo(name).map_err(|r| bad(format!("repository {name:?}: {r}")))?;
        Ok(OciRef {
            host: host.to_string(),
            repo: name.to_string(),
            reference,
        })
    }

    /// Whether plain HTTP is the default for this host (loopback only).
    pub fn is_loopback(&self) -> bool {
        let h = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    &self.host
                }
            });
        h == "localhost" || h == "[::1]" || h.starts_with("127.")
    }
}

fn validate_host(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or("unclosed '['")?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("bad IPv6 address".into());
        }
        (None, after.strip_prefix(':'))
    } else {
        match h.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(h), None),
        }
    };
    if let Some(n) = name {
        if n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            || n.starts_with(['.', '-'])
        {
            return Err("host names are letters, digits, '.' and '-'".into());
        }
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("port {p:?} is not 1-65535"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255.
fn validate_repo(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    for comp in name.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Err(format!(
                "component {comp:?} must start and end with a lowercase letter or digit"
            ));
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator run: ".", "_", "__" or "-+".
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(format!("component {comp:?} has the separator {sep:?}"));
            }
        }
    }
    Ok(())
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn validate_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !(b[0].is_ascii_alphanumeric() || b[0] == b'_')
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err("letters, digits, '_', '.' and '-', not starting with '.' or '-'".into());
    }
    Ok(())
}

/// Registry credentials from `FREEHOLD_REGISTRY_USERNAME` / `FREEHOLD_REGISTRY_PASSWORD`.
pub fn credentials_from_env() -> Option<(String, String)> {
    let u = std::env::var("FREEHOLD_REGISTRY_USERNAME").ok()?;
    let p = std::env::var("FREEHOLD_REGISTRY_PASSWORD").unwrap_or_default();
    (!u.is_empty()).then_some((u, p))
}

/// One `WWW-Authenticate` challenge: scheme and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lower-cased).
    pub scheme: String,
    /// `realm`, `service`, `scope`, ... (names lower-cased).
    pub params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"`
/// (quoted values may hold commas and escaped quotes).
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end?;
            value = out;
            s = q[end + 1..].trim_start();
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        params.push((key, value));
        s = s.trim_start().strip_prefix(',').unwrap_or(s).trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// The minimal view of an OCI image manifest this crate needs to move its blobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// sha256 hex (no prefix).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// A client for one repository of one registry.
pub struct OciClient {
    client: Client,
    base: String,
    r: OciRef,
    creds: Option<(String, String)>,
    auth: Mutex<Option<Auth>>,
}

impl OciClient {
    /// A client for `r`'s repository; plain HTTP when `plain_http` or the host is loopback.
    pub fn new(
        r: &OciRef,
        plain_http: bool,
        creds: Option<(String, String)>,
        opts: ClientOptions,
    ) -> Result<OciClient, RemoteError> {
        let scheme = if plain_http || r.is_loopback() {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{}", r.host);
        origin_of(&base)?;
        Ok(OciClient {
            client: Client::new(opts),
            base,
            r: r.clone(),
            creds,
            auth: Mutex::new(None),
        })
    }

    fn blob_url(&self, sha256: &str) -> String {
        format!("{}/v2/{}/blobs/sha256:{sha256}", self.base, self.r.repo)
    }

    fn current_auth(&self) -> Option<Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends `req` with the current credential; on a 401 answers the challenge once and
    /// sends again.
    fn call(&self, req: Req, payload: Payload<'_>, push: bool) -> Result<Resp, RemoteError> {
        let resp = self
            .client
            .send(&req.clone().auth(self.current_auth()), payload)?;
        if resp.status != 401 {
            return Ok(resp);
        }
        let Some(ch) = resp.header("www-authenticate").and_then(parse_challenge) else {
            return Ok(resp);
        };
        let auth = self.answer(&ch, &resp.url, push)?;
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = Some(auth.clone());
        self.client.send(&req.auth(Some(auth)), payload)
    }

    fn answer(&self, ch: &Challenge, url: &str, push: bool) -> Result<Auth, RemoteError> {
        let basic = self.creds.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        match ch.scheme.as_str() {
            "basic" => {
                let header = basic.ok_or_else(|| RemoteError::Unauthorized {
                    what: self.r.to_string(),
                    status: 401,
                    url: url.to_string(),
                    advice: "the registry wants a user name and password: set FREEHOLD_REGISTRY_USERNAME and FREEHOLD_REGISTRY_PASSWORD".into(),
                })?;
                Auth::for_origin_of(&self.base, header)
            }
            "bearer" => {
                let realm = ch.param("realm").ok_or_else(|| RemoteError::Protocol {
                    url: url.to_string(),
                    detail: "Bearer challenge without a realm".into(),
                })?;
                let actions = if push { "pull,push" } else { "pull" };
                let scope = format!("repository:{}:{actions}", self.r.repo);
                let mut token_url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    crate::http::encode_component(&scope)
                );
                if let Some(service) = ch.param("service") {
                    token_url.push_str(&format!(
                        "&service={}",
                        crate::http::encode_component(service)
                    ));
                }
                let token_auth = basic
                    .map(|b| Auth::for_origin_of(&token_url, b))
                    .transpose()?;
                let mut resp = self.client.send(
                    &Req::new(Method::GET, token_url.clone()).auth(token_auth),
                    Payload::Empty,
                )?;
                if resp.status != 200 {
                    let s = resp.status;
                    return Err(match s {
                        401 | 403 => RemoteError::Unauthorized {
                            what: format!("token for {}", self.r),
                            status: s,
                            url: token_url,
                            advice: "set FREEHOLD_REGISTRY_USERNAME and FREEHOLD_REGISTRY_PASSWORD"
                                .into(),
                        },
                        _ => download::status_error(&mut resp, &format!("token for {}", self.r), s),
                    });
                }
                let body = resp.read_body(1 << 20)?;
                let t: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| RemoteError::Protocol {
                        url: token_url.clone(),
                        detail: format!("token response is not JSON: {e}"),
                    })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| RemoteError::Protocol {
                        url: token_url.clone(),
                        detail: "token response has neither \"token\" nor \"access_token\"".into(),
                    })?;
                Auth::for_origin_of(&self.base, format!("Bearer {token}"))
            }
            other => Err(RemoteError::Protocol {
                url: url.to_string(),
                detail: format!("unsupported authentication scheme {other:?}"),
            }),
        }
    }

    fn fail(&self, resp: &mut Resp, what: String) -> RemoteError {
        let s = resp.status;
        match s {
            401 | 403 => RemoteError::Unauthorized {
                what,
                status: s,
                url: resp.url.clone(),
                advice: if self.creds.is_some() {
                    "the registry refused the credentials".into()
                } else {
                    "set FREEHOLD_REGISTRY_USERNAME and FREEHOLD_REGISTRY_PASSWORD".into()
                },
            },
            _ => download::status_error(resp, &what, s),
        }
    }

    /// Checks the registry answers the v2 API (`GET /v2/`; 200, or 401 before login).
    pub fn ping(&self) -> Result<(), RemoteError> {
        let url = format!("{}/v2/", self.base);
        let mut resp = self
            .client
            .send(&Req::new(Method::GET, url), Payload::Empty)?;
        match resp.status {
            200 | 401 => Ok(()),
            _ => Err(self.fail(&mut resp, format!("registry {}", self.r.host))),
        }
    }

    /// Whether the repository already has the blob.
    pub fn blob_exists(&self, sha256: &str, push: bool) -> Result<bool, RemoteError> {
        let mut resp = self.call(
            Req::new(Method::HEAD, self.blob_url(sha256)),
            Payload::Empty,
            push,
        )?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail(&mut resp, format!("{}@sha256:{sha256}", self.r.repo))),
        }
    }

    /// Uploads a file as the blob `sha256` (skipped when the registry has it). Returns
    /// whether bytes were sent.
    pub fn push_blob(&self, sha256: &str, path: &Path) -> Result<bool, RemoteError> {
        if self.blob_exists(sha256, true)? {
            return Ok(false);
        }
        self.upload(sha256, Payload::File(path))?;
        Ok(true)
    }

    /// Uploads bytes as a blob (skipped when present).
    pub fn push_blob_bytes(&self, bytes: &[u8]) -> Result<String, RemoteError> {
        let sha = sha256_bytes(bytes);
        if !self.blob_exists(&sha, true)? {
            self.upload(&sha, Payload::Bytes(bytes))?;
        }
        Ok(sha)
    }

    fn upload(&self, sha256: &str, payload: Payload<'_>) -> Result<(), RemoteError> {
        let what = format!("upload of sha256:{sha256} to {}", self.r);
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.r.repo);
        let mut resp = self.call(Req::new(Method::POST, start.clone()), Payload::Empty, true)?;
        if resp.status != 202 {
            return Err(self.fail(&mut resp, what));
        }
        let location = resp
            .header("location")
            .ok_or_else(|| RemoteError::Protocol {
                url: start.clone(),
                detail: "202 without a Location for the upload".into(),
            })?;
        let location = resolve_location(&resp.url, location)?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest=sha256%3A{sha256}");
        let req = Req::new(Method::PUT, put).header("content-type", "application/octet-stream");
        let mut resp = self.call(req, payload, true)?;
        if resp.status != 201 {
            return Err(self.fail(&mut resp, what));
        }
        self.check_digest_header(&resp, sha256)
    }

    fn check_digest_header(&self, resp: &Resp, sha256: &str) -> Result<(), RemoteError> {
        if let Some(d) = resp.header("docker-content-digest") {
            if d.trim() != format!("sha256:{sha256}") {
                return Err(RemoteError::Protocol {
                    url: resp.url.clone(),
                    detail: format!("registry reports digest {d}, expected sha256:{sha256}"),
                });
            }
        }
        Ok(())
    }

    /// Stores `bytes` as the manifest for `tag`; returns its sha256 hex. Every blob it refers
    /// to must have been pushed first (registries check).
    pub fn put_manifest(&self, tag: &str, bytes: &[u8]) -> Result<String, RemoteError> {
        validate_tag(tag).map_err(|reason| RemoteError::BadRef {
            input: tag.to_string(),
            reason,
        })?;
        let sha = sha256_bytes(bytes);
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.r.repo);
        let req = Req::new(Method::PUT, url).header("content-type", MANIFEST_MEDIA_TYPE);
        let mut resp = self.call(req, Payload::Bytes(bytes), true)?;
        if resp.status != 201 {
            return Err(self.fail(&mut resp, format!("manifest {}:{tag}", self.r.repo)));
        }
        self.check_digest_header(&resp, &sha)?;
        Ok(sha)
    }

    /// Fetches the manifest of `r`'s reference; returns its bytes and sha256 hex, verified
    /// against the digest asked for or the registry's `Docker-Content-Digest`.
    pub fn get_manifest(&self) -> Result<(Vec<u8>, String), RemoteError> {
        let reference = match &self.r.reference {
            Reference::Tag(t) => t.clone(),
            Reference::Digest(d) => format!("sha256:{d}"),
        };
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.r.repo);
        let req = Req::new(Method::GET, url.clone()).header("accept", MANIFEST_MEDIA_TYPE);
        let mut resp = self.call(req, Payload::Empty, false)?;
        if resp.status != 200 {
            return Err(self.fail(&mut resp, format!("manifest {}", self.r)));
        }
        let ct = resp.header("content-type").unwrap_or("").to_string();
        let ct_main = ct.split(';').next().unwrap_or("").trim();
        if ct_main != MANIFEST_MEDIA_TYPE {
            return Err(RemoteError::Protocol {
                url,
                detail: format!(
                    "{} is a {ct_main:?}, not an OCI image manifest ({MANIFEST_MEDIA_TYPE})",
                    self.r
                ),
            });
        }
        let bytes = resp.read_body(MANIFEST_LIMIT)?;
        let sha = sha256_bytes(&bytes);
        let expected = match &self.r.reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => resp
                .header("docker-content-digest")
                .and_then(|d| d.trim().strip_prefix("sha256:"))
                .map(str::to_string),
        };
        if let Some(e) = expected {
            if e != sha {
                return Err(RemoteError::DigestMismatch {
                    what: format!("manifest {}", self.r),
                    expected: e,
                    actual: sha,
                });
            }
        }
        Ok((bytes, sha))
    }

    /// A small blob (config, model card, licence text) into memory, verified by its digest
    /// and size; refused above `limit` bytes.
    pub fn fetch_blob_small(
        &self,
        b: &BlobRef,
        label: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RemoteError> {
        if !is_sha256_hex(&b.sha256) {
            return Err(RemoteError::Protocol {
                url: self.base.clone(),
                detail: format!("blob digest {:?} is not sha256 hex", b.sha256),
            });
        }
        // Authenticate first so the GET carries the credential.
        if !self.blob_exists(&b.sha256, false)? {
            return Err(RemoteError::NotFound {
                what: format!("blob sha256:{} ({label}) of {}", b.sha256, self.r),
                url: self.blob_url(&b.sha256),
                detail: String::new(),
            });
        }
        let (bytes, _) = download::fetch_small(
            &self.client,
            &Source {
                url: self.blob_url(&b.sha256),
                auth: self.current_auth(),
                headers: Vec::new(),
            },
            &Expect {
                what: format!("blob sha256:{} ({label}) of {}", b.sha256, self.r),
                label: label.to_string(),
                size: b.size,
                sha256: Some(b.sha256.clone()),
            },
            limit,
        )?;
        Ok(bytes)
    }

    /// Downloads blob `b` into `dest` (resuming what is there), verified by its digest.
    pub fn download_blob(
        &self,
        b: &BlobRef,
        label: &str,
        dest: &Path,
    ) -> Result<Downloaded, RemoteError> {
        if !is_sha256_hex(&b.sha256) {
            return Err(RemoteError::Protocol {
                url: self.base.clone(),
                detail: format!("blob digest {:?} is not sha256 hex", b.sha256),
            });
        }
        // Authenticate (and learn whether the blob exists) before the ranged transfer.
        if !self.blob_exists(&b.sha256, false)? {
            return Err(RemoteError::NotFound {
                what: format!("blob sha256:{} of {}", b.sha256, self.r),
                url: self.blob_url(&b.sha256),
                detail: String::new(),
            });
        }
        download::download(
            &self.client,
            &Source {
                url: self.blob_url(&b.sha256),
                auth: self.current_auth(),
                headers: Vec::new(),
            },
            &Expect {
                what: format!("blob sha256:{} ({label}) of {}", b.sha256, self.r),
                label: label.to_string(),
                size: b.size,
                sha256: Some(b.sha256.clone()),
            },
            dest,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = OciRef::parse("oci://127.0.0.1:5000/models/tiny:v1").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repo, "models/tiny");
        assert_eq!(r.reference, Reference::Tag("v1".into()));
        assert!(r.is_loopback());
        let r = OciRef::parse("oci://reg.example/a/b").unwrap();
        assert_eq!(r.reference, Reference::Tag("latest".into()));
        assert!(!r.is_loopback());
        let d = "a".repeat(64);
        let r = OciRef::parse(&format!("oci://localhost:1/x@sha256:{d}")).unwrap();
        assert_eq!(r.reference, Reference::Digest(d));
        assert!(OciRef::parse("oci://[::1]:5000/x:y").unwrap().is_loopback());
        assert_eq!(
            OciRef::parse("oci://h/a/b:t").unwrap().to_string(),
            "oci://h/a/b:t"
        );
        for bad in [
            "oci://h",
            "oci:///x",
            "oci://h/Upper",
            "oci://h/a//b",
            "oci://h/a:",
            "oci://h/a:.x",
            "oci://h/a@sha256:xyz",
            "oci://h:0/a",
            "oci://h:99999/a",
            "oci://h h/a",
            "oci://h/a..b",
            "oci://h/-a",
            "http://h/a",
        ] {
            assert!(OciRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        let c = parse_challenge(r#"Bearer realm="a\"b",x=y"#).unwrap();
        assert_eq!(c.param("realm"), Some("a\"b"));
        assert_eq!(c.param("x"), Some("y"));
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("").is_none());
    }
}
