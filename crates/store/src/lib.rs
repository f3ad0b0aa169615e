//! The local model store: content-addressed blobs, OCI-shaped manifests, a SQLite catalog
//! of `name:tag`s, verification, garbage collection, and import/export.
//!
//! Layout under the store's home (`$FREEHOLD_HOME`, else `$XDG_DATA_HOME/freehold`, else
//! `~/.local/share/freehold`):
//!
//! * `blobs/sha256/<hex>`: every blob (weights, tokenizer, licence texts, configs,
//!   manifests), named by the sha256 of its content;
//! * `tmp/`: files being written (`*.tmp`), resumable downloads (`<hex>.partial`) and their
//!   locks; same file system as `blobs/`, so installing a blob is an atomic rename;
//! * `catalog.db`: `name:tag` → manifest digest, the blobs each manifest references, policy
//!   overrides and an audit log of commits and removals;
//! * `store.lock`: held shared by processes that have written blobs not yet committed, and
//!   exclusively by `gc`.
//!
//! Security rules the types enforce: a digest's text reaches a path only as a parsed
//! [`Digest`] (exactly `sha256:` + 64 lowercase hex), model names ([`ModelRef`]) never reach
//! a path at all, layer file names are checked plain names, and archives are read entry by
//! entry against a fixed list of names, never unpacked.

mod archive;
mod digest;
mod error;
mod import;
mod manifest;
mod names;
mod store;

pub use archive::{ExportReport, NAME_ANNOTATION, REF_NAME_ANNOTATION};
pub use digest::{Digest, Hasher};
pub use error::StoreError;
pub use import::{classify, gguf_summary, layer_rank, ImportOptions, ImportReport};
pub use manifest::{media, Descriptor, Manifest, MAX_LAYERS, MAX_MANIFEST_BYTES, TITLE};
pub use names::{
    check_file_name, sanitize_name, ModelRef, DEFAULT_TAG, MAX_FILE_NAME_LEN, MAX_NAME_LEN,
    MAX_TAG_LEN,
};
pub use store::{
    default_home, resolve_model_arg, set_process_offline, GcReport, ModelCheck, ModelEntry,
    Override, PartialLock, Problem, ProblemKind, Store, TempBlob, VerifyReport,
    DEFAULT_PARTIAL_GRACE,
};
