//! Hyper-parameters of each supported architecture, read from GGUF metadata in one place per
//! architecture so that adding a model family is a data change, not a code hunt.

use gguf::GgufFile;

use crate::EngineError;

/// Supported model families (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, TinyLlama, Mistral, SmolLM2.
    Llama,
    /// Gemma 3: sliding-window layers, GELU-tanh, QK-norm, scaled embeddings, two rope bases,
    /// post-attention and post-FFN norms.
    Gemma3,
    /// Qwen 2 / 2.5: biases on Q, K and V.
    Qwen2,
    /// Qwen 3: QK-norm, explicit head size.
    Qwen3,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        Some(match name {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// Supported architecture names, for error messages.
    pub const SUPPORTED: &'static str = "llama, gemma3, qwen2, qwen3";
}

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeKind {
    /// Adjacent pairs (x[2i], x[2i+1]); GGUF llama weights are permuted for this.
    Adjacent,
    /// Halves (x[i], x[i + n_rot/2]) as in GPT-NeoX.
    Halves,
}

/// Feed-forward gate activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
}

/// Per-layer attention geometry that may differ between layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerAttention {
    /// `Some(w)`: a query at position p sees keys at positions j with p - j < w.
    pub window: Option<usize>,
    pub rope_base: f32,
    pub rope_scale: f32,
}

#[derive(Clone, Debug)]
pub struct HParams {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rms_eps: f32,
    pub rope_kind: RopeKind,
    pub activation: Activation,
    /// Multiply embeddings by this (Gemma: sqrt(n_embd)).
    pub embd_scale: f32,
    /// Multiply Q·K by this before the softmax.
    pub attn_scale: f32,
    pub qk_norm: bool,
    pub post_norms: bool,
    pub layers: Vec<LayerAttention>,
}

impl HParams {
    pub fn from_gguf(f: &GgufFile) -> Result<HParams, EngineError> {
        let arch_name = f
            .get_str("general.architecture")
            .ok_or_else(|| EngineError::Metadata {
                key: "general.architecture".into(),
                message: "missing".into(),
            })?;
        let arch = Arch::from_name(arch_name)
            .ok_or_else(|| EngineError::UnsupportedArch(arch_name.to_string()))?;
        let a = arch_name;
        let req = |k: &str| -> Result<usize, EngineError> {
            let key = format!("{a}.{k}");
            f.get_u64(&key)
                .filter(|&v| v > 0 && v <= 1 << 24)
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::Metadata {
                    key,
                    message: "missing or not a positive integer below 2^24".into(),
                })
        };
        let opt = |k: &str| f.get_u64(&format!("{a}.{k}")).map(|v| v as usize);
        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_ff = req("feed_forward_length")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = opt("attention.head_count_kv").unwrap_or(n_head);
        let n_ctx_train = req("context_length")?;
        let head_dim = opt("attention.key_length").unwrap_or(n_embd / n_head);
        let n_rot = opt("rope.dimension_count").unwrap_or(head_dim);
        let rms_eps = f
            .get_f32(&format!("{a}.attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-5);
        let rope_base = f.get_f32(&format!("{a}.rope.freq_base")).unwrap_or(10000.0);
        let rope_scale = match f.get_str(&format!("{a}.rope.scaling.type")) {
            Some("linear") => f
                .get_f32(&format!("{a}.rope.scaling.factor"))
                .filter(|x| *x > 0.0)
                .map(|x| 1.0 / x)
                .unwrap_or(1.0),
            None | Some("none") => 1.0,
            Some(other) => {
                return Err(EngineError::Metadata {
                    key: format!("{a}.rope.scaling.type"),
                    message: format!("rope scaling {other:?} is not supported yet"),
                })
            }
        };
        let n_vocab = f
            .get_array("tokenizer.ggml.tokens")
            .map(|t| t.len())
            .or_else(|| opt("vocab_size"))
            .ok_or_else(|| EngineError::Metadata {
                key: "tokenizer.ggml.tokens".into(),
                message: "missing: cannot tell the vocabulary size".into(),
            })?;

        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::Metadata {
                key: format!("{a}.attention.head_count_kv"),
                message: format!("{n_head_kv} does not divide the head count {n_head}"),
            });
        }
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::Metadata {
                key: format!("{a}.rope.dimension_count"),
                message: format!("{n_rot} must be even and at most the head size {head_dim}"),
            });
        }

        let global = LayerAttention {
            window: None,
            rope_base,
            rope_scale,
        };
        let mut hp = HParams {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rms_eps,
            rope_kind: RopeKind::Halves,
            activation: Activation::Silu,
            embd_scale: 1.0,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            qk_norm: false,
            post_norms: false,
            layers: vec![global; n_layer],
        };
        match arch {
            Arch::Llama => hp.rope_kind = RopeKind::Adjacent,
            Arch::Qwen2 => {}
            Arch::Qwen3 => hp.qk_norm = true,
            Arch::Gemma3 => {
                hp.activation = Activation::GeluTanh;
                hp.embd_scale = (n_embd as f32).sqrt();
                hp.qk_norm = true;
                hp.post_norms = true;
                // llama.cpp: 1/sqrt(n_embd/n_head) for the 27B model, 1/sqrt(head size) otherwise.
                if n_layer == 62 && n_embd == 5376 {
                    hp.attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
                }
                let window = opt("attention.sliding_window").unwrap_or(4096);
                // Five sliding-window layers, then one global layer; local layers use rope base
                // 10000 without scaling (Gemma 3 technical report, section 2).
                for (il, layer) in hp.layers.iter_mut().enumerate() {
                    if il % 6 < 5 {
                        *layer = LayerAttention {
                            window: Some(window),
                            rope_base: 10000.0,
                            rope_scale: 1.0,
                        };
                    }
                }
            }
        }
        Ok(hp)
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}
