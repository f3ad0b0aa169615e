//! Model weights: tensor descriptors resolved against the mapped GGUF file, checked for shape
//! and type once at load so that the forward pass can index without re-validating.

use std::path::Path;
use std::sync::Arc;

use gguf::GgufFile;
use quant::GgmlType;

use crate::hparams::HParams;
use crate::EngineError;

/// A 1-D or 2-D weight inside the mapped file. `rows` x `cols`, row-major, `cols` contiguous
/// (GGML order: dims[0] = cols).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub info: gguf::TensorInfo,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// The matrix repacked at load for this CPU's kernels (`kernels::pack_weights`), shared
    /// by tied tensors; `None` when the kernels read the file's blocks directly.
    pub packed: Option<Arc<kernels::PackedWeights>>,
}

/// Metadata arrays the tokenizer copies out of the file at load.
const VOCAB_ARRAYS: [&str; 4] = [
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
];

/// Returns memory freed by the allocator to the OS (glibc keeps small freed chunks otherwise),
/// so peak RSS stays close to weights + KV cache + scratch.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap memory; it has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Whether weights are repacked at load (`FREEHOLD_REPACK=0` turns it off, e.g. to compare
/// against the file's layout or to save the load time on a one-shot command).
fn repack_enabled() -> bool {
    std::env::var("FREEHOLD_REPACK").map_or(true, |v| v != "0")
}

/// Weight types the engine computes with.
pub const SUPPORTED_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Weights of one transformer block.
#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Tensor,
    pub wk: Tensor,
    pub wv: Tensor,
    pub wo: Tensor,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn_gate: Tensor,
    pub ffn_up: Tensor,
    pub ffn_down: Tensor,
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded model: hyper-parameters, weights (borrowed from the mapping) and tokenizer.
pub struct Model {
    pub file: Arc<GgufFile>,
    pub hp: HParams,
    pub token_embd: Tensor,
    pub output_norm: Vec<f32>,
    /// The output projection; the token embedding when the model ties them.
    pub output: Tensor,
    pub layers: Vec<Layer>,
    pub tokenizer: tokenizer::Tokenizer,
    /// What load-time repacking did, when it ran.
    pub repack: Option<RepackReport>,
}

/// Cost of repacking the weights at load (the issue asks for it to be reported).
#[derive(Clone, Copy, Debug)]
pub struct RepackReport {
    /// Bytes of packed matrices (they replace the file pages they were read from).
    pub bytes: usize,
    /// Wall time of the repacking.
    pub millis: f64,
}

impl Model {
    /// Opens and validates a GGUF model file.
    pub fn load(path: &Path) -> Result<Model, EngineError> {
        Self::from_gguf(GgufFile::open(path)?)
    }

    pub fn from_gguf(mut file: GgufFile) -> Result<Model, EngineError> {
        let hp = HParams::from_gguf(&file)?;
        let tokenizer = tokenizer::Tokenizer::from_gguf(&file)?;
        // The tokenizer now owns the vocabulary; the decoded arrays (tens of MB for a 262k
        // vocabulary) would otherwise stay resident next to it for the model's lifetime.
        for key in VOCAB_ARRAYS {
            file.remove(key);
        }
        release_freed_memory();
        let file = Arc::new(file);
        let ld = Loader { file: &file };
        let d = hp.n_embd;
        let token_embd = ld.matrix("token_embd.weight", hp.n_vocab, d)?;
        let output = if file.tensor("output.weight").is_some() {
            ld.matrix("output.weight", hp.n_vocab, d)?
        } else {
            token_embd.clone()
        };
        let output_norm = ld.vector("output_norm.weight", d)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let opt_vec = |s: &str, len: usize| -> Result<Option<Vec<f32>>, EngineError> {
                if file.tensor(&n(s)).is_some() {
                    ld.vector(&n(s), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            let qd = hp.q_dim();
            let kvd = hp.kv_dim();
            let layer = Layer {
                attn_norm: ld.vector(&n("attn_norm.weight"), d)?,
                wq: ld.matrix(&n("attn_q.weight"), qd, d)?,
                wk: ld.matrix(&n("attn_k.weight"), kvd, d)?,
                wv: ld.matrix(&n("attn_v.weight"), kvd, d)?,
                wo: ld.matrix(&n("attn_output.weight"), d, qd)?,
                bq: opt_vec("attn_q.bias", qd)?,
                bk: opt_vec("attn_k.bias", kvd)?,
                bv: opt_vec("attn_v.bias", kvd)?,
                q_norm: if hp.qk_norm {
                    Some(ld.vector(&n("attn_q_norm.weight"), hp.head_dim)?)
                } else {
                    None
                },
                k_norm: if hp.qk_norm {
                    Some(ld.vector(&n("attn_k_norm.weight"), hp.head_dim)?)
                } else {
                    None
                },
                post_attn_norm: if hp.post_norms {
                    Some(ld.vector(&n("post_attention_norm.weight"), d)?)
                } else {
                    None
                },
                ffn_norm: ld.vector(&n("ffn_norm.weight"), d)?,
                ffn_gate: ld.matrix(&n("ffn_gate.weight"), hp.n_ff, d)?,
                ffn_up: ld.matrix(&n("ffn_up.weight"), hp.n_ff, d)?,
                ffn_down: ld.matrix(&n("ffn_down.weight"), d, hp.n_ff)?,
                post_ffn_norm: if hp.post_norms {
                    Some(ld.vector(&n("post_ffw_norm.weight"), d)?)
                } else {
                    None
                },
            };
            layers.push(layer);
        }
        let mut model = Model {
            hp,
            token_embd,
            output_norm,
            output,
            layers,
            tokenizer,
            file,
            repack: None,
        };
        if repack_enabled() {
            let t0 = std::time::Instant::now();
            let bytes = model.repack()?;
            if bytes > 0 {
                model.repack = Some(RepackReport {
                    bytes,
                    millis: t0.elapsed().as_secs_f64() * 1e3,
                });
            }
        }
        Ok(model)
    }

    /// Repacks every matrix the kernels can read faster in their own layout (all of them in
    /// one pass over the pool's threads), releasing the file pages each part was read from as
    /// it goes, so resident memory stays about one copy of the weights. An embedding tied to
    /// the output projection is then looked up in the packed copy; an untied one keeps being
    /// read from the file (a few rows per token). Returns the bytes packed.
    fn repack(&mut self) -> Result<usize, EngineError> {
        let mut slots: Vec<&mut Tensor> = vec![&mut self.output];
        for l in &mut self.layers {
            slots.extend([
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.ffn_gate,
                &mut l.ffn_up,
                &mut l.ffn_down,
            ]);
        }
        let file = &self.file;
        let ws = slots
            .iter()
            .map(|t| {
                kernels::Weights::new(t.ty, file.tensor_data(&t.info), t.rows, t.cols).map_err(
                    |e| EngineError::Tensor {
                        name: t.info.name.clone(),
                        message: e.to_string(),
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pool = kernels::ThreadPool::with_available_parallelism();
        let results = kernels::pack_weights(&pool, &ws, &|part| file.release_pages(part));
        let bytes = results.iter().flatten().map(|p| p.bytes()).sum();
        for (slot, packed) in slots.into_iter().zip(results) {
            slot.packed = packed.map(Arc::new);
        }
        // A tied embedding is looked up in the packed copy: the file's pages were released.
        if self.output.info.name == self.token_embd.info.name {
            self.token_embd.packed = self.output.packed.clone();
        }
        Ok(bytes)
    }

    /// The bytes of a weight inside the mapping.
    pub fn data(&self, t: &Tensor) -> &[u8] {
        self.file.tensor_data(&t.info)
    }

    /// A kernel view of a weight matrix.
    pub fn weights<'a>(&'a self, t: &'a Tensor) -> Result<kernels::Weights<'a>, EngineError> {
        let err = |e: kernels::KernelError| EngineError::Tensor {
            name: t.info.name.clone(),
            message: e.to_string(),
        };
        let w = kernels::Weights::new(t.ty, self.data(t), t.rows, t.cols).map_err(err)?;
        match &t.packed {
            Some(p) => w.with_packed(p).map_err(err),
            None => Ok(w),
        }
    }

    /// Dequantizes row `row` of `t` (embedding lookup).
    pub fn row_f32(&self, t: &Tensor, row: usize, out: &mut [f32]) -> Result<(), EngineError> {
        if let Some(p) = &t.packed {
            if row >= t.rows || out.len() != t.cols {
                return Err(EngineError::Tensor {
                    name: t.info.name.clone(),
                    message: format!("row {row} of {} into {} floats", t.rows, out.len()),
                });
            }
            p.row_f32(row, out);
            return Ok(());
        }
        let row_bytes = t.info.n_bytes as usize / t.rows;
        let data = &self.data(t)[row * row_bytes..(row + 1) * row_bytes];
        quant::dequantize(t.ty, data, out).map_err(|e| EngineError::Tensor {
            name: t.info.name.clone(),
            message: e.to_string(),
        })
    }

    /// Total bytes of weights (the mapped tensor data).
    pub fn weight_bytes(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_bytes).sum()
    }
}

struct Loader<'a> {
    file: &'a GgufFile,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<&gguf::TensorInfo, EngineError> {
        self.file.tensor(name).ok_or_else(|| EngineError::Tensor {
            name: name.to_string(),
            message: "missing from the model file".into(),
        })
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor, EngineError> {
        let t = self.info(name)?;
        let want = [cols as u64, rows as u64];
        let dims_ok = t.dims.len() == 2 && t.dims[..] == want
            || (t.dims.len() > 2 && t.dims[..2] == want && t.dims[2..].iter().all(|&d| d == 1));
        if !dims_ok {
            return Err(EngineError::Tensor {
                name: name.into(),
                message: format!("shape {:?}, expected {:?}", t.dims, want),
            });
        }
        if !SUPPORTED_TYPES.contains(&t.ty) {
            return Err(EngineError::Tensor {
                name: name.into(),
                message: format!("type {} is not supported", t.ty),
            });
        }
        Ok(Tensor {
            info: t.clone(),
            ty: t.ty,
            rows,
            cols,
            packed: None,
        })
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        let t = self.info(name)?;
        if t.n_elements() != len as u64 {
            return Err(EngineError::Tensor {
                name: name.into(),
                message: format!("shape {:?}, expected [{len}]", t.dims),
            });
        }
        let mut out = vec![0f32; len];
        quant::dequantize(t.ty, self.file.tensor_data(t), &mut out).map_err(|e| {
            EngineError::Tensor {
                name: name.into(),
                message: e.to_string(),
            }
        })?;
        Ok(out)
    }
}
