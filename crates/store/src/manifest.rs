use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::check_file_name;
use crate::{Digest, StoreError};

/// Media types of manifests, configs and layers.
pub mod media {
    /// The OCI image manifest media type (every stored manifest has it).
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// The OCI image index media type (archives' `index.json`).
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// The manifest's `artifactType`.
    pub const ARTIFACT: &str = "application/vnd.freehold.model.v1";
    /// The manifest's config blob: JSON summary written at import (architecture, parameters,
    /// quantization, context length, GGUF `general.*` metadata, source).
    pub const MODEL_CONFIG: &str = "application/vnd.freehold.model.config.v1+json";
    /// GGUF weights.
    pub const GGUF: &str = "application/vnd.freehold.model.gguf";
    /// A safetensors weights file (or shard).
    pub const SAFETENSORS: &str = "application/vnd.freehold.model.safetensors";
    /// `model.safetensors.index.json`: which shard holds which tensor.
    pub const SAFETENSORS_INDEX: &str = "application/vnd.freehold.model.safetensors-index+json";
    /// A Hugging Face `config.json`.
    pub const CONFIG_JSON: &str = "application/vnd.freehold.model.config+json";
    /// `tokenizer.json`.
    pub const TOKENIZER: &str = "application/vnd.freehold.model.tokenizer+json";
    /// `tokenizer_config.json`.
    pub const TOKENIZER_CONFIG: &str = "application/vnd.freehold.model.tokenizer-config+json";
    /// A chat template (`chat_template.jinja`).
    pub const TEMPLATE: &str = "application/vnd.freehold.model.template";
    /// Licence text (`LICENSE`, `LICENSE.txt`, `--license FILE`, ...).
    pub const LICENSE: &str = "application/vnd.freehold.model.license";
    /// `NOTICE` text.
    pub const NOTICE: &str = "application/vnd.freehold.model.notice";
    /// An acceptable-use policy (`USE_POLICY.md`).
    pub const USE_POLICY: &str = "application/vnd.freehold.model.use-policy";
    /// The model card (`README.md`).
    pub const MODEL_CARD: &str = "application/vnd.freehold.model.modelcard+markdown";
    /// Generation parameters (`generation_config.json`, or parameters set by the user).
    pub const PARAMS: &str = "application/vnd.freehold.model.params+json";
    /// A LoRA adapter (reserved for the tuning work).
    pub const ADAPTER: &str = "application/vnd.freehold.model.adapter";
    /// Any other file of a model repository kept with it (vocabularies, merges, ...).
    pub const FILE: &str = "application/vnd.freehold.model.file";
}

/// The annotation holding a layer's original file name.
pub const TITLE: &str = "org.opencontainers.image.title";

/// Largest manifest accepted (a real one is a few KiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Most layers one manifest may list.
pub const MAX_LAYERS: usize = 4096;

/// A content descriptor, in the OCI JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// What the content is (see [`media`]).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its sha256.
    pub digest: Digest,
    /// Its length in bytes.
    pub size: u64,
    /// Free-form annotations; [`TITLE`] holds a layer's file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor without annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
        }
    }

    /// A descriptor whose [`TITLE`] is `file_name` (which must be a plain file name).
    pub fn with_title(
        media_type: &str,
        digest: Digest,
        size: u64,
        file_name: &str,
    ) -> Result<Descriptor, StoreError> {
        check_file_name(file_name).map_err(|why| StoreError::BadManifest {
            at: None,
            why: format!("layer {digest}: {why}"),
        })?;
        let mut d = Descriptor::new(media_type, digest, size);
        d.annotations.insert(TITLE.into(), file_name.into());
        Ok(d)
    }

    /// The layer's file name, when it has one.
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE).map(String::as_str)
    }

    /// The file name, else the media type: how errors and listings name the blob.
    pub fn what(&self) -> String {
        match self.title() {
            Some(t) => t.to_string(),
            None => self.media_type.clone(),
        }
    }
}

/// A model manifest: exactly the OCI image manifest JSON shape, so it can be pushed to and
/// pulled from OCI registries unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Always [`media::OCI_MANIFEST`].
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Always [`media::ARTIFACT`].
    #[serde(rename = "artifactType")]
    pub artifact_type: String,
    /// The config blob ([`media::MODEL_CONFIG`]).
    pub config: Descriptor,
    /// Weights, tokenizer, licence texts, model card, ... in a stable order.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// A manifest with the fixed header fields filled in.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: media::OCI_MANIFEST.into(),
            artifact_type: media::ARTIFACT.into(),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    /// The bytes stored and pushed; their sha256 is the manifest's digest. Compact JSON with
    /// fields in declaration order and annotations sorted, so equal manifests give equal bytes.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// The digest of [`Manifest::to_canonical_bytes`].
    pub fn digest(&self) -> Digest {
        Digest::of_bytes(&self.to_canonical_bytes())
    }

    /// Parses and validates manifest bytes (from the store, an archive or a registry): size,
    /// header fields, every digest (through [`Digest::parse`]), layer count, titles.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, StoreError> {
        let bad = |why: String| StoreError::BadManifest { at: None, why };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad(format!(
                "{} bytes, the limit is {MAX_MANIFEST_BYTES}",
                bytes.len()
            )));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a model manifest: {e}")))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks the header fields, layer count and layer titles.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |why: String| StoreError::BadManifest { at: None, why };
        if self.schema_version != 2 {
            return Err(bad(format!(
                "schemaVersion is {}, expected 2",
                self.schema_version
            )));
        }
        if self.media_type != media::OCI_MANIFEST {
            return Err(bad(format!(
                "mediaType is {:?}, expected {:?}",
                crate::error::clip(&self.media_type),
                media::OCI_MANIFEST
            )));
        }
        if self.artifact_type != media::ARTIFACT {
            return Err(bad(format!(
                "artifactType is {:?}, expected {:?}",
                crate::error::clip(&self.artifact_type),
                media::ARTIFACT
            )));
        }
        if self.layers.len() > MAX_LAYERS {
            return Err(bad(format!(
                "{} layers, the limit is {MAX_LAYERS}",
                self.layers.len()
            )));
        }
        for d in std::iter::once(&self.config).chain(&self.layers) {
            if let Some(t) = d.title() {
                check_file_name(t).map_err(|why| bad(format!("layer {}: {why}", d.digest)))?;
            }
            if d.media_type.is_empty()
                || d.media_type.len() > 255
                || !d.media_type.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(bad(format!(
                    "layer {}: media type {:?} is not a printable ASCII word",
                    d.digest,
                    crate::error::clip(&d.media_type)
                )));
            }
        }
        Ok(())
    }

    /// The config descriptor followed by every layer.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Total bytes of config and layers.
    pub fn total_size(&self) -> u64 {
        self.blobs().map(|d| d.size).fold(0, u64::saturating_add)
    }

    /// The first layer of `media_type`.
    pub fn layer(&self, media_type: &str) -> Option<&Descriptor> {
        self.layers.iter().find(|d| d.media_type == media_type)
    }
}
