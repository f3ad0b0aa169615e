//! Tokenizers (SentencePiece, byte-level BPE, WordPiece) built from GGUF metadata or a
//! Hugging Face `tokenizer.json`, and chat-template rendering.
//!
//! [`Tokenizer::from_gguf`] reproduces llama.cpp's `llama_tokenize(text, add_special,
//! parse_special)` and `llama_token_to_piece` exactly (held to llama.cpp's own tokenizer test
//! vectors and to reference ids of real models); [`Tokenizer::from_hf_json`] wraps the
//! `tokenizers` crate behind the same surface.
//!
//! Architecture invariant: nothing here knows about models or inference; a tokenizer is built
//! from metadata only, and hostile metadata gives a [`TokenizerError`], never a panic.

pub mod chat;
mod hf;
mod pretok;
mod unicode;
mod vocab;

use std::path::{Path, PathBuf};

pub use pretok::PreType;
pub use vocab::{SpecialIds, VocabType};

/// What went wrong building or using a tokenizer, naming the metadata key or file involved.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("missing metadata key {key}")]
    MissingKey { key: String },
    #[error("{key}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: String,
        found: String,
    },
    #[error("unknown tokenizer model {model:?} in tokenizer.ggml.model (supported: llama, gpt2, bert, gemma4)")]
    UnknownModel { model: String },
    #[error("unknown pre-tokenizer {pre:?} in tokenizer.ggml.pre")]
    UnknownPreTokenizer { pre: String },
    #[error(
        "{key} has {found} entries, fewer than the {expected} tokens in tokenizer.ggml.tokens"
    )]
    LengthMismatch {
        key: String,
        found: usize,
        expected: usize,
    },
    #[error("{key}[{index}]: {what}")]
    BadEntry {
        key: String,
        index: usize,
        what: String,
    },
    #[error("{key} = {id} is out of range: the vocabulary has {n_tokens} tokens")]
    IdOutOfRange {
        key: String,
        id: u64,
        n_tokens: usize,
    },
    #[error("{key}: {what}")]
    Invalid { key: String, what: String },
    #[error("pre-tokenizer regex {pattern:?} does not compile: {msg}")]
    Regex { pattern: String, msg: String },
    #[error("tokenizer.json {path}: {msg}")]
    HfJson { path: PathBuf, msg: String },
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
}

/// Which implementation is behind a [`Tokenizer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// From GGUF metadata, with llama.cpp's algorithm of that type.
    Gguf(VocabType),
    /// A Hugging Face `tokenizer.json` through the `tokenizers` crate.
    HuggingFace,
}

#[derive(Debug)]
enum Inner {
    Gguf(Box<vocab::Vocab>),
    Hf(Box<hf::HfTokenizer>),
}

/// A tokenizer: text to token ids and back.
#[derive(Debug)]
pub struct Tokenizer {
    inner: Inner,
}

pub(crate) fn vocab_eog_texts() -> &'static [&'static str] {
    &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|eom_id|>",
        "<|end_of_text|>",
        "<eos>",
        "</s>",
    ]
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &gguf::GgufFile) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer {
            inner: Inner::Gguf(Box::new(vocab::Vocab::from_gguf(file)?)),
        })
    }

    /// Opens a GGUF file and builds its tokenizer.
    pub fn from_gguf_path(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let f = gguf::GgufFile::open(path)?;
        Self::from_gguf(&f)
    }

    /// Loads a Hugging Face `tokenizer.json`. BOS/EOS and `add_bos_token` come from a
    /// `tokenizer_config.json` in the same directory when there is one.
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer {
            inner: Inner::Hf(Box::new(hf::HfTokenizer::from_file(path.as_ref())?)),
        })
    }

    pub fn kind(&self) -> TokenizerKind {
        match &self.inner {
            Inner::Gguf(v) => TokenizerKind::Gguf(v.ty),
            Inner::Hf(_) => TokenizerKind::HuggingFace,
        }
    }

    /// `llama_tokenize(text, add_special, parse_special)`: with `add_special` the model's BOS
    /// (and EOS, SEP) are added as its metadata says; with `parse_special` the text of
    /// control tokens (`<|im_start|>`) becomes those tokens. User-defined tokens are always
    /// matched, as in llama.cpp. A Hugging Face tokenizer that fails to encode gives an empty
    /// vector; use [`Tokenizer::try_encode`] to see the error.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.try_encode(text, add_special, parse_special)
            .unwrap_or_default()
    }

    /// [`Tokenizer::encode`] with the error of a Hugging Face tokenizer (GGUF vocabularies
    /// never fail to encode).
    pub fn try_encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        match &self.inner {
            Inner::Gguf(v) => Ok(v.encode(text, add_special, parse_special)),
            Inner::Hf(h) => h.encode(text, add_special, parse_special),
        }
    }

    /// `llama_token_to_piece(id, lstrip = 0, special)`: the raw bytes of one token (byte
    /// tokens give their byte, so a piece may be part of a UTF-8 character). Control and
    /// unknown tokens give nothing unless `special`. Ids out of range give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        match &self.inner {
            Inner::Gguf(v) => v.token_to_piece(id, special),
            Inner::Hf(h) => h.token_to_piece(id, special),
        }
    }

    /// `llama_detokenize(ids, remove_special, unparse_special)`: the pieces concatenated, the
    /// leading space the SentencePiece prefix added removed, a BOS/EOS that the model adds
    /// itself dropped with `remove_special`, and llama.cpp's space clean-up where the vocabulary
    /// asks for it.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        match &self.inner {
            Inner::Gguf(v) => v.detokenize(ids, remove_special, unparse_special),
            Inner::Hf(h) => h
                .decode(ids, unparse_special)
                .map(String::into_bytes)
                .unwrap_or_default(),
        }
    }

    /// Text of `ids`: with `special` false, control tokens are dropped, a BOS/EOS the model
    /// adds itself is removed and so is the SentencePiece prefix space (so
    /// `decode(&encode(t, true, false), false) == t` for ordinary text; llama.cpp's
    /// [`Tokenizer::detokenize`] keeps that space after a BOS); with `special` true they are
    /// rendered as `detokenize(ids, false, true)`. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let bytes = match &self.inner {
            Inner::Gguf(v) => v.detokenize_with(ids, !special, special, true),
            Inner::Hf(_) => self.detokenize(ids, !special, special),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether generation should stop at `id` (EOS, EOT, EOM and the tokens llama.cpp
    /// recognises by text: `<|im_end|>`, `<|endoftext|>`, `<end_of_turn>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        match &self.inner {
            Inner::Gguf(v) => v.is_eog(id),
            Inner::Hf(h) => h.is_eog(id),
        }
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        match &self.inner {
            Inner::Gguf(v) => v.eog_ids().collect(),
            Inner::Hf(h) => (0..h.vocab_size() as u32)
                .filter(|&i| h.is_eog(i))
                .collect(),
        }
    }

    pub fn bos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(v) => v.ids.bos,
            Inner::Hf(h) => h.bos,
        }
    }

    pub fn eos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(v) => v.ids.eos,
            Inner::Hf(h) => h.eos,
        }
    }

    /// Special ids of a GGUF vocabulary (EOT, EOM, UNK, PAD, FIM, ...); for a Hugging Face
    /// tokenizer only BOS and EOS are filled in.
    pub fn special_ids(&self) -> SpecialIds {
        match &self.inner {
            Inner::Gguf(v) => v.ids,
            Inner::Hf(h) => SpecialIds {
                bos: h.bos,
                eos: h.eos,
                ..Default::default()
            },
        }
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        match &self.inner {
            Inner::Gguf(v) => v.add_bos && v.ids.bos.is_some(),
            Inner::Hf(h) => h.add_bos,
        }
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        match &self.inner {
            Inner::Gguf(v) => v.add_eos && v.ids.eos.is_some(),
            Inner::Hf(_) => false,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Gguf(v) => v.n_tokens(),
            Inner::Hf(h) => h.vocab_size(),
        }
    }

    /// The vocabulary text of `id` (as stored: `▁` for spaces, GPT-2 byte map for BPE).
    pub fn token_text(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Gguf(v) => v.tokens.get(id as usize).cloned(),
            Inner::Hf(h) => h.token_text(id),
        }
    }

    /// The id whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(v) => v.token_id(text),
            Inner::Hf(h) => h.token_id(text),
        }
    }

    /// Whether `id` is a control token (rendered only with `special`).
    pub fn is_control(&self, id: u32) -> bool {
        match &self.inner {
            Inner::Gguf(v) => v
                .attrs
                .get(id as usize)
                .is_some_and(|a| a & vocab::attr::CONTROL != 0),
            Inner::Hf(h) => h.is_special(id),
        }
    }

    /// `tokenizer.ggml.model` of a GGUF vocabulary (`llama`, `gpt2`, `bert`, `gemma4`).
    pub fn tokenizer_model(&self) -> &str {
        match &self.inner {
            Inner::Gguf(v) => &v.model,
            Inner::Hf(_) => "huggingface",
        }
    }

    /// Whether the model wants a SEP token after the text (embedding/reranking inputs;
    /// `encode` does not add it, as `llama_tokenize` does not).
    pub fn add_sep(&self) -> bool {
        match &self.inner {
            Inner::Gguf(v) => v.add_sep,
            Inner::Hf(_) => false,
        }
    }

    /// `tokenizer.ggml.remove_extra_whitespaces` (read, but llama.cpp's SPM path ignores it).
    pub fn remove_extra_whitespaces(&self) -> bool {
        match &self.inner {
            Inner::Gguf(v) => v.remove_extra_whitespaces,
            Inner::Hf(_) => false,
        }
    }

    /// The SentencePiece score of `id` (0 where the vocabulary has none).
    pub fn token_score(&self, id: u32) -> Option<f32> {
        match &self.inner {
            Inner::Gguf(v) => v.score(id),
            Inner::Hf(_) => None,
        }
    }

    /// `tokenizer.ggml.pre` as used (empty when absent; not meaningful for SPM/WPM).
    pub fn pre_tokenizer_name(&self) -> &str {
        match &self.inner {
            Inner::Gguf(v) => &v.pre_name,
            Inner::Hf(_) => "",
        }
    }

    /// A streaming decoder over this tokenizer.
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, special)
    }
}

/// Turns a stream of token ids into text, emitting only complete UTF-8 characters: bytes of a
/// character split across tokens are held until the character is complete. Bytes that can
/// never form a character become U+FFFD. Call [`StreamDecoder::flush`] at the end.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// `special`: render control tokens (as `token_to_piece`).
    pub fn new(tok: &'a Tokenizer, special: bool) -> StreamDecoder<'a> {
        StreamDecoder {
            tok,
            special,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text completed by it (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tok.token_to_piece(id, self.special);
        self.push_bytes(&piece)
    }

    /// Adds raw bytes; returns the complete characters available.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: from_utf8 said the prefix is valid.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // incomplete character at the end: keep it for the next token
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: held-back bytes of an unfinished character become U+FFFD.
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
