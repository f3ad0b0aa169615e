//! Resumable, verified downloads to a caller-chosen path.
//!
//! The destination is a *partial* file: it may already hold a prefix from an interrupted run,
//! which is kept and continued with `Range` requests. Large files are fetched in several
//! ranges at once; their progress is recorded in a small journal beside the partial file
//! (`<partial>.parts`, written only after the data it describes is synced), so a killed
//! parallel download also resumes. Success is returned only once the whole file hashes to the
//! published sha256 (or, for sources that publish none, has the published size); a file that
//! fails the check is deleted so a later run cannot resume from bad bytes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use ureq::http::Method;

use crate::http::{Auth, Client, Payload, Req, Resp};
use crate::progress::{Bar, Counter};
use crate::{is_sha256_hex, sha256_file, RemoteError};

/// Journal bytes between syncs in a parallel download: the most a crash can make us re-fetch
/// per part.
const JOURNAL_EVERY: u64 = 8 << 20;

/// Where to fetch from.
#[derive(Clone, Debug)]
pub struct Source {
    /// Absolute URL (redirects are followed).
    pub url: String,
    /// Credential for the URL's own origin.
    pub auth: Option<Auth>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

/// What the bytes must turn out to be.
#[derive(Clone, Debug)]
pub struct Expect {
    /// How to name the file in messages, e.g. `hf://org/repo/model.gguf@<commit>`.
    pub what: String,
    /// Label of the progress bar (usually the file name).
    pub label: String,
    /// Published size in bytes.
    pub size: u64,
    /// Published sha256 (64 lowercase hex); `None` for sources that publish only a size.
    pub sha256: Option<String>,
}

/// A completed, verified download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// sha256 of the file (lowercase hex): the published one, checked.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes that were already in the partial file when this run started.
    pub resumed_from: u64,
}

/// The journal path kept beside a partial file during parallel downloads.
pub fn journal_path(partial: &Path) -> PathBuf {
    let mut s = partial.as_os_str().to_os_string();
    s.push(".parts");
    PathBuf::from(s)
}

/// Downloads `src` into `dest` (resuming what is there) and verifies it against `expect`.
/// On a digest or size mismatch `dest` is removed and the error says nothing was stored.
/// When the failing file had been resumed from an earlier run's bytes, those bytes may be
/// the culprit (a crash mid-write, a journal lost): it is fetched once more from zero
/// before giving up.
pub fn download(
    client: &Client,
    src: &Source,
    expect: &Expect,
    dest: &Path,
) -> Result<Downloaded, RemoteError> {
    let had_partial = std::fs::metadata(dest).is_ok_and(|m| m.len() > 0);
    match download_once(client, src, expect, dest) {
        Err(RemoteError::DigestMismatch { .. } | RemoteError::SizeMismatch { .. })
            if had_partial =>
        {
            let _ = std::fs::remove_file(dest);
            let _ = std::fs::remove_file(journal_path(dest));
            download_once(client, src, expect, dest)
        }
        r => r,
    }
}

fn download_once(
    client: &Client,
    src: &Source,
    expect: &Expect,
    dest: &Path,
) -> Result<Downloaded, RemoteError> {
    if let Some(h) = &expect.sha256 {
        if !is_sha256_hex(h) {
            return Err(RemoteError::Protocol {
                url: src.url.clone(),
                detail: format!(
                    "{}: published sha256 {h:?} is not 64 hex digits",
                    expect.what
                ),
            });
        }
    }
    let io = |e: std::io::Error| RemoteError::Io {
        path: dest.to_path_buf(),
        detail: e.to_string(),
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dest)
        .map_err(io)?;
    let journal = journal_path(dest);
    let opts = client.options();
    let mut parts = read_journal(&journal, expect.size);
    if parts.is_none() {
        // No usable journal: any partial file is a contiguous prefix from a single stream.
        let _ = std::fs::remove_file(&journal);
        let len = file.metadata().map_err(io)?.len();
        let len = if len > expect.size {
            file.set_len(0).map_err(io)?;
            0
        } else {
            len
        };
        let remaining = expect.size - len;
        if opts.parts > 1 && remaining >= opts.parallel_threshold.max(1) {
            parts = Some(split(len, expect.size, opts.parts));
        } else {
            let bar = Bar::new(&expect.label, expect.size, len, opts.progress);
            let c = bar.counter();
            sequential(client, src, expect, &file, dest, len, &c)?;
            bar.finish();
            return finish(file, dest, &journal, expect, len);
        }
    }
    let parts = parts.unwrap_or_default();
    let already: u64 =
        parts.iter().map(|p| p.done).sum::<u64>() + parts.first().map_or(0, |p| p.start);
    if file.metadata().map_err(io)?.len() < expect.size {
        // Pre-size so every part can write at its own offset.
        file.set_len(expect.size).map_err(io)?;
    }
    let bar = Bar::new(&expect.label, expect.size, already, opts.progress);
    match parallel(
        client,
        src,
        expect,
        &file,
        dest,
        &journal,
        parts,
        &bar.counter(),
    ) {
        Ok(()) => {}
        Err(Fallback::RangeIgnored) => {
            // The server sends whole files only: start over in one stream.
            let _ = std::fs::remove_file(&journal);
            file.set_len(0).map_err(io)?;
            bar.counter().sub(bar.counter().get());
            sequential(client, src, expect, &file, dest, 0, &bar.counter())?;
        }
        Err(Fallback::Error(e)) => return Err(e),
    }
    bar.finish();
    finish(file, dest, &journal, expect, already)
}

fn finish(
    file: File,
    dest: &Path,
    journal: &Path,
    expect: &Expect,
    resumed_from: u64,
) -> Result<Downloaded, RemoteError> {
    file.sync_all().map_err(|e| RemoteError::Io {
        path: dest.to_path_buf(),
        detail: format!("fsync: {e}"),
    })?;
    drop(file);
    let _ = std::fs::remove_file(journal);
    let (actual, size) = sha256_file(dest)?;
    if size != expect.size {
        let _ = std::fs::remove_file(dest);
        return Err(RemoteError::SizeMismatch {
            what: expect.what.clone(),
            expected: expect.size,
            actual: size,
        });
    }
    if let Some(expected) = &expect.sha256 {
        if &actual != expected {
            let _ = std::fs::remove_file(dest);
            return Err(RemoteError::DigestMismatch {
                what: expect.what.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(Downloaded {
        sha256: actual,
        size,
        resumed_from,
    })
}

/// One byte range still to fetch: `[start + done, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    start: u64,
    end: u64,
    done: u64,
}

fn split(from: u64, size: u64, n: usize) -> Vec<Part> {
    let n = n.max(1) as u64;
    let chunk = (size - from).div_ceil(n).max(1);
    let mut parts = Vec::new();
    let mut s = from;
    while s < size {
        let e = (s + chunk).min(size);
        parts.push(Part {
            start: s,
            end: e,
            done: 0,
        });
        s = e;
    }
    parts
}

fn read_journal(path: &Path, size: u64) -> Option<Vec<Part>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != format!("freehold-parts v1 {size}") {
        return None;
    }
    let mut parts = Vec::new();
    for line in lines {
        let v: Vec<u64> = line
            .split(' ')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [start, end, done] = v[..] else {
            return None;
        };
        if start > end || end > size || done > end - start {
            return None;
        }
        parts.push(Part { start, end, done });
    }
    // The parts must tile a suffix of the file without gaps or overlaps.
    for w in parts.windows(2) {
        if w[0].end != w[1].start {
            return None;
        }
    }
    if parts.last().map(|p| p.end) != Some(size) {
        return None;
    }
    Some(parts)
}

fn write_journal(path: &Path, size: u64, parts: &[Part]) -> std::io::Result<()> {
    let mut text = format!("freehold-parts v1 {size}\n");
    for p in parts {
        text.push_str(&format!("{} {} {}\n", p.start, p.end, p.done));
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

enum Fallback {
    RangeIgnored,
    Error(RemoteError),
}

#[allow(clippy::too_many_arguments)]
fn parallel(
    client: &Client,
    src: &Source,
    expect: &Expect,
    file: &File,
    dest: &Path,
    journal: &Path,
    parts: Vec<Part>,
    counter: &Counter,
) -> Result<(), Fallback> {
    let state = Mutex::new(parts.clone());
    let journal_lock = Mutex::new(());
    let abort = AtomicBool::new(false);
    write_journal(journal, expect.size, &parts).map_err(|e| {
        Fallback::Error(RemoteError::Io {
            path: journal.to_path_buf(),
            detail: e.to_string(),
        })
    })?;
    let results: Vec<Result<(), Fallback>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.start + p.done < p.end)
            .map(|(i, p)| {
                let p = *p;
                let state = &state;
                let journal_lock = &journal_lock;
                let abort = &abort;
                let counter = counter.clone();
                s.spawn(move || {
                    let mut since_sync = 0u64;
                    let mut on_progress = |pos: u64, n: u64| -> Result<(), RemoteError> {
                        counter.add(n);
                        since_sync += n;
                        let snapshot = {
                            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                            st[i].done = pos - p.start;
                            (since_sync >= JOURNAL_EVERY || pos == p.end).then(|| st.clone())
                        };
                        if let Some(snap) = snapshot {
                            since_sync = 0;
                            let _g = journal_lock.lock().unwrap_or_else(|e| e.into_inner());
                            // Data first, then the journal that vouches for it.
                            let io = |e: std::io::Error| RemoteError::Io {
                                path: dest.to_path_buf(),
                                detail: e.to_string(),
                            };
                            file.sync_data().map_err(io)?;
                            write_journal(journal, expect.size, &snap).map_err(io)?;
                        }
                        if abort.load(Ordering::Relaxed) {
                            return Err(RemoteError::Transport {
                                url: src.url.clone(),
                                detail: "cancelled: another part failed".into(),
                            });
                        }
                        Ok(())
                    };
                    let r = fetch_range(
                        client,
                        src,
                        expect,
                        file,
                        dest,
                        p.start + p.done,
                        p.end,
                        &mut on_progress,
                    );
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Fallback::Error(RemoteError::Protocol {
                        url: src.url.clone(),
                        detail: "a download thread panicked".into(),
                    }))
                })
            })
            .collect()
    });
    // Prefer the range fallback, then the first real error over the "cancelled" ones.
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(()) => {}
            Err(Fallback::RangeIgnored) => return Err(Fallback::RangeIgnored),
            Err(Fallback::Error(e)) => errors.push(e),
        }
    }
    match errors.iter().position(|e| !is_cancel(e)) {
        Some(i) => Err(Fallback::Error(errors.swap_remove(i))),
        None => errors
            .into_iter()
            .next()
            .map_or(Ok(()), |e| Err(Fallback::Error(e))),
    }
}

fn is_cancel(e: &RemoteError) -> bool {
    matches!(e, RemoteError::Transport { detail, .. } if detail.starts_with("cancelled"))
}

fn sequential(
    client: &Client,
    src: &Source,
    expect: &Expect,
    file: &File,
    dest: &Path,
    from: u64,
    counter: &Counter,
) -> Result<(), RemoteError> {
    if from >= expect.size {
        return Ok(());
    }
    let mut on_progress = |_pos: u64, n: u64| -> Result<(), RemoteError> {
        counter.add(n);
        Ok(())
    };
    match fetch_range(
        client,
        src,
        expect,
        file,
        dest,
        from,
        expect.size,
        &mut on_progress,
    ) {
        Ok(()) => Ok(()),
        Err(Fallback::Error(e)) => Err(e),
        Err(Fallback::RangeIgnored) => {
            // Only reachable when resuming: the server answered 200 to a range. Restart.
            file.set_len(0).map_err(|e| RemoteError::Io {
                path: dest.to_path_buf(),
                detail: e.to_string(),
            })?;
            counter.sub(counter.get());
            match fetch_range(
                client,
                src,
                expect,
                file,
                dest,
                0,
                expect.size,
                &mut on_progress,
            ) {
                Ok(()) => Ok(()),
                Err(Fallback::Error(e)) => Err(e),
                Err(Fallback::RangeIgnored) => unreachable!("a range from 0 accepts a 200"),
            }
        }
    }
}

/// Fetches `[from, end)` into `file` at the same offsets, retrying (with `Range` from where it
/// stopped) when the connection fails or breaks mid-body. `on_progress(pos, n)` is called after
/// each write with the new position.
#[allow(clippy::too_many_arguments)]
fn fetch_range(
    client: &Client,
    src: &Source,
    expect: &Expect,
    file: &File,
    dest: &Path,
    from: u64,
    end: u64,
    on_progress: &mut dyn FnMut(u64, u64) -> Result<(), RemoteError>,
) -> Result<(), Fallback> {
    let policy = client.options().retry.clone();
    let mut pos = from;
    let mut failures = 0u32;
    let mut buf = vec![0u8; 256 << 10];
    while pos < end {
        let mut req = Req::new(Method::GET, src.url.clone())
            .auth(src.auth.clone())
            .header("range", format!("bytes={}-{}", pos, end - 1));
        for (k, v) in &src.headers {
            req = req.header(k, v.clone());
        }
        let attempt = client.send(&req, Payload::Empty).and_then(|mut resp| {
            check_range_response(&mut resp, expect, pos, end).map(|whole| (resp, whole))
        });
        let (mut resp, whole) = match attempt {
            Ok(x) => x,
            Err(e @ RemoteError::Transport { .. }) => {
                failures += 1;
                if failures >= policy.attempts.max(1) {
                    return Err(Fallback::Error(e));
                }
                std::thread::sleep(policy.delay(failures));
                continue;
            }
            Err(e) => return Err(Fallback::Error(e)),
        };
        if whole && pos != 0 {
            return Err(Fallback::RangeIgnored);
        }
        let mut reader = resp.body.as_reader();
        let mut progressed = false;
        let mut broke = None;
        while pos < end {
            let want = buf.len().min((end - pos) as usize);
            match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    broke = Some("connection closed early".to_string());
                    break;
                }
                Ok(k) => {
                    file.write_all_at(&buf[..k], pos).map_err(|e| {
                        Fallback::Error(RemoteError::Io {
                            path: dest.to_path_buf(),
                            detail: format!("writing the partial file: {e}"),
                        })
                    })?;
                    pos += k as u64;
                    progressed = true;
                    on_progress(pos, k as u64).map_err(Fallback::Error)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    broke = Some(e.to_string());
                    break;
                }
            }
        }
        if pos >= end {
            // A server that sends more than asked (200 with the whole file for a tail range)
            // is cut off here: the extra bytes are never written.
            return Ok(());
        }
        if progressed {
            failures = 0;
        }
        failures += 1;
        if failures >= policy.attempts.max(1) {
            return Err(Fallback::Error(RemoteError::Transport {
                url: resp.url.clone(),
                detail: format!(
                    "{}: transfer broke at byte {pos} of {} after {} attempts: {}",
                    expect.what,
                    expect.size,
                    failures,
                    broke.unwrap_or_default()
                ),
            }));
        }
        std::thread::sleep(policy.delay(failures));
    }
    Ok(())
}

/// Checks a response to `Range: bytes=pos-(end-1)`. Ok(true) when the server sent the whole
/// file (200), Ok(false) for the asked range (206).
fn check_range_response(
    resp: &mut Resp,
    expect: &Expect,
    pos: u64,
    end: u64,
) -> Result<bool, RemoteError> {
    match resp.status {
        200 => {
            if let Some(len) = resp
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok())
            {
                if len != expect.size {
                    return Err(RemoteError::SizeMismatch {
                        what: expect.what.clone(),
                        expected: expect.size,
                        actual: len,
                    });
                }
            }
            Ok(true)
        }
        206 => {
            let cr = resp.header("content-range").unwrap_or("").to_string();
            let parsed = parse_content_range(&cr);
            let Some((a, b, total)) = parsed else {
                return Err(RemoteError::Protocol {
                    url: resp.url.clone(),
                    detail: format!("206 with unusable Content-Range {cr:?}"),
                });
            };
            if let Some(t) = total {
                if t != expect.size {
                    return Err(RemoteError::SizeMismatch {
                        what: expect.what.clone(),
                        expected: expect.size,
                        actual: t,
                    });
                }
            }
            if a != pos || b >= end.max(1) && b != end - 1 {
                return Err(RemoteError::Protocol {
                    url: resp.url.clone(),
                    detail: format!(
                        "asked for bytes {pos}-{}, got Content-Range {cr:?}",
                        end - 1
                    ),
                });
            }
            Ok(false)
        }
        s => Err(status_error(resp, &expect.what, s)),
    }
}

/// The error for an unexpected status while fetching `what`.
pub fn status_error(resp: &mut Resp, what: &str, status: u16) -> RemoteError {
    let detail = resp.error_text();
    match status {
        404 => RemoteError::NotFound {
            what: what.to_string(),
            url: resp.url.clone(),
            detail,
        },
        401 | 403 => RemoteError::Unauthorized {
            what: what.to_string(),
            status,
            url: resp.url.clone(),
            advice: if detail.is_empty() {
                "access refused; check the credentials".into()
            } else {
                detail
            },
        },
        _ => RemoteError::Status {
            what: what.to_string(),
            status,
            url: resp.url.clone(),
            detail,
        },
    }
}

/// `bytes a-b/total` (total may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    if b < a {
        return None;
    }
    let total = if total.trim() == "*" {
        None
    } else {
        Some(total.trim().parse().ok()?)
    };
    Some((a, b, total))
}

/// Reads a whole small body with the published size (and sha256 if any) checked; for the
/// metadata files fetched before any policy decision.
pub fn fetch_small(
    client: &Client,
    src: &Source,
    expect: &Expect,
    limit: u64,
) -> Result<(Vec<u8>, String), RemoteError> {
    if expect.size > limit {
        return Err(RemoteError::Selection(format!(
            "{}: {} bytes is over the {limit}-byte limit for metadata files",
            expect.what, expect.size
        )));
    }
    let mut req = Req::new(Method::GET, src.url.clone()).auth(src.auth.clone());
    for (k, v) in &src.headers {
        req = req.header(k, v.clone());
    }
    let mut resp = client.send(&req, Payload::Empty)?;
    if resp.status != 200 {
        let s = resp.status;
        return Err(status_error(&mut resp, &expect.what, s));
    }
    let body = resp.read_body(limit)?;
    if body.len() as u64 != expect.size {
        return Err(RemoteError::SizeMismatch {
            what: expect.what.clone(),
            expected: expect.size,
            actual: body.len() as u64,
        });
    }
    let actual = crate::sha256_bytes(&body);
    if let Some(e) = &expect.sha256 {
        if e != &actual {
            return Err(RemoteError::DigestMismatch {
                what: expect.what.clone(),
                expected: e.clone(),
                actual,
            });
        }
    }
    Ok((body, actual))
}

/// Reads all of `r` (used by tests and small helpers).
pub fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 10-19/100"),
            Some((10, 19, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }

    #[test]
    fn split_tiles_the_range() {
        let p = split(10, 105, 4);
        assert_eq!(p.first().unwrap().start, 10);
        assert_eq!(p.last().unwrap().end, 105);
        for w in p.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(split(0, 3, 8).len(), 3);
    }

    #[test]
    fn journal_round_trip_and_rejects_bad() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("x.parts");
        let parts = split(0, 1000, 3);
        write_journal(&j, 1000, &parts).unwrap();
        assert_eq!(read_journal(&j, 1000), Some(parts.clone()));
        assert_eq!(read_journal(&j, 999), None, "size differs");
        std::fs::write(&j, "freehold-parts v1 1000\n0 500 600\n500 1000 0\n").unwrap();
        assert_eq!(read_journal(&j, 1000), None, "done beyond the part");
        std::fs::write(&j, "freehold-parts v1 1000\n0 400 0\n500 1000 0\n").unwrap();
        assert_eq!(read_journal(&j, 1000), None, "gap");
        std::fs::write(&j, "garbage").unwrap();
        assert_eq!(read_journal(&j, 1000), None);
    }
}
