use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::digest::Hasher;
use crate::manifest::{media, MAX_MANIFEST_BYTES};
use crate::{Digest, Manifest, ModelRef, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// How long an abandoned resumable download (`*.partial`) is kept by [`Store::gc`].
pub const DEFAULT_PARTIAL_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Catalog schema version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

static PROCESS_OFFLINE: AtomicBool = AtomicBool::new(false);
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Marks the whole process offline (the CLI's global `--offline`): every [`Store`] opened
/// afterwards, and those already open, report [`Store::offline`] true.
pub fn set_process_offline(offline: bool) {
    PROCESS_OFFLINE.store(offline, Ordering::SeqCst);
}

fn env_offline() -> bool {
    std::env::var("FREEHOLD_OFFLINE")
        .map(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
        .unwrap_or(false)
}

/// The store directory used when none is given: `$FREEHOLD_HOME`, else
/// `$XDG_DATA_HOME/freehold`, else `~/.local/share/freehold`.
pub fn default_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("FREEHOLD_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(x).join("freehold"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/freehold")),
        None => Err(StoreError::Busy(
            "cannot locate the store: set FREEHOLD_HOME (neither XDG_DATA_HOME nor HOME is set)"
                .into(),
        )),
    }
}

/// One model in the catalog, as [`Store::list`] returns it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelEntry {
    /// `name:tag`.
    #[serde(serialize_with = "ser_display")]
    pub model: ModelRef,
    /// Digest of its manifest.
    pub manifest: Digest,
    /// Config plus layers, in bytes.
    pub size: u64,
    /// From the config blob, when it says.
    pub architecture: Option<String>,
    /// Dominant weight type or file type, from the config blob.
    pub quantization: Option<String>,
    /// Parameter count, from the config blob.
    pub parameters: Option<u64>,
    /// Where it came from (a path, an archive, a registry reference).
    pub source: String,
    /// Unix seconds when this name was first committed.
    pub created: i64,
    /// Unix seconds of the latest commit under this name.
    pub modified: i64,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A policy override recorded against a model (see [`Store::record_override`]).
#[derive(Clone, Debug, Serialize)]
pub struct Override {
    /// Row id.
    pub id: i64,
    /// The model it was recorded for.
    #[serde(serialize_with = "ser_display")]
    pub model: ModelRef,
    /// The manifest the name pointed at then, so an override does not silently carry over
    /// to different content re-imported under the same name.
    pub manifest: Option<Digest>,
    /// The rule overridden.
    pub rule: String,
    /// Who decided.
    pub who: String,
    /// Why.
    pub why: String,
    /// Unix seconds.
    pub at: i64,
}

/// What is wrong with one blob (see [`Store::verify`]).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// Not in the store.
    Missing,
    /// Present with the wrong length.
    WrongSize {
        /// Length the manifest promises.
        expected: u64,
        /// Length on disk.
        actual: u64,
    },
    /// Present, but its content hashes to something else.
    Corrupt {
        /// What it hashes to.
        #[serde(serialize_with = "ser_display")]
        actual: Digest,
    },
    /// The manifest blob itself could not be read or parsed.
    BadManifest {
        /// Why.
        why: String,
    },
}

/// One bad blob.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The blob.
    pub digest: Digest,
    /// Layer file name or media type (`manifest` for the manifest itself).
    pub what: String,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ProblemKind,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ProblemKind::Missing => write!(f, "blob {} ({}) is missing", self.digest, self.what),
            ProblemKind::WrongSize { expected, actual } => write!(
                f,
                "blob {} ({}) is {actual} bytes, expected {expected}",
                self.digest, self.what
            ),
            ProblemKind::Corrupt { actual } => write!(
                f,
                "blob {} ({}) is corrupt: its content hashes to {actual}",
                self.digest, self.what
            ),
            ProblemKind::BadManifest { why } => {
                write!(f, "manifest {} is unreadable: {why}", self.digest)
            }
        }
    }
}

/// The verification of one model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCheck {
    /// The model.
    #[serde(serialize_with = "ser_display")]
    pub model: ModelRef,
    /// Its manifest digest.
    pub manifest: Digest,
    /// Blobs checked (manifest, config, layers).
    pub blobs: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Every bad blob; empty when the model is intact.
    pub problems: Vec<Problem>,
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// One entry per model checked.
    pub models: Vec<ModelCheck>,
}

impl VerifyReport {
    /// True when no blob of any checked model is missing, short or corrupt.
    pub fn is_ok(&self) -> bool {
        self.models.iter().all(|m| m.problems.is_empty())
    }
}

/// What [`Store::gc`] removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Unreferenced blobs removed, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Temporary and abandoned partial files removed (file names under the store's tmp/).
    pub temp_files: Vec<String>,
    /// Bytes freed in all.
    pub bytes_freed: u64,
    /// Partial downloads kept because they are recent or in use.
    pub partials_kept: usize,
    /// Files under blobs/ that are not named by a digest, left alone.
    pub foreign: Vec<String>,
}

/// A file being written under the store's tmp/ directory: removed on drop unless installed.
pub struct TempBlob {
    path: PathBuf,
    digest: Digest,
    size: u64,
    installed: bool,
}

impl TempBlob {
    /// Where the bytes are while not yet installed (to validate them before installing).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Digest of the bytes written.
    pub fn digest(&self) -> Digest {
        self.digest
    }
    /// Their length.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.installed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Holds the store "in use" against [`Store::gc`] while this process writes blobs that no
/// committed manifest references yet: a shared lock on `store.lock` that gc needs
/// exclusively. Released when no write is under way and every blob written has been
/// committed (or the store is dropped).
#[derive(Default)]
struct PinState {
    file: Option<File>,
    active: usize,
    pending: HashSet<Digest>,
}

struct Pin {
    state: Arc<Mutex<PinState>>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        s.active -= 1;
        release_if_idle(&mut s);
    }
}

fn release_if_idle(s: &mut PinState) {
    if s.active == 0 && s.pending.is_empty() {
        s.file = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves consistent data (plain counters, a
    // connection): carry on rather than poison every later call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An exclusive claim on the download of one blob (see [`Store::lock_partial`]).
pub struct PartialLock {
    _file: File,
    _pin: Pin,
    partial: PathBuf,
}

impl PartialLock {
    /// The partial file this lock guards.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }
}

/// The local model store: content-addressed blobs under `home/blobs/sha256/`, temporary
/// files under `home/tmp/` (same file system, so installing is a rename), and a SQLite
/// catalog `home/catalog.db` mapping `name:tag` to manifest digests.
///
/// A model becomes visible only through [`Store::commit`], after every blob it references
/// is in place; every file is written to tmp/, synced and renamed, so a killed process
/// leaves at most a temporary file that `gc` removes.
pub struct Store {
    home: PathBuf,
    db_path: PathBuf,
    db: Mutex<Connection>,
    pin: Arc<Mutex<PinState>>,
    offline: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("home", &self.home).finish()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing directory", dir, e))
}

impl Store {
    /// Opens (creating if needed) the store at `home`.
    pub fn open(home: &Path) -> Result<Store> {
        for d in [home.join("blobs/sha256"), home.join("tmp")] {
            fs::create_dir_all(&d).map_err(|e| StoreError::io("creating directory", &d, e))?;
        }
        let db_path = home.join("catalog.db");
        let cat = |source| StoreError::Catalog {
            path: db_path.clone(),
            source,
        };
        let mut db = Connection::open(&db_path).map_err(cat)?;
        db.busy_timeout(Duration::from_secs(30)).map_err(cat)?;
        // WAL: readers never block the one writer; FULL: a commit is on disk when it returns.
        // Switching a new database to WAL takes an exclusive lock that SQLite does not wait
        // for through the busy handler, so two processes opening a fresh store at once retry.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match db.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(cat(e)),
            }
        }
        db.pragma_update(None, "synchronous", "FULL").map_err(cat)?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(cat)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(cat)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Busy(format!(
                "catalog {} has schema version {version}, this freehold knows up to {SCHEMA_VERSION}: upgrade freehold",
                db_path.display()
            )));
        }
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS models (
                name TEXT NOT NULL,
                tag TEXT NOT NULL,
                manifest TEXT NOT NULL,
                size INTEGER NOT NULL,
                architecture TEXT,
                quantization TEXT,
                parameters INTEGER,
                source TEXT NOT NULL,
                created INTEGER NOT NULL,
                modified INTEGER NOT NULL,
                PRIMARY KEY (name, tag)
            );
            CREATE TABLE IF NOT EXISTS manifest_blobs (
                manifest TEXT NOT NULL,
                blob TEXT NOT NULL,
                PRIMARY KEY (manifest, blob)
            );
            CREATE TABLE IF NOT EXISTS overrides (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                tag TEXT NOT NULL,
                manifest TEXT,
                rule TEXT NOT NULL,
                who TEXT NOT NULL,
                why TEXT NOT NULL,
                at INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at INTEGER NOT NULL,
                action TEXT NOT NULL,
                name TEXT NOT NULL,
                tag TEXT NOT NULL,
                manifest TEXT,
                detail TEXT NOT NULL
            );
            PRAGMA user_version = 1;",
        )
        .map_err(cat)?;
        tx.commit().map_err(cat)?;
        Ok(Store {
            home: home.to_path_buf(),
            db_path,
            db: Mutex::new(db),
            pin: Arc::default(),
            offline: AtomicBool::new(env_offline()),
        })
    }

    /// Opens the store at [`default_home`].
    pub fn open_default() -> Result<Store> {
        Store::open(&default_home()?)
    }

    /// The store directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// True when network sources must not be used: `FREEHOLD_OFFLINE=1` at open,
    /// [`Store::set_offline`], or [`set_process_offline`].
    pub fn offline(&self) -> bool {
        self.offline.load(Ordering::SeqCst) || PROCESS_OFFLINE.load(Ordering::SeqCst)
    }

    /// Sets this store's offline flag.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    fn cat_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Catalog {
            path: self.db_path.clone(),
            source,
        }
    }

    // ---- blobs ----

    /// Where the blob with `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.home.join("blobs/sha256").join(digest.hex())
    }

    /// True when the blob file exists.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's length on disk, `None` when absent.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// The stable path under tmp/ where a download of `digest` is written and resumed.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.home
            .join("tmp")
            .join(format!("{}.partial", digest.hex()))
    }

    fn pin(&self) -> Result<Pin> {
        let mut s = lock(&self.pin);
        if s.file.is_none() {
            let p = self.home.join("store.lock");
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|e| StoreError::io("opening", &p, e))?;
            // Blocks only while a gc holds it exclusively (gc does not hash, so briefly).
            f.lock_shared()
                .map_err(|e| StoreError::io("locking", &p, e))?;
            s.file = Some(f);
        }
        s.active += 1;
        Ok(Pin {
            state: self.pin.clone(),
        })
    }

    fn mark_pending(&self, d: Digest) {
        lock(&self.pin).pending.insert(d);
    }

    /// The blobs written and not yet committed (to undo a failed import's claim).
    pub(crate) fn pending_snapshot(&self) -> HashSet<Digest> {
        lock(&self.pin).pending.clone()
    }

    /// Gives up the claim on blobs written since `before` (an import failed: they are
    /// garbage now, and gc may take them).
    pub(crate) fn abandon_since(&self, before: HashSet<Digest>) {
        let mut s = lock(&self.pin);
        s.pending = before;
        release_if_idle(&mut s);
    }

    /// Takes the exclusive download claim on `digest`: a second caller (thread or process)
    /// waits until the first releases it, then should check [`Store::has_blob`] before
    /// downloading. While held, gc keeps the partial file.
    pub fn lock_partial(&self, digest: &Digest) -> Result<PartialLock> {
        let pin = self.pin()?;
        let p = self.home.join("tmp").join(format!("{}.lock", digest.hex()));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| StoreError::io("opening", &p, e))?;
        f.lock().map_err(|e| StoreError::io("locking", &p, e))?;
        Ok(PartialLock {
            _file: f,
            _pin: pin,
            partial: self.partial_path(digest),
        })
    }

    fn new_temp(&self, kind: &str) -> Result<(PathBuf, File)> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = self.home.join("tmp").join(format!(
            "{kind}-{}-{seq}-{nanos:08x}.tmp",
            std::process::id()
        ));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| StoreError::io("creating", &p, e))?;
        Ok((p, f))
    }

    /// Copies everything `r` yields into a synced temporary file, hashing on the way. The
    /// bytes are not in the store until [`Store::install`].
    pub fn write_temp(&self, mut r: impl Read, what: &Path) -> Result<TempBlob> {
        let _pin = self.pin()?;
        let (path, mut f) = self.new_temp("blob")?;
        let mut tmp = TempBlob {
            path,
            digest: Digest::of_bytes(b""),
            size: 0,
            installed: false,
        };
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("reading", what, e)),
            };
            h.update(&buf[..n]);
            f.write_all(&buf[..n])
                .map_err(|e| StoreError::io("writing", &tmp.path, e))?;
        }
        f.sync_all()
            .map_err(|e| StoreError::io("syncing", &tmp.path, e))?;
        (tmp.digest, tmp.size) = h.finish();
        // Pinned from here until a commit references it, so gc cannot take it in between.
        self.mark_pending(tmp.digest);
        Ok(tmp)
    }

    /// Moves a temporary file into `blobs/sha256/<hex>` (atomic rename, directory synced).
    /// An existing blob of that digest is replaced, which also repairs a corrupt one.
    pub fn install(&self, mut tmp: TempBlob) -> Result<(Digest, u64)> {
        let _pin = self.pin()?;
        let dest = self.blob_path(&tmp.digest);
        fs::rename(&tmp.path, &dest).map_err(|e| StoreError::io("renaming into", &dest, e))?;
        tmp.installed = true;
        sync_dir(dest.parent().expect("blob paths have a parent"))?;
        Ok((tmp.digest, tmp.size))
    }

    /// Adds the file at `path` as a blob (copied, never moved).
    pub fn add_blob_from_file(&self, path: &Path) -> Result<(Digest, u64)> {
        let f = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
        let tmp = self.write_temp(f, path)?;
        self.install(tmp)
    }

    /// Adds `bytes` as a blob.
    pub fn add_blob_from_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let tmp = self.write_temp(bytes, Path::new("<memory>"))?;
        self.install(tmp)
    }

    /// Takes over `file` (normally [`Store::partial_path`], written by a download) as the
    /// blob `expected`: re-hashed, synced and renamed into place when it matches; removed
    /// and reported as [`StoreError::DigestMismatch`] when it does not. Returns its size.
    pub fn adopt_blob(&self, file: &Path, expected: &Digest) -> Result<u64> {
        let _pin = self.pin()?;
        let f = File::open(file).map_err(|e| StoreError::io("opening", file, e))?;
        let (actual, size) =
            Digest::of_reader(&f).map_err(|e| StoreError::io("reading", file, e))?;
        if actual != *expected {
            let _ = fs::remove_file(file);
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual,
                what: file.display().to_string(),
            });
        }
        f.sync_all()
            .map_err(|e| StoreError::io("syncing", file, e))?;
        drop(f);
        self.mark_pending(actual);
        let dest = self.blob_path(expected);
        match fs::rename(file, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                // Not written under our tmp/: copy instead (the copy is hashed again).
                let (d, _) = self.add_blob_from_file(file)?;
                if d != *expected {
                    return Err(StoreError::DigestMismatch {
                        expected: *expected,
                        actual: d,
                        what: file.display().to_string(),
                    });
                }
                let _ = fs::remove_file(file);
            }
            Err(e) => return Err(StoreError::io("renaming into", &dest, e)),
        }
        sync_dir(dest.parent().expect("blob paths have a parent"))?;
        Ok(size)
    }

    /// Reads a whole blob of at most `limit` bytes, checking it hashes to `digest`.
    pub fn read_blob(&self, digest: &Digest, limit: u64, what: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: *digest,
                    what: what.into(),
                })
            }
            Err(e) => return Err(StoreError::io("opening", &p, e)),
        };
        let mut bytes = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io("reading", &p, e))?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::BadManifest {
                at: Some(format!("{what} {digest}")),
                why: format!("larger than the {limit}-byte limit"),
            });
        }
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: *digest,
                actual,
                what: format!("{what} (run `freehold verify`)"),
            });
        }
        Ok(bytes)
    }

    // ---- catalog ----

    /// Makes `manifest` visible as `model`: checks that every blob it references is present
    /// with the promised size, stores the manifest bytes as a blob, then points `model` at
    /// it in one catalog transaction. Returns the manifest digest.
    pub fn commit(&self, model: &ModelRef, manifest: &Manifest, source: &str) -> Result<Digest> {
        let _pin = self.pin()?;
        manifest.validate()?;
        for d in manifest.blobs() {
            match self.blob_size(&d.digest) {
                None => {
                    return Err(StoreError::MissingBlob {
                        digest: d.digest,
                        what: d.what(),
                    })
                }
                Some(n) if n != d.size => {
                    return Err(StoreError::SizeMismatch {
                        digest: d.digest,
                        what: d.what(),
                        expected: d.size,
                        actual: n,
                    })
                }
                Some(_) => {}
            }
        }
        let bytes = manifest.to_canonical_bytes();
        let (mdigest, _) = self.add_blob_from_bytes(&bytes)?;
        let summary = self.config_summary(manifest);
        let t = now();
        let cat = self.cat_err();
        let mut db = lock(&self.db);
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&cat)?;
        for d in manifest.blobs() {
            tx.execute(
                "INSERT OR IGNORE INTO manifest_blobs (manifest, blob) VALUES (?1, ?2)",
                params![mdigest.to_string(), d.digest.to_string()],
            )
            .map_err(&cat)?;
        }
        let previous: Option<String> = tx
            .query_row(
                "SELECT manifest FROM models WHERE name = ?1 AND tag = ?2",
                params![model.name(), model.tag()],
                |r| r.get(0),
            )
            .optional()
            .map_err(&cat)?;
        tx.execute(
            "INSERT INTO models (name, tag, manifest, size, architecture, quantization, parameters, source, created, modified)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (name, tag) DO UPDATE SET manifest = excluded.manifest, size = excluded.size,
               architecture = excluded.architecture, quantization = excluded.quantization,
               parameters = excluded.parameters, source = excluded.source, modified = excluded.modified",
            params![
                model.name(),
                model.tag(),
                mdigest.to_string(),
                manifest.total_size() as i64,
                summary.0,
                summary.1,
                summary.2.map(|p| p as i64),
                source,
                t
            ],
        )
        .map_err(&cat)?;
        let detail = match previous {
            Some(p) if p != mdigest.to_string() => format!("from {source}, replacing {p}"),
            _ => format!("from {source}"),
        };
        tx.execute(
            "INSERT INTO events (at, action, name, tag, manifest, detail) VALUES (?1, 'commit', ?2, ?3, ?4, ?5)",
            params![t, model.name(), model.tag(), mdigest.to_string(), detail],
        )
        .map_err(&cat)?;
        tx.commit().map_err(&cat)?;
        drop(db);
        let mut s = lock(&self.pin);
        s.pending.remove(&mdigest);
        for d in manifest.blobs() {
            s.pending.remove(&d.digest);
        }
        Ok(mdigest)
    }

    /// (architecture, quantization, parameters) from the config blob, when it is ours.
    fn config_summary(&self, m: &Manifest) -> (Option<String>, Option<String>, Option<u64>) {
        if m.config.media_type != media::MODEL_CONFIG {
            return (None, None, None);
        }
        let Ok(bytes) = self.read_blob(&m.config.digest, 1 << 20, "config") else {
            return (None, None, None);
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return (None, None, None);
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        (
            s("architecture"),
            s("file_type").or_else(|| s("quantization")),
            v.get("parameters").and_then(|x| x.as_u64()),
        )
    }

    fn row_ref(name: String, tag: String) -> Result<ModelRef> {
        ModelRef::new(&name, &tag)
    }

    fn row_digest(&self, s: &str) -> Result<Digest> {
        Digest::parse(s).map_err(|e| StoreError::BadManifest {
            at: Some(format!("catalog {}", self.db_path.display())),
            why: e.to_string(),
        })
    }

    /// The manifest digest `model` points at.
    pub fn manifest_digest(&self, model: &ModelRef) -> Result<Digest> {
        let cat = self.cat_err();
        let s: Option<String> = lock(&self.db)
            .query_row(
                "SELECT manifest FROM models WHERE name = ?1 AND tag = ?2",
                params![model.name(), model.tag()],
                |r| r.get(0),
            )
            .optional()
            .map_err(cat)?;
        match s {
            Some(s) => self.row_digest(&s),
            None => Err(StoreError::NotFound(model.clone())),
        }
    }

    /// The manifest of `model`, read from its blob, hash-checked and validated.
    pub fn manifest(&self, model: &ModelRef) -> Result<(Digest, Manifest)> {
        let d = self.manifest_digest(model)?;
        let bytes = self.read_blob(
            &d,
            MAX_MANIFEST_BYTES as u64,
            &format!("manifest of {model}"),
        )?;
        let m = Manifest::from_bytes(&bytes).map_err(|e| match e {
            StoreError::BadManifest { why, .. } => StoreError::BadManifest {
                at: Some(format!("{model} {d}")),
                why,
            },
            other => other,
        })?;
        Ok((d, m))
    }

    /// The config blob of `model` parsed as JSON (`null` when it is not JSON).
    pub fn config_json(&self, model: &ModelRef) -> Result<serde_json::Value> {
        let (_, m) = self.manifest(model)?;
        let bytes = self.read_blob(&m.config.digest, 16 << 20, &format!("config of {model}"))?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// The catalog entry of `model`.
    pub fn entry(&self, model: &ModelRef) -> Result<ModelEntry> {
        self.entries(Some(model))?
            .pop()
            .ok_or_else(|| StoreError::NotFound(model.clone()))
    }

    /// Every model, sorted by name then tag.
    pub fn list(&self) -> Result<Vec<ModelEntry>> {
        self.entries(None)
    }

    fn entries(&self, only: Option<&ModelRef>) -> Result<Vec<ModelEntry>> {
        let cat = self.cat_err();
        let db = lock(&self.db);
        let mut st = db
            .prepare(
                "SELECT name, tag, manifest, size, architecture, quantization, parameters, source, created, modified
                 FROM models WHERE (?1 IS NULL OR (name = ?1 AND tag = ?2)) ORDER BY name, tag",
            )
            .map_err(&cat)?;
        let rows = st
            .query_map(
                params![only.map(|m| m.name()), only.map(|m| m.tag())],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                    ))
                },
            )
            .map_err(&cat)?;
        let mut out = Vec::new();
        for row in rows {
            let (name, tag, manifest, size, arch, quant, params, source, created, modified) =
                row.map_err(&cat)?;
            out.push(ModelEntry {
                model: Self::row_ref(name, tag)?,
                manifest: self.row_digest(&manifest)?,
                size: size.max(0) as u64,
                architecture: arch,
                quantization: quant,
                parameters: params.map(|p| p.max(0) as u64),
                source,
                created,
                modified,
            });
        }
        Ok(out)
    }

    /// Removes the name `model` (its blobs stay until [`Store::gc`]). Returns the manifest
    /// digest it pointed at.
    pub fn remove(&self, model: &ModelRef) -> Result<Digest> {
        let d = self.manifest_digest(model)?;
        let cat = self.cat_err();
        let mut db = lock(&self.db);
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&cat)?;
        let n = tx
            .execute(
                "DELETE FROM models WHERE name = ?1 AND tag = ?2",
                params![model.name(), model.tag()],
            )
            .map_err(&cat)?;
        if n == 0 {
            return Err(StoreError::NotFound(model.clone()));
        }
        tx.execute(
            "INSERT INTO events (at, action, name, tag, manifest, detail) VALUES (?1, 'remove', ?2, ?3, ?4, '')",
            params![now(), model.name(), model.tag(), d.to_string()],
        )
        .map_err(&cat)?;
        tx.commit().map_err(&cat)?;
        Ok(d)
    }

    /// The path of `model`'s GGUF weights blob (for run, serve, bench), checked present
    /// with the size the manifest promises.
    pub fn resolve_gguf(&self, model: &ModelRef) -> Result<PathBuf> {
        let (_, m) = self.manifest(model)?;
        let d = m.layer(media::GGUF).ok_or(StoreError::NoLayer {
            model: model.clone(),
            what: "GGUF weights",
        })?;
        match self.blob_size(&d.digest) {
            None => Err(StoreError::MissingBlob {
                digest: d.digest,
                what: format!("{} of {model}", d.what()),
            }),
            Some(n) if n != d.size => Err(StoreError::SizeMismatch {
                digest: d.digest,
                what: format!("{} of {model}", d.what()),
                expected: d.size,
                actual: n,
            }),
            Some(_) => Ok(self.blob_path(&d.digest)),
        }
    }

    /// A command-line model argument: an existing file is used as is; otherwise it is read
    /// as a store name and its GGUF weights' path returned. When neither works the error
    /// names both interpretations.
    pub fn resolve_model_arg(&self, arg: &str) -> Result<PathBuf> {
        if Path::new(arg).is_file() {
            return Ok(PathBuf::from(arg));
        }
        ModelRef::parse(arg)
            .and_then(|m| self.resolve_gguf(&m))
            .map_err(|e| StoreError::UnresolvedModel {
                arg: arg.into(),
                why: e.to_string(),
            })
    }

    // ---- overrides ----

    /// Records a policy override for `model` (the licence helper's audit trail): who set
    /// aside which rule, why, and when, bound to the manifest the name points at now.
    pub fn record_override(
        &self,
        model: &ModelRef,
        rule: &str,
        who: &str,
        why: &str,
    ) -> Result<i64> {
        let d = self.manifest_digest(model)?;
        for (field, v) in [("rule", rule), ("who", who), ("why", why)] {
            if v.trim().is_empty() {
                return Err(StoreError::BadName {
                    found: String::new(),
                    why: format!("an override needs a non-empty {field}"),
                });
            }
        }
        let cat = self.cat_err();
        let db = lock(&self.db);
        db.execute(
            "INSERT INTO overrides (name, tag, manifest, rule, who, why, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![model.name(), model.tag(), d.to_string(), rule, who, why, now()],
        )
        .map_err(&cat)?;
        Ok(db.last_insert_rowid())
    }

    /// Every override recorded for `model`, oldest first.
    pub fn overrides(&self, model: &ModelRef) -> Result<Vec<Override>> {
        let cat = self.cat_err();
        let db = lock(&self.db);
        let mut st = db
            .prepare(
                "SELECT id, manifest, rule, who, why, at FROM overrides WHERE name = ?1 AND tag = ?2 ORDER BY id",
            )
            .map_err(&cat)?;
        let rows = st
            .query_map(params![model.name(), model.tag()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(&cat)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, manifest, rule, who, why, at) = row.map_err(&cat)?;
            out.push(Override {
                id,
                model: model.clone(),
                manifest: manifest.map(|m| self.row_digest(&m)).transpose()?,
                rule,
                who,
                why,
                at,
            });
        }
        Ok(out)
    }

    // ---- verify and gc ----

    /// Re-hashes the manifest, config and every layer of `model` (all models when `None`)
    /// and names each blob that is missing, the wrong size or corrupt.
    pub fn verify(&self, model: Option<&ModelRef>) -> Result<VerifyReport> {
        let entries = match model {
            Some(m) => vec![self.entry(m)?],
            None => self.list()?,
        };
        // A blob shared by several models is hashed once.
        let mut seen: BTreeMap<Digest, Option<ProblemKind>> = BTreeMap::new();
        let mut report = VerifyReport::default();
        for e in entries {
            let mut check = ModelCheck {
                model: e.model.clone(),
                manifest: e.manifest,
                blobs: 1,
                bytes: 0,
                problems: Vec::new(),
            };
            let manifest = match self.read_blob(&e.manifest, MAX_MANIFEST_BYTES as u64, "manifest")
            {
                Ok(b) => {
                    check.bytes += b.len() as u64;
                    Manifest::from_bytes(&b).map_err(|e| e.to_string())
                }
                Err(StoreError::MissingBlob { .. }) => {
                    check.problems.push(Problem {
                        digest: e.manifest,
                        what: "manifest".into(),
                        kind: ProblemKind::Missing,
                    });
                    report.models.push(check);
                    continue;
                }
                Err(StoreError::DigestMismatch { actual, .. }) => {
                    check.problems.push(Problem {
                        digest: e.manifest,
                        what: "manifest".into(),
                        kind: ProblemKind::Corrupt { actual },
                    });
                    report.models.push(check);
                    continue;
                }
                Err(other) => Err(other.to_string()),
            };
            let manifest = match manifest {
                Ok(m) => m,
                Err(why) => {
                    check.problems.push(Problem {
                        digest: e.manifest,
                        what: "manifest".into(),
                        kind: ProblemKind::BadManifest { why },
                    });
                    report.models.push(check);
                    continue;
                }
            };
            for d in manifest.blobs() {
                check.blobs += 1;
                let result = match seen.get(&d.digest) {
                    Some(r) => r.clone(),
                    None => {
                        let r = self.check_blob(d.digest, d.size)?;
                        check.bytes += d.size;
                        seen.insert(d.digest, r.clone());
                        r
                    }
                };
                if let Some(kind) = result {
                    check.problems.push(Problem {
                        digest: d.digest,
                        what: d.what(),
                        kind,
                    });
                }
            }
            report.models.push(check);
        }
        Ok(report)
    }

    fn check_blob(&self, digest: Digest, size: u64) -> Result<Option<ProblemKind>> {
        let p = self.blob_path(&digest);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(ProblemKind::Missing))
            }
            Err(e) => return Err(StoreError::io("opening", &p, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| StoreError::io("reading", &p, e))?
            .len();
        if len != size {
            return Ok(Some(ProblemKind::WrongSize {
                expected: size,
                actual: len,
            }));
        }
        let (actual, _) = Digest::of_reader(f).map_err(|e| StoreError::io("reading", &p, e))?;
        Ok((actual != digest).then_some(ProblemKind::Corrupt { actual }))
    }

    /// Removes blobs no model references, temporary files of dead writers and partial
    /// downloads untouched for [`DEFAULT_PARTIAL_GRACE`] that nobody holds.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with_grace(DEFAULT_PARTIAL_GRACE)
    }

    /// [`Store::gc`] with another grace period for partial downloads.
    pub fn gc_with_grace(&self, partial_grace: Duration) -> Result<GcReport> {
        if lock(&self.pin).file.is_some() {
            return Err(StoreError::Busy(
                "this process has written blobs it has not committed yet; gc after the commit"
                    .into(),
            ));
        }
        let lp = self.home.join("store.lock");
        let lockf = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lp)
            .map_err(|e| StoreError::io("opening", &lp, e))?;
        match lockf.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Busy(format!(
                    "another freehold process is writing to the store {} (an import or pull is under way); run gc when it has finished",
                    self.home.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io("locking", &lp, e))
            }
        }
        // With the exclusive lock held no writer is between writing a blob and committing
        // it, so "unreferenced" is final.
        let referenced = self.referenced()?;
        let mut report = GcReport::default();
        let bdir = self.home.join("blobs/sha256");
        for ent in fs::read_dir(&bdir).map_err(|e| StoreError::io("listing", &bdir, e))? {
            let ent = ent.map_err(|e| StoreError::io("listing", &bdir, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::parse_hex(&name) else {
                report.foreign.push(name);
                continue;
            };
            if referenced.contains(&d) {
                continue;
            }
            let len = ent.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(ent.path()).map_err(|e| StoreError::io("removing", &ent.path(), e))?;
            report.blobs.push((d, len));
            report.bytes_freed += len;
        }
        sync_dir(&bdir)?;
        let tdir = self.home.join("tmp");
        let mut entries: Vec<_> = fs::read_dir(&tdir)
            .map_err(|e| StoreError::io("listing", &tdir, e))?
            .filter_map(|e| e.ok())
            .collect();
        // Partials before their lock files and journals, which are removed only with them.
        entries.sort_by_key(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".lock") || name.ends_with(".partial.parts")
        });
        let now = SystemTime::now();
        for ent in entries {
            let name = ent.file_name().to_string_lossy().into_owned();
            let path = ent.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let remove = if let Some(hex) = name.strip_suffix(".partial") {
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age >= partial_grace);
                old && !self.partial_held(hex)
            } else if let Some(hex) = name
                .strip_suffix(".lock")
                .or_else(|| name.strip_suffix(".partial.parts"))
            {
                // A lock file, or the parallel-parts journal of a resumable download: both
                // live exactly as long as their partial.
                !tdir.join(format!("{hex}.partial")).exists() && !self.partial_held(hex)
            } else {
                true
            };
            if !remove {
                if name.ends_with(".partial") {
                    report.partials_kept += 1;
                }
                continue;
            }
            let r = if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            r.map_err(|e| StoreError::io("removing", &path, e))?;
            if !name.ends_with(".lock") && !name.ends_with(".partial.parts") {
                report.bytes_freed += meta.len();
                report.temp_files.push(name);
            }
        }
        {
            let cat = self.cat_err();
            let db = lock(&self.db);
            db.execute(
                "DELETE FROM manifest_blobs WHERE manifest NOT IN (SELECT manifest FROM models)",
                [],
            )
            .map_err(cat)?;
        }
        drop(lockf);
        Ok(report)
    }

    /// True when someone holds the download lock of the partial `<hex>.partial`.
    fn partial_held(&self, hex: &str) -> bool {
        let p = self.home.join("tmp").join(format!("{hex}.lock"));
        let Ok(f) = OpenOptions::new().read(true).write(true).open(&p) else {
            return false;
        };
        matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// Every digest a named model needs: manifests and what they reference.
    fn referenced(&self) -> Result<BTreeSet<Digest>> {
        let cat = self.cat_err();
        let db = lock(&self.db);
        let mut st = db
            .prepare(
                "SELECT manifest FROM models
                 UNION SELECT blob FROM manifest_blobs WHERE manifest IN (SELECT manifest FROM models)",
            )
            .map_err(&cat)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(&cat)?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(self.row_digest(&r.map_err(&cat)?)?);
        }
        Ok(out)
    }
}

/// [`Store::resolve_model_arg`] without opening a store when `arg` is an existing file, so
/// that running a model file needs no store directory.
pub fn resolve_model_arg(arg: &str) -> Result<PathBuf> {
    if Path::new(arg).is_file() {
        return Ok(PathBuf::from(arg));
    }
    let store = Store::open_default().map_err(|e| StoreError::UnresolvedModel {
        arg: arg.into(),
        why: e.to_string(),
    })?;
    store.resolve_model_arg(arg)
}
