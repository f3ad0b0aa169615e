//! `export` to and import from one tar file laid out as an OCI image layout: `oci-layout`,
//! `index.json`, `manifest.json` (a copy of the manifest for people and scripts),
//! `blobs/sha256/<hex>` for the manifest, config and every layer, and `SHA256SUMS`
//! (`sha256sum -c` format).
//!
//! Import never unpacks: each entry name must be exactly one of those names (blob names
//! parsed as digests), only regular files and the two blob directories are accepted, and
//! every blob is hashed into tmp/ and checked against its name and the manifest before
//! anything is installed or committed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::json;
use tar::{EntryType, Header};

use crate::digest::Hasher;
use crate::import::ImportReport;
use crate::manifest::{media, MAX_LAYERS, MAX_MANIFEST_BYTES};
use crate::store::TempBlob;
use crate::{Digest, Manifest, ModelRef, Store, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// Annotation in `index.json` holding the exported `name:tag`.
pub const NAME_ANNOTATION: &str = "io.freehold.model.name";
/// The OCI annotation holding the tag.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Largest small file (`index.json`, `oci-layout`, `SHA256SUMS`) read from an archive.
const MAX_SMALL_FILE: u64 = 1 << 20;

static EXPORT_SEQ: AtomicU64 = AtomicU64::new(0);

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// The archive written.
    pub path: PathBuf,
    /// The manifest exported.
    pub manifest: Digest,
    /// Blobs written (manifest, config, layers).
    pub blobs: usize,
    /// Archive size in bytes.
    pub bytes: u64,
}

/// Hashes what passes through, so an export notices a blob that rotted in the store.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn header(size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(EntryType::Regular);
    h
}

impl Store {
    /// Writes `model` to the tar file `out` (temp file beside it, synced, renamed).
    pub fn export(&self, model: &ModelRef, out: &Path) -> Result<ExportReport> {
        let (mdigest, manifest) = self.manifest(model)?;
        let mbytes = manifest.to_canonical_bytes();
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let fname = out
            .file_name()
            .ok_or_else(|| StoreError::Archive {
                path: out.to_path_buf(),
                why: "the output path has no file name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        let tmp = dir.join(format!(
            ".{fname}.{}-{}.tmp",
            std::process::id(),
            EXPORT_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let r = self.write_archive(model, mdigest, &manifest, &mbytes, &tmp);
        let count = match r {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, out).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("renaming into", out, e)
        })?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        let bytes = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        Ok(ExportReport {
            path: out.to_path_buf(),
            manifest: mdigest,
            blobs: count,
            bytes,
        })
    }

    fn write_archive(
        &self,
        model: &ModelRef,
        mdigest: Digest,
        manifest: &Manifest,
        mbytes: &[u8],
        tmp: &Path,
    ) -> Result<usize> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|e| StoreError::io("creating", tmp, e))?;
        let mut b = tar::Builder::new(BufWriter::new(f));
        let werr = |e| StoreError::io("writing", tmp, e);
        let small = |b: &mut tar::Builder<BufWriter<File>>, name: &str, data: &[u8]| {
            let mut h = header(data.len() as u64);
            b.append_data(&mut h, name, data).map_err(werr)
        };
        small(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [{
                "mediaType": media::OCI_MANIFEST,
                "artifactType": media::ARTIFACT,
                "digest": mdigest.to_string(),
                "size": mbytes.len(),
                "annotations": {
                    REF_NAME_ANNOTATION: model.tag(),
                    NAME_ANNOTATION: model.to_string(),
                }
            }]
        });
        let index = serde_json::to_vec_pretty(&index).expect("JSON values serialise");
        small(&mut b, "index.json", &index)?;
        small(&mut b, "manifest.json", mbytes)?;
        let mut sums = format!("{}  manifest.json\n", mdigest.hex());
        let mut written = std::collections::BTreeSet::new();
        small(&mut b, &format!("blobs/sha256/{}", mdigest.hex()), mbytes)?;
        written.insert(mdigest);
        sums.push_str(&format!("{0}  blobs/sha256/{0}\n", mdigest.hex()));
        for d in manifest.blobs() {
            if !written.insert(d.digest) {
                continue;
            }
            let p = self.blob_path(&d.digest);
            let f = File::open(&p).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::MissingBlob {
                    digest: d.digest,
                    what: format!("{} of {model}", d.what()),
                },
                _ => StoreError::io("opening", &p, e),
            })?;
            let len = f
                .metadata()
                .map_err(|e| StoreError::io("reading", &p, e))?
                .len();
            if len != d.size {
                return Err(StoreError::SizeMismatch {
                    digest: d.digest,
                    what: format!("{} of {model}", d.what()),
                    expected: d.size,
                    actual: len,
                });
            }
            let mut r = HashingReader {
                inner: BufReader::new(f),
                hasher: Hasher::new(),
            };
            let mut h = header(d.size);
            b.append_data(&mut h, format!("blobs/sha256/{}", d.digest.hex()), &mut r)
                .map_err(werr)?;
            let (actual, _) = r.hasher.finish();
            if actual != d.digest {
                return Err(StoreError::DigestMismatch {
                    expected: d.digest,
                    actual,
                    what: format!(
                        "{} of {model} in the store (run `freehold verify`)",
                        d.what()
                    ),
                });
            }
            sums.push_str(&format!("{0}  blobs/sha256/{0}\n", d.digest.hex()));
        }
        small(&mut b, "SHA256SUMS", sums.as_bytes())?;
        let w = b.into_inner().map_err(werr)?;
        let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
        f.sync_all()
            .map_err(|e| StoreError::io("syncing", tmp, e))?;
        Ok(written.len())
    }

    /// Imports an archive written by [`Store::export`]; every blob is hashed and checked
    /// against its name, the manifest's size and `SHA256SUMS` before anything is installed,
    /// and the model becomes visible only at the final commit.
    pub fn import_archive(&self, path: &Path, name: Option<&ModelRef>) -> Result<ImportReport> {
        let bad = |why: String| StoreError::Archive {
            path: path.to_path_buf(),
            why,
        };
        let f = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
        let mut ar = tar::Archive::new(BufReader::new(f));
        let mut temps: HashMap<Digest, TempBlob> = HashMap::new();
        let mut small: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
        let mut count = 0usize;
        for entry in ar
            .entries()
            .map_err(|e| StoreError::io("reading", path, e))?
        {
            let entry = entry.map_err(|e| bad(format!("unreadable entry: {e}")))?;
            count += 1;
            if count > MAX_LAYERS + 16 {
                return Err(bad(format!("more than {} entries", MAX_LAYERS + 16)));
            }
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let ebad = |why: &str| bad(format!("entry {:?}: {why}", crate::error::clip(&shown)));
            let name = std::str::from_utf8(&raw).map_err(|_| ebad("name is not UTF-8"))?;
            let name = name.strip_prefix("./").unwrap_or(name);
            let ty = entry.header().entry_type();
            if ty == EntryType::Directory {
                if matches!(name, "blobs" | "blobs/" | "blobs/sha256" | "blobs/sha256/") {
                    continue;
                }
                return Err(ebad("unexpected directory"));
            }
            if ty != EntryType::Regular {
                return Err(ebad(&format!(
                    "is a {} entry; only regular files are accepted",
                    match ty {
                        EntryType::Symlink => "symbolic link".to_string(),
                        EntryType::Link => "hard link".to_string(),
                        other => format!("{other:?}"),
                    }
                )));
            }
            let small_name = match name {
                "oci-layout" => Some("oci-layout"),
                "index.json" => Some("index.json"),
                "manifest.json" => Some("manifest.json"),
                "SHA256SUMS" => Some("SHA256SUMS"),
                _ => None,
            };
            if let Some(k) = small_name {
                let limit = if k == "manifest.json" {
                    MAX_MANIFEST_BYTES as u64
                } else {
                    MAX_SMALL_FILE
                };
                if entry.header().size().unwrap_or(u64::MAX) > limit {
                    return Err(ebad(&format!("larger than the {limit}-byte limit")));
                }
                let mut v = Vec::new();
                entry
                    .take(limit)
                    .read_to_end(&mut v)
                    .map_err(|e| ebad(&format!("unreadable: {e}")))?;
                if small.insert(k, v).is_some() {
                    return Err(ebad("appears twice"));
                }
                continue;
            }
            let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                return Err(ebad(
                    "not an entry of a freehold archive (oci-layout, index.json, manifest.json, SHA256SUMS, blobs/sha256/<digest>)",
                ));
            };
            let want = Digest::parse_hex(hex).map_err(ebad)?;
            if temps.contains_key(&want) {
                return Err(ebad("appears twice"));
            }
            let tmp = self.write_temp(entry, path)?;
            if tmp.digest() != want {
                return Err(StoreError::DigestMismatch {
                    expected: want,
                    actual: tmp.digest(),
                    what: format!(
                        "blob {want} in archive {} (tampered or corrupt)",
                        path.display()
                    ),
                });
            }
            temps.insert(want, tmp);
        }
        let mbytes = match small.get("manifest.json") {
            Some(b) => b.clone(),
            None => {
                // A plain OCI layout: the manifest is the blob index.json points at.
                let d = index_manifest(small.get("index.json"))
                    .map_err(&bad)?
                    .ok_or_else(|| bad("no manifest.json and no index.json".into()))?;
                let t = temps.get(&d).ok_or_else(|| {
                    bad(format!(
                        "index.json names manifest {d}, which is not in the archive"
                    ))
                })?;
                let mut v = Vec::new();
                File::open(t.path())
                    .and_then(|f| f.take(MAX_MANIFEST_BYTES as u64).read_to_end(&mut v))
                    .map_err(|e| StoreError::io("reading", t.path(), e))?;
                v
            }
        };
        let mdigest = Digest::of_bytes(&mbytes);
        let manifest = Manifest::from_bytes(&mbytes).map_err(|e| match e {
            StoreError::BadManifest { why, .. } => StoreError::BadManifest {
                at: Some(format!("manifest.json in {}", path.display())),
                why,
            },
            other => other,
        })?;
        if let Some(d) = index_manifest(small.get("index.json")).map_err(&bad)? {
            if d != mdigest {
                return Err(bad(format!(
                    "index.json names manifest {d} but manifest.json hashes to {mdigest}"
                )));
            }
        }
        for d in manifest.blobs() {
            match temps.get(&d.digest) {
                Some(t) if t.size() != d.size => {
                    return Err(StoreError::SizeMismatch {
                        digest: d.digest,
                        what: format!("{} in archive {}", d.what(), path.display()),
                        expected: d.size,
                        actual: t.size(),
                    })
                }
                Some(_) => {}
                None if self.blob_size(&d.digest) == Some(d.size) => {}
                None => {
                    return Err(bad(format!(
                        "blob {} ({}) named by the manifest is not in the archive",
                        d.digest,
                        d.what()
                    )))
                }
            }
        }
        if let Some(sums) = small.get("SHA256SUMS") {
            check_sums(sums, mdigest, &temps).map_err(&bad)?;
        }
        let model = match name {
            Some(n) => n.clone(),
            None => match index_name(small.get("index.json")) {
                Some(n) => ModelRef::parse(&n).map_err(|e| {
                    bad(format!(
                        "index.json names the model {e}; give a name with --name"
                    ))
                })?,
                None => {
                    return Err(bad(
                        "the archive does not name its model: give one with --name".into(),
                    ))
                }
            },
        };
        // Everything checked: install what the manifest needs (other entries are dropped
        // with their temporary files) and commit.
        for d in manifest.blobs() {
            if let Some(t) = temps.remove(&d.digest) {
                self.install(t)?;
            }
        }
        let before = self.manifest_digest(&model).ok();
        let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let digest = self.commit(&model, &manifest, &format!("archive {}", source.display()))?;
        Ok(ImportReport {
            model,
            manifest: digest,
            replaced: before.filter(|b| *b != digest),
            format: "archive".into(),
            layers: manifest.blobs().cloned().collect(),
            skipped: Vec::new(),
        })
    }
}

fn parse_index(index: Option<&Vec<u8>>) -> std::result::Result<Option<serde_json::Value>, String> {
    match index {
        None => Ok(None),
        Some(b) => serde_json::from_slice(b)
            .map(Some)
            .map_err(|e| format!("index.json is not JSON: {e}")),
    }
}

/// The manifest digest `index.json` names (its first manifest).
fn index_manifest(index: Option<&Vec<u8>>) -> std::result::Result<Option<Digest>, String> {
    let Some(v) = parse_index(index)? else {
        return Ok(None);
    };
    let d = v
        .get("manifests")
        .and_then(|m| m.get(0))
        .and_then(|m| m.get("digest"))
        .and_then(|d| d.as_str())
        .ok_or("index.json has no manifests[0].digest")?;
    Digest::parse(d)
        .map(Some)
        .map_err(|e| format!("index.json: {e}"))
}

fn index_name(index: Option<&Vec<u8>>) -> Option<String> {
    let v = parse_index(index).ok()??;
    v.get("manifests")?
        .get(0)?
        .get("annotations")?
        .get(NAME_ANNOTATION)?
        .as_str()
        .map(str::to_string)
}

/// Every `SHA256SUMS` line must be `<hex>  <name>` for `manifest.json` or a blob entry
/// present in the archive, with the hash that entry really has.
fn check_sums(
    sums: &[u8],
    mdigest: Digest,
    temps: &HashMap<Digest, TempBlob>,
) -> std::result::Result<(), String> {
    let text = std::str::from_utf8(sums).map_err(|_| "SHA256SUMS is not UTF-8".to_string())?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("SHA256SUMS line {}", i + 1);
        let (hex, file) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(|| format!("{at}: not \"<sha256>  <file>\""))?;
        let d = Digest::parse_hex(hex).map_err(|e| format!("{at}: {e}"))?;
        let actual = if file == "manifest.json" {
            Some(mdigest)
        } else if let Some(h) = file.strip_prefix("blobs/sha256/") {
            let named = Digest::parse_hex(h).map_err(|e| format!("{at}: {e}"))?;
            temps.get(&named).map(|t| t.digest())
        } else {
            return Err(format!("{at}: names {file:?}, not an archive entry"));
        };
        match actual {
            Some(a) if a == d => {}
            Some(a) => {
                return Err(format!(
                    "{at}: {file} should hash to sha256:{hex} but hashes to {a}"
                ))
            }
            None => return Err(format!("{at}: {file} is not in the archive")),
        }
    }
    Ok(())
}
