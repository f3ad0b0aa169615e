//! `fake_hub`: a stand-in for a Hugging Face-compatible hub (the real one cannot be reached
//! from tests), answering the way the hub's HTTP API does: the revision listing with
//! `?blobs=true`, `resolve` URLs with `X-Repo-Commit` / `X-Linked-Etag` / `X-Linked-Size`,
//! LFS files redirected (302) to a second server on another host name standing for the CDN,
//! `Range` requests, `X-Error-Code` on errors, and 401 for private repositories without the
//! token. Faults can be injected per file: corrupted bytes, a connection dropped mid-body,
//! a run of 5xx answers.
//!
//! A std `TcpListener`, one thread per connection, `Connection: close` on every answer.
//! Shared by the remote crate's tests and the CLI's end-to-end tests (`#[path]` include).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// One file of a fake repository.
#[derive(Clone)]
pub struct FakeFile {
    /// Path in the repository.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
    /// Stored in LFS (published sha256, served from the CDN host).
    pub lfs: bool,
}

/// A fault to inject on the next requests for a file.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Serve these bytes instead of the real ones (same length), listing unchanged.
    Corrupt,
    /// Send the headers and this many body bytes, then drop the connection; `times` times.
    DropAfter { bytes: usize, times: usize },
    /// Answer this status `times` times before serving normally.
    Status { code: u16, times: usize },
}

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `hub` or `cdn`.
    pub server: &'static str,
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, (String, Vec<FakeFile>, bool)>,
    faults: BTreeMap<String, Fault>,
    log: Vec<Logged>,
    token: Option<String>,
}

/// A running fake hub (two listeners: the hub on 127.0.0.1, the CDN on `localhost`).
pub struct FakeHub {
    /// Hub address.
    pub addr: SocketAddr,
    /// CDN address.
    pub cdn_addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn git_blob_id(b: &[u8]) -> String {
    // Not git's real blob hash (sha1 of a header + content): any 40-hex stand-in serves to
    // check that a non-sha256 etag is never taken for a digest.
    sha256_hex(b)[..40].to_string()
}

impl FakeHub {
    /// Starts both listeners; they live until the process ends.
    pub fn start() -> FakeHub {
        let state = Arc::new(Mutex::new(State::default()));
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = hub.local_addr().unwrap();
        let cdn_addr = cdn.local_addr().unwrap();
        for (listener, server) in [(hub, "hub"), (cdn, "cdn")] {
            let state = state.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, server, &state, cdn_addr);
                    });
                }
            });
        }
        FakeHub {
            addr,
            cdn_addr,
            state,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds (or replaces) a repository at `commit` (40 hex); `private` needs the token.
    pub fn add_repo(&self, repo_id: &str, commit: &str, files: Vec<FakeFile>, private: bool) {
        self.state
            .lock()
            .unwrap()
            .repos
            .insert(repo_id.to_string(), (commit.to_string(), files, private));
    }

    /// Token the private repositories accept.
    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_string());
    }

    /// Injects a fault for requests whose path ends with `/file`.
    pub fn fault(&self, file: &str, f: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(file.to_string(), f);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forgets the log.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn respond(
    w: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
    send_body: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {code} {reason}\r\nconnection: close\r\n");
    let mut has_len = false;
    for (k, v) in headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if send_body {
        w.write_all(body)?;
    }
    w.flush()
}

/// The repository a request names at revision `rev` (a branch name or its commit), or the
/// error the hub answers: 401 for a missing or private repository without a token (the hub
/// does not reveal which), 404 for an unknown revision.
#[allow(clippy::type_complexity)]
fn find_repo(
    st: &State,
    repo_id: &str,
    rev: &str,
    token_ok: bool,
) -> Result<(String, Vec<FakeFile>, bool), (u16, &'static str, String)> {
    let Some((commit, files, private)) = st.repos.get(repo_id).cloned() else {
        return Err((401, "RepoNotFound", "Repository not found".into()));
    };
    if private && !token_ok {
        return Err((401, "RepoNotFound", "Invalid username or password.".into()));
    }
    if rev != "main" && rev != commit {
        return Err((404, "RevisionNotFound", format!("Invalid rev id: {rev}")));
    }
    Ok((commit, files, private))
}

fn error(
    w: &mut TcpStream,
    code: u16,
    err_code: &str,
    msg: &str,
    head: bool,
) -> std::io::Result<()> {
    let body = format!("{{\"error\":\"{msg}\"}}");
    respond(
        w,
        code,
        &[
            ("x-error-code".into(), err_code.into()),
            ("x-error-message".into(), msg.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body.as_bytes(),
        !head,
    )
}

fn parse_range(v: &str, len: usize) -> Option<(usize, usize)> {
    let r = v.strip_prefix("bytes=")?;
    let (a, b) = r.split_once('-')?;
    let a: usize = a.parse().ok()?;
    let b: usize = if b.is_empty() {
        len.checked_sub(1)?
    } else {
        b.parse().ok()?
    };
    (a <= b && b < len).then_some((a, b))
}

fn serve(
    mut conn: TcpStream,
    server: &'static str,
    state: &Mutex<State>,
    cdn_addr: SocketAddr,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::io::copy(&mut (&mut reader).take(n), &mut std::io::sink())?;
    }
    let head = method == "HEAD";
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let path = path.to_string();
    let query = query.to_string();
    let mut st = state.lock().unwrap();
    st.log.push(Logged {
        server,
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
    });

    // Faults apply to the file a path ends with.
    let fault_key = st
        .faults
        .keys()
        .find(|k| path.ends_with(&format!("/{k}")) || query.contains(&format!("file={k}")))
        .cloned();
    let mut fault = fault_key.as_ref().and_then(|k| st.faults.get(k).cloned());
    if let (Some(k), Some(Fault::Status { code, times })) = (&fault_key, &fault) {
        if method == "GET" || server == "cdn" {
            let (code, times) = (*code, *times);
            if times <= 1 {
                st.faults.remove(k);
            } else {
                st.faults.insert(
                    k.clone(),
                    Fault::Status {
                        code,
                        times: times - 1,
                    },
                );
            }
            drop(st);
            return error(&mut conn, code, "Unavailable", "try again later", head);
        }
        fault = None;
    }

    if server == "cdn" {
        // /lfs/<sha256>?file=<name>
        let Some(sha) = path.strip_prefix("/lfs/") else {
            drop(st);
            return error(&mut conn, 404, "EntryNotFound", "no such object", head);
        };
        let found = st
            .repos
            .values()
            .flat_map(|(_, files, _)| files.iter())
            .find(|f| f.lfs && sha256_hex(&f.bytes) == sha)
            .map(|f| f.bytes.clone());
        let Some(mut bytes) = found else {
            drop(st);
            return error(&mut conn, 404, "EntryNotFound", "no such object", head);
        };
        if matches!(fault, Some(Fault::Corrupt)) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
        }
        let drop_after = match (&fault_key, &fault) {
            (Some(k), Some(Fault::DropAfter { bytes: n, times })) if !head => {
                let (n, times) = (*n, *times);
                if times <= 1 {
                    st.faults.remove(k);
                } else {
                    st.faults.insert(
                        k.clone(),
                        Fault::DropAfter {
                            bytes: n,
                            times: times - 1,
                        },
                    );
                }
                Some(n)
            }
            _ => None,
        };
        drop(st);
        return send_file(&mut conn, &headers, &bytes, Vec::new(), head, drop_after);
    }

    // The hub.
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let token_ok = |st: &State| {
        st.token
            .as_ref()
            .is_some_and(|t| headers.get("authorization") == Some(&format!("Bearer {t}")))
    };
    if segs.len() >= 6 && segs[0] == "api" && segs[1] == "models" && segs[4] == "revision" {
        let repo_id = format!("{}/{}", segs[2], segs[3]);
        let rev = segs[5..].join("/").replace("%2F", "/");
        let found = find_repo(&st, &repo_id, &rev, token_ok(&st));
        drop(st);
        let (commit, files, private) = match found {
            Ok(r) => r,
            Err((status, code, message)) => return error(&mut conn, status, code, &message, head),
        };
        let siblings: Vec<String> = files
            .iter()
            .map(|f| {
                if f.lfs {
                    format!(
                        r#"{{"rfilename":"{}","size":{},"blobId":"{}","lfs":{{"sha256":"{}","size":{},"pointerSize":134}}}}"#,
                        f.path,
                        f.bytes.len(),
                        git_blob_id(&f.bytes),
                        sha256_hex(&f.bytes),
                        f.bytes.len()
                    )
                } else {
                    format!(
                        r#"{{"rfilename":"{}","size":{},"blobId":"{}"}}"#,
                        f.path,
                        f.bytes.len(),
                        git_blob_id(&f.bytes)
                    )
                }
            })
            .collect();
        let body = format!(
            r#"{{"_id":"x","id":"{repo_id}","sha":"{commit}","private":{private},"siblings":[{}]}}"#,
            siblings.join(",")
        );
        return respond(
            &mut conn,
            200,
            &[("content-type".into(), "application/json".into())],
            body.as_bytes(),
            !head,
        );
    }
    if segs.len() >= 5 && segs[2] == "resolve" {
        let repo_id = format!("{}/{}", segs[0], segs[1]);
        let rev = segs[3].replace("%2F", "/");
        let file = segs[4..].join("/");
        let found = find_repo(&st, &repo_id, &rev, token_ok(&st));
        drop(st);
        let (commit, files, _) = match found {
            Ok(r) => r,
            Err((status, code, message)) => return error(&mut conn, status, code, &message, head),
        };
        let Some(f) = files.iter().find(|f| f.path == file) else {
            return error(
                &mut conn,
                404,
                "EntryNotFound",
                &format!("{file} does not exist on \"{rev}\""),
                head,
            );
        };
        let mut hdrs = vec![("x-repo-commit".to_string(), commit.clone())];
        if f.lfs {
            let sha = sha256_hex(&f.bytes);
            hdrs.push(("x-linked-etag".into(), format!("\"{sha}\"")));
            hdrs.push(("x-linked-size".into(), f.bytes.len().to_string()));
            hdrs.push(("etag".into(), format!("\"{}\"", git_blob_id(&f.bytes))));
            hdrs.push((
                "location".into(),
                format!(
                    "http://localhost:{}/lfs/{sha}?file={}",
                    cdn_addr.port(),
                    f.path
                ),
            ));
            return respond(&mut conn, 302, &hdrs, b"", false);
        }
        hdrs.push(("etag".into(), format!("\"{}\"", git_blob_id(&f.bytes))));
        let mut bytes = f.bytes.clone();
        if matches!(fault, Some(Fault::Corrupt)) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
        }
        return send_file(&mut conn, &headers, &bytes, hdrs, head, None);
    }
    drop(st);
    error(&mut conn, 404, "NotFound", "no such route", head)
}

fn send_file(
    conn: &mut TcpStream,
    req_headers: &BTreeMap<String, String>,
    bytes: &[u8],
    mut hdrs: Vec<(String, String)>,
    head: bool,
    drop_after: Option<usize>,
) -> std::io::Result<()> {
    hdrs.push(("accept-ranges".into(), "bytes".into()));
    let (code, body) = match req_headers.get("range") {
        Some(r) => match parse_range(r, bytes.len()) {
            Some((a, b)) => {
                hdrs.push((
                    "content-range".into(),
                    format!("bytes {a}-{b}/{}", bytes.len()),
                ));
                (206, &bytes[a..=b])
            }
            None => {
                hdrs.push(("content-range".into(), format!("bytes */{}", bytes.len())));
                return respond(conn, 416, &hdrs, b"", !head);
            }
        },
        None => (200, bytes),
    };
    if let Some(n) = drop_after {
        hdrs.push(("content-length".into(), body.len().to_string()));
        respond(conn, code, &hdrs, &body[..n.min(body.len())], true)?;
        // Close abruptly mid-body.
        return conn.shutdown(std::net::Shutdown::Both);
    }
    respond(conn, code, &hdrs, body, !head)
}
