//! The inference engine: architectures, weights, KV cache, forward pass, sampling,
//! generation and perplexity. It computes with `kernels`, reads weights through `gguf`, and
//! knows nothing of HTTP, stores or terminals.

mod forward;
mod generate;
pub mod hparams;
mod kv;
pub mod memory;
mod model;
mod perplexity;
pub mod sampling;

pub use forward::{BatchError, BatchItem, Batcher, LogitsFor, Session};
pub use generate::{
    eval_prompt, generate, FinishReason, GenerateParams, Generation, DEFAULT_BATCH,
};
pub use hparams::{Arch, HParams};
pub use kv::{KvCache, KvType};
pub use model::{Layer, Model, RepackReport, Tensor, SUPPORTED_TYPES};
pub use perplexity::{perplexity, PerplexityResult};
pub use sampling::{Sampler, SamplingParams};

/// Everything the engine can refuse, each naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("unsupported architecture {0:?} (supported: {sup})", sup = Arch::SUPPORTED)]
    UnsupportedArch(String),
    #[error("metadata {key}: {message}")]
    Metadata { key: String, message: String },
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
    #[error("kernel: {0}")]
    Kernel(#[from] kernels::KernelError),
    #[error("the prompt needs {n_prompt} tokens of context but the context is {n_ctx} (use a shorter prompt or a larger --ctx)")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("context overflow: {needed} positions needed, context is {n_ctx}")]
    ContextOverflow { needed: usize, n_ctx: usize },
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("empty batch: nothing to evaluate")]
    EmptyBatch,
    #[error("{0}")]
    BadArgument(String),
}
