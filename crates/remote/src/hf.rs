//! A Hugging Face-compatible hub: references (`hf://ORG/REPO[/FILE][@REV]`), the revision
//! listing, choosing the files of a model, and verified downloads.
//!
//! Protocol facts (from the hub's public client, `huggingface_hub`'s `hf_api.py` and
//! `file_download.py`):
//! * `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` answers JSON with the commit
//!   `sha` and `siblings: [{rfilename, size, blobId, lfs: {sha256, size, pointerSize}}]`.
//! * `HEAD {endpoint}/{repo}/resolve/{rev}/{file}` answers `X-Repo-Commit`, `X-Linked-Etag`
//!   (the quoted sha256 for LFS files), `X-Linked-Size`, `ETag`, and for LFS files a redirect
//!   to a CDN on another host.
//! * Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`,
//!   `GatedRepo`) and `X-Error-Message`; without a token, a private or missing repository
//!   answers 401.
//!
//! Files are fetched by the commit the listing names, not by the branch, so a branch that
//! moves during a pull cannot mix two commits' files.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use ureq::http::Method;

use crate::download::{self, Expect, Source};
use crate::http::{encode_component, encode_path, Auth, Client, ClientOptions, Payload, Req, Resp};
use crate::{is_sha256_hex, Downloaded, RemoteError};

/// The public hub, used when neither `--endpoint` nor `HF_ENDPOINT` is given.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Largest metadata file (README, LICENSE, config, tokenizer) read into memory.
pub const METADATA_LIMIT: u64 = 64 << 20;

/// Largest revision listing accepted.
const LISTING_LIMIT: u64 = 32 << 20;

/// A parsed `hf://ORG/REPO[/FILE][@REV]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfRef {
    /// `ORG/REPO`.
    pub repo_id: String,
    /// A file path inside the repository, if one was named.
    pub file: Option<String>,
    /// Branch, tag or commit (`main` when not given).
    pub revision: String,
}

impl HfRef {
    /// Parses and validates a reference; the repository, file and revision are checked so that
    /// nothing odd reaches a URL or, later, a file name.
    pub fn parse(input: &str) -> Result<HfRef, RemoteError> {
        let bad = |reason: &str| RemoteError::BadRef {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let rest = input
            .strip_prefix("hf://")
            .ok_or_else(|| bad("expected hf://ORG/REPO[/FILE][@REVISION]"))?;
        let (path, revision) = match rest.rsplit_once('@') {
            Some((p, r)) => (p, r.to_string()),
            None => (rest, "main".to_string()),
        };
        validate_revision(&revision).map_err(|r| bad(&r))?;
        let mut segs = path.splitn(3, '/');
        let org = segs.next().unwrap_or("");
        let repo = segs
            .next()
            .ok_or_else(|| bad("expected ORG/REPO after hf://"))?;
        validate_name(org).map_err(|r| bad(&format!("organisation {org:?}: {r}")))?;
        validate_name(repo).map_err(|r| bad(&format!("repository {repo:?}: {r}")))?;
        let file = match segs.next() {
            None => None,
            Some(f) => {
                validate_file(f).map_err(|r| bad(&format!("file {f:?}: {r}")))?;
                Some(f.to_string())
            }
        };
        Ok(HfRef {
            repo_id: format!("{org}/{repo}"),
            file,
            revision,
        })
    }

    /// `hf://ORG/REPO@REV`, for messages.
    pub fn repo_display(&self) -> String {
        format!("hf://{}@{}", self.repo_id, self.revision)
    }
}

impl std::fmt::Display for HfRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hf://{}", self.repo_id)?;
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
        }
        write!(f, "@{}", self.revision)
    }
}

fn validate_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 96 {
        return Err("must be 1 to 96 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed".into());
    }
    if s.starts_with(['-', '.']) || s.ends_with(['-', '.']) || s.contains("..") || s.contains("--")
    {
        return Err("must not start or end with '-' or '.', nor contain '..' or '--'".into());
    }
    Ok(())
}

fn validate_revision(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 256 {
        return Err("revision must be 1 to 256 characters".into());
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace())
        || s.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "revision {s:?} is not a valid branch, tag or commit"
        ));
    }
    Ok(())
}

/// A repository file path as the hub lists it: `/`-separated, no empty, `.` or `..` segments,
/// no backslashes or control characters.
pub fn validate_file(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 1024 {
        return Err("must be 1 to 1024 bytes".into());
    }
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Err("contains a control character or backslash".into());
    }
    if s.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("has an empty, '.' or '..' path segment".into());
    }
    Ok(())
}

/// One file of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The LFS object's sha256 (lowercase hex), for files stored in LFS.
    pub sha256: Option<String>,
}

impl HubFile {
    /// The last path segment.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A revision's listing.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The commit the revision resolved to (40 hex).
    pub commit: String,
    /// Every file.
    pub files: Vec<HubFile>,
}

#[derive(Deserialize)]
struct ApiRevision {
    sha: Option<String>,
    siblings: Option<Vec<ApiSibling>>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    sha256: String,
    size: u64,
}

/// Parses the listing JSON, validating every field a later step relies on.
pub fn parse_listing(body: &[u8], url: &str) -> Result<Listing, RemoteError> {
    let proto = |detail: String| RemoteError::Protocol {
        url: url.to_string(),
        detail,
    };
    let api: ApiRevision = serde_json::from_slice(body)
        .map_err(|e| proto(format!("revision listing is not the expected JSON: {e}")))?;
    let commit = api
        .sha
        .ok_or_else(|| proto("revision listing has no commit \"sha\"".into()))?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(proto(format!(
            "revision listing's commit {commit:?} is not 40 hex digits"
        )));
    }
    let siblings = api
        .siblings
        .ok_or_else(|| proto("revision listing has no \"siblings\"".into()))?;
    let mut files = Vec::with_capacity(siblings.len());
    for s in siblings {
        validate_file(&s.rfilename)
            .map_err(|r| proto(format!("listed file {:?}: {r}", s.rfilename)))?;
        let (size, sha256) = match s.lfs {
            Some(lfs) => {
                if !is_sha256_hex(&lfs.sha256) {
                    return Err(proto(format!(
                        "{}: lfs.sha256 {:?} is not 64 lowercase hex digits",
                        s.rfilename, lfs.sha256
                    )));
                }
                if s.size.is_some_and(|x| x != lfs.size) {
                    return Err(proto(format!(
                        "{}: size {} differs from lfs.size {}",
                        s.rfilename,
                        s.size.unwrap_or(0),
                        lfs.size
                    )));
                }
                (lfs.size, Some(lfs.sha256))
            }
            None => (
                s.size.ok_or_else(|| {
                    proto(format!(
                        "{}: no size (was ?blobs=true honoured?)",
                        s.rfilename
                    ))
                })?,
                None,
            ),
        };
        files.push(HubFile {
            path: s.rfilename,
            size,
            sha256,
        });
    }
    Ok(Listing {
        commit: commit.to_ascii_lowercase(),
        files,
    })
}

/// What to pull from a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The weights (one GGUF, safetensors shards, or the one file named).
    pub weights: Vec<HubFile>,
    /// Small files fetched before any policy decision: model card, licence texts, configs,
    /// tokenizer.
    pub metadata: Vec<HubFile>,
}

/// Whether a top-level file belongs to the metadata fetched with every model.
pub fn is_metadata_file(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    matches!(
        name,
        "config.json" | "tokenizer.model" | "generation_config.json" | "README.md"
    ) || (name.starts_with("tokenizer") && name.ends_with(".json"))
        || upper.starts_with("LICENSE")
        || upper.starts_with("USE_POLICY")
        || upper.starts_with("NOTICE")
}

/// Chooses the files to pull: the named file, else the GGUF file (by `quant` when there are
/// several), else the safetensors shards; always with the metadata files.
pub fn select(listing: &Listing, r: &HfRef, quant: Option<&str>) -> Result<Selection, RemoteError> {
    let metadata: Vec<HubFile> = listing
        .files
        .iter()
        .filter(|f| !f.path.contains('/') && is_metadata_file(&f.path))
        .filter(|f| r.file.as_deref() != Some(f.path.as_str()))
        .cloned()
        .collect();
    let weights: Vec<HubFile> = if let Some(file) = &r.file {
        let f = listing
            .files
            .iter()
            .find(|f| &f.path == file)
            .ok_or_else(|| {
                RemoteError::Selection(format!(
                    "{}: no file {file:?} at revision {:?} (commit {})",
                    r.repo_display(),
                    r.revision,
                    listing.commit
                ))
            })?;
        vec![f.clone()]
    } else {
        let ggufs: Vec<&HubFile> = listing
            .files
            .iter()
            .filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf"))
            .collect();
        if !ggufs.is_empty() {
            vec![pick_gguf(&ggufs, r, quant)?.clone()]
        } else {
            let mut st: Vec<HubFile> = listing
                .files
                .iter()
                .filter(|f| {
                    let l = f.path.to_ascii_lowercase();
                    l.ends_with(".safetensors") || l.ends_with(".safetensors.index.json")
                })
                .cloned()
                .collect();
            if st.is_empty() {
                return Err(RemoteError::Selection(format!(
                    "{}: no GGUF or safetensors files at commit {}",
                    r.repo_display(),
                    listing.commit
                )));
            }
            if quant.is_some() {
                return Err(RemoteError::Selection(format!(
                    "{}: --quant picks among GGUF files, and this revision has none",
                    r.repo_display()
                )));
            }
            st.sort_by(|a, b| a.path.cmp(&b.path));
            st
        }
    };
    let sel = Selection { weights, metadata };
    // Every file becomes a layer titled by its plain name: two with one name would collide.
    let mut names: Vec<&str> = sel
        .weights
        .iter()
        .chain(&sel.metadata)
        .map(|f| f.name())
        .collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(RemoteError::Selection(format!(
            "{}: two selected files are both named {:?}; name one with hf://ORG/REPO/FILE",
            r.repo_display(),
            w[0]
        )));
    }
    Ok(sel)
}

fn pick_gguf<'a>(
    ggufs: &[&'a HubFile],
    r: &HfRef,
    quant: Option<&str>,
) -> Result<&'a HubFile, RemoteError> {
    let list = |fs: &[&HubFile]| {
        fs.iter()
            .map(|f| format!("{} ({})", f.path, crate::progress::format_bytes(f.size)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen: Vec<&HubFile> = match quant {
        Some(q) => {
            let q = q.to_ascii_uppercase();
            ggufs
                .iter()
                .copied()
                .filter(|f| quant_matches(&f.name().to_ascii_uppercase(), &q))
                .collect()
        }
        None => ggufs.to_vec(),
    };
    match (chosen.len(), quant) {
        (1, _) => Ok(chosen[0]),
        (0, Some(q)) => Err(RemoteError::Selection(format!(
            "{}: no GGUF file matches --quant {q}; the files are: {}",
            r.repo_display(),
            list(ggufs)
        ))),
        (_, Some(q)) => Err(RemoteError::Selection(format!(
            "{}: several GGUF files match --quant {q}: {}; name one with hf://{}/FILE",
            r.repo_display(),
            list(&chosen),
            r.repo_id
        ))),
        (_, None) => Err(RemoteError::Selection(format!(
            "{}: several GGUF files: {}; choose one with --quant (e.g. --quant Q4_K_M) or hf://{}/FILE",
            r.repo_display(),
            list(ggufs),
            r.repo_id
        ))),
    }
}

/// `Q4_K` must not match `Q4_K_M`: the quant name must stand between separators (`_` only
/// before it, since quant names contain `_` themselves).
fn quant_matches(name: &str, quant: &str) -> bool {
    let sep_before = |c: Option<char>| c.is_none_or(|c| matches!(c, '-' | '_' | '.'));
    let sep_after = |c: Option<char>| c.is_none_or(|c| matches!(c, '-' | '.'));
    let mut from = 0;
    while let Some(i) = name[from..].find(quant) {
        let at = from + i;
        let before = name[..at].chars().next_back();
        let after = name[at + quant.len()..].chars().next();
        if sep_before(before) && sep_after(after) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The hub token: `HF_TOKEN`, else the file named by `HF_TOKEN_PATH`, else `$HF_HOME/token`
/// (`HF_HOME` defaulting to `~/.cache/huggingface`), as the hub's own client looks for it.
pub fn token_from_env() -> Option<String> {
    let nonempty = |s: String| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    };
    if let Some(t) = std::env::var("HF_TOKEN").ok().and_then(nonempty) {
        return Some(t);
    }
    let path = if let Some(p) = std::env::var_os("HF_TOKEN_PATH").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else if let Some(h) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        PathBuf::from(h).join("token")
    } else {
        let home = std::env::var_os("HOME").filter(|p| !p.is_empty())?;
        Path::new(&home).join(".cache/huggingface/token")
    };
    std::fs::read_to_string(path).ok().and_then(nonempty)
}

/// The endpoint: the argument, else `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
pub fn endpoint_from(arg: Option<&str>) -> String {
    arg.map(str::to_string)
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// What a `HEAD` on a file's resolve URL says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
    /// The sha256 from `X-Linked-Etag` (or `ETag`) when it is one.
    pub sha256: Option<String>,
    /// `X-Linked-Size`, else `Content-Length`.
    pub size: Option<u64>,
}

/// A client for one hub endpoint.
pub struct HfClient {
    client: Client,
    endpoint: String,
    auth: Option<Auth>,
}

impl HfClient {
    /// A client for `endpoint` (`http://` or `https://`), sending `token` only to that origin.
    pub fn new(
        endpoint: &str,
        token: Option<String>,
        opts: ClientOptions,
    ) -> Result<HfClient, RemoteError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(RemoteError::BadUrl {
                url: endpoint,
                detail: "the hub endpoint must be an http:// or https:// URL".into(),
            });
        }
        let auth = match token {
            Some(t) => Some(Auth::for_origin_of(&endpoint, format!("Bearer {t}"))?),
            None => {
                crate::http::origin_of(&endpoint)?;
                None
            }
        };
        Ok(HfClient {
            client: Client::new(opts),
            endpoint,
            auth,
        })
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn resolve_url(&self, r: &HfRef, commit: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            r.repo_id,
            encode_component(commit),
            encode_path(file)
        )
    }

    fn hub_error(&self, resp: &mut Resp, what: String) -> RemoteError {
        let code = resp.header("x-error-code").unwrap_or("").to_string();
        let message = resp.header("x-error-message").unwrap_or("").to_string();
        let status = resp.status;
        match status {
            401 | 403 => {
                let advice = if code == "GatedRepo" {
                    format!("the repository is gated: accept its terms on the hub, then use a token with access ({message})")
                } else if self.auth.is_none() {
                    "the repository is private, gated or does not exist; set HF_TOKEN (or write a token to $HF_HOME/token) and retry".into()
                } else {
                    "the token was refused or has no access to this repository".into()
                };
                RemoteError::Unauthorized {
                    what,
                    status,
                    url: resp.url.clone(),
                    advice,
                }
            }
            404 => {
                let mut detail = if message.is_empty() {
                    resp.error_text()
                } else {
                    message
                };
                if !code.is_empty() {
                    detail = format!("{code}: {detail}");
                }
                RemoteError::NotFound {
                    what,
                    url: resp.url.clone(),
                    detail,
                }
            }
            _ => download::status_error(resp, &what, status),
        }
    }

    /// The listing of `r`'s revision (the commit it resolves to and every file).
    pub fn listing(&self, r: &HfRef) -> Result<Listing, RemoteError> {
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.endpoint,
            r.repo_id,
            encode_component(&r.revision)
        );
        let req = Req::new(Method::GET, url.clone()).auth(self.auth.clone());
        let mut resp = self.client.send(&req, Payload::Empty)?;
        if resp.status != 200 {
            let what = format!("revision {:?} of hf://{}", r.revision, r.repo_id);
            return Err(self.hub_error(&mut resp, what));
        }
        let body = resp.read_body(LISTING_LIMIT)?;
        parse_listing(&body, &url)
    }

    /// `HEAD` of a file at the listed commit, cross-checked against the listing: the commit,
    /// the size and (for LFS files) the sha256 must agree, or the pull stops here.
    pub fn check_file(
        &self,
        r: &HfRef,
        listing: &Listing,
        f: &HubFile,
    ) -> Result<FileMeta, RemoteError> {
        let url = self.resolve_url(r, &listing.commit, &f.path);
        let what = self.what(r, listing, f);
        // The redirect's own headers carry the metadata; its target is not contacted.
        let req = Req::new(Method::HEAD, url.clone())
            .auth(self.auth.clone())
            .no_follow();
        let mut resp = self.client.send(&req, Payload::Empty)?;
        if !(200..400).contains(&resp.status) {
            return Err(self.hub_error(&mut resp, what));
        }
        let meta = file_meta(&resp);
        let mismatch = |detail: String| RemoteError::Protocol {
            url: url.clone(),
            detail: format!("{what}: {detail}"),
        };
        if let Some(c) = &meta.commit {
            if !c.eq_ignore_ascii_case(&listing.commit) {
                return Err(mismatch(format!(
                    "X-Repo-Commit {c} differs from the listed commit {}",
                    listing.commit
                )));
            }
        }
        if let Some(s) = meta.size {
            if s != f.size {
                return Err(mismatch(format!(
                    "the hub reports {s} bytes, the listing {}",
                    f.size
                )));
            }
        }
        if let (Some(a), Some(b)) = (&meta.sha256, &f.sha256) {
            if a != b {
                return Err(mismatch(format!(
                    "X-Linked-Etag sha256 {a} differs from the listed LFS oid {b}"
                )));
            }
        }
        Ok(meta)
    }

    fn what(&self, r: &HfRef, listing: &Listing, f: &HubFile) -> String {
        format!(
            "hf://{}/{}@{} (commit {})",
            r.repo_id, f.path, r.revision, listing.commit
        )
    }

    fn source(&self, r: &HfRef, listing: &Listing, f: &HubFile) -> Source {
        Source {
            url: self.resolve_url(r, &listing.commit, &f.path),
            auth: self.auth.clone(),
            headers: Vec::new(),
        }
    }

    fn expect(&self, r: &HfRef, listing: &Listing, f: &HubFile, meta: &FileMeta) -> Expect {
        Expect {
            what: self.what(r, listing, f),
            label: f.name().to_string(),
            size: f.size,
            sha256: f.sha256.clone().or_else(|| meta.sha256.clone()),
        }
    }

    /// A small file into memory, verified (sha256 for LFS files, size for the others);
    /// returns the bytes and their sha256.
    pub fn fetch_small(
        &self,
        r: &HfRef,
        listing: &Listing,
        f: &HubFile,
    ) -> Result<(Vec<u8>, String), RemoteError> {
        let meta = self.check_file(r, listing, f)?;
        download::fetch_small(
            &self.client,
            &self.source(r, listing, f),
            &self.expect(r, listing, f, &meta),
            METADATA_LIMIT,
        )
        .map_err(|e| self.map_get_error(e, r, listing, f))
    }

    /// A file into `dest` (resuming what is there), verified before returning.
    pub fn download(
        &self,
        r: &HfRef,
        listing: &Listing,
        f: &HubFile,
        dest: &Path,
    ) -> Result<Downloaded, RemoteError> {
        let meta = self.check_file(r, listing, f)?;
        download::download(
            &self.client,
            &self.source(r, listing, f),
            &self.expect(r, listing, f, &meta),
            dest,
        )
        .map_err(|e| self.map_get_error(e, r, listing, f))
    }

    fn map_get_error(
        &self,
        e: RemoteError,
        r: &HfRef,
        listing: &Listing,
        f: &HubFile,
    ) -> RemoteError {
        match e {
            RemoteError::Unauthorized { status, url, .. } if self.auth.is_none() => {
                RemoteError::Unauthorized {
                    what: self.what(r, listing, f),
                    status,
                    url,
                    advice: "set HF_TOKEN (or write a token to $HF_HOME/token) and retry".into(),
                }
            }
            e => e,
        }
    }
}

fn file_meta(resp: &Resp) -> FileMeta {
    let unquote = |v: &str| {
        v.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_ascii_lowercase()
    };
    let etag = resp
        .header("x-linked-etag")
        .or_else(|| resp.header("etag"))
        .map(unquote);
    FileMeta {
        commit: resp.header("x-repo-commit").map(|s| s.trim().to_string()),
        // A git blob id (40 hex) is not a sha256: only a 64-hex etag is one.
        sha256: etag.filter(|e| is_sha256_hex(e)),
        size: resp
            .header("x-linked-size")
            .or_else(|| {
                (resp.status == 200)
                    .then(|| resp.header("content-length"))
                    .flatten()
            })
            .and_then(|v| v.trim().parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Listing {
        Listing {
            commit: "a".repeat(40),
            files: names
                .iter()
                .map(|n| HubFile {
                    path: n.to_string(),
                    size: 10,
                    sha256: None,
                })
                .collect(),
        }
    }

    #[test]
    fn parses_references() {
        let r = HfRef::parse("hf://org/repo").unwrap();
        assert_eq!(
            (r.repo_id.as_str(), r.file.as_deref(), r.revision.as_str()),
            ("org/repo", None, "main")
        );
        let r = HfRef::parse("hf://org/repo/sub/m.gguf@refs/pr/1").unwrap();
        assert_eq!(r.file.as_deref(), Some("sub/m.gguf"));
        assert_eq!(r.revision, "refs/pr/1");
        for bad in [
            "org/repo",
            "hf://org",
            "hf://org/",
            "hf://or g/repo",
            "hf://org/re..po",
            "hf://org/repo/../x",
            "hf://org/repo/a//b",
            "hf://org/repo@",
            "hf://org/repo@a b",
            "hf://org/repo@../x",
            "hf://org/repo/a\\b",
        ] {
            assert!(HfRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn listing_json_is_validated() {
        let ok = br#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[
            {"rfilename":"README.md","size":5,"blobId":"x"},
            {"rfilename":"m.gguf","size":7,"lfs":{"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":7,"pointerSize":130}}]}"#;
        let l = parse_listing(ok, "u").unwrap();
        assert_eq!(l.files.len(), 2);
        assert!(l.files[1].sha256.is_some());
        for bad in [
            &br#"{"siblings":[]}"#[..],
            br#"{"sha":"xyz","siblings":[]}"#,
            br#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"../x","size":1}]}"#,
            br#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"a"}]}"#,
            br#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"a","size":1,"lfs":{"sha256":"ABC","size":1}}]}"#,
            br#"not json"#,
        ] {
            assert!(parse_listing(bad, "u").is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn selects_gguf_by_quant() {
        let l = listing(&[
            "README.md",
            "LICENSE.txt",
            "config.json",
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "m-Q8_0.gguf",
            "images/x.png",
            "sub/README.md",
        ]);
        let r = HfRef::parse("hf://o/r").unwrap();
        let e = select(&l, &r, None).unwrap_err().to_string();
        assert!(e.contains("m-Q8_0.gguf") && e.contains("--quant"), "{e}");
        let s = select(&l, &r, Some("q4_k_m")).unwrap();
        assert_eq!(s.weights[0].path, "m-Q4_K_M.gguf");
        let meta: Vec<_> = s.metadata.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(meta, ["README.md", "LICENSE.txt", "config.json"]);
        let e = select(&l, &r, Some("Q4_K")).unwrap_err().to_string();
        assert!(e.contains("no GGUF file matches"), "{e}");
        let e = select(&l, &r, Some("Q5_0")).unwrap_err().to_string();
        assert!(e.contains("m-Q4_K_M.gguf"), "{e}");
    }

    #[test]
    fn selects_safetensors_and_named_files() {
        let l = listing(&[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model-00002-of-00002.safetensors",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "NOTICE",
            "USE_POLICY.md",
        ]);
        let r = HfRef::parse("hf://o/r").unwrap();
        let s = select(&l, &r, None).unwrap();
        let w: Vec<_> = s.weights.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            w,
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json"
            ]
        );
        assert_eq!(s.metadata.len(), 5);
        let r = HfRef::parse("hf://o/r/NOTICE").unwrap();
        let s = select(&l, &r, None).unwrap();
        assert_eq!(s.weights[0].path, "NOTICE");
        assert!(s.metadata.iter().all(|f| f.path != "NOTICE"));
        let r = HfRef::parse("hf://o/r/missing.gguf").unwrap();
        assert!(select(&l, &r, None)
            .unwrap_err()
            .to_string()
            .contains("missing.gguf"));
        let e = select(
            &listing(&["README.md"]),
            &HfRef::parse("hf://o/r").unwrap(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no GGUF or safetensors"), "{e}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let l = listing(&["a/m.gguf", "README.md"]);
        let r = HfRef::parse("hf://o/r").unwrap();
        assert!(select(&l, &r, None).is_ok());
        let l = listing(&["a/README.md", "README.md"]);
        let r = HfRef::parse("hf://o/r/a/README.md").unwrap();
        assert!(select(&l, &r, None).is_err());
    }

    #[test]
    fn quant_boundaries() {
        assert!(quant_matches("M-Q4_K_M.GGUF", "Q4_K_M"));
        assert!(!quant_matches("M-Q4_K_M.GGUF", "Q4_K"));
        assert!(quant_matches("Q8_0.GGUF", "Q8_0"));
        assert!(!quant_matches("XQ8_0.GGUF", "Q8_0"));
    }
}
