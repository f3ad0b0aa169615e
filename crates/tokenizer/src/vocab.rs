//! The llama.cpp-compatible vocabulary built from GGUF metadata, and its encode/decode.
//!
//! Behaviour follows llama.cpp's `llama_vocab` (llama-vocab.cpp at commit 0c1e57098): the same
//! defaults per tokenizer model, the same auto-detection of end-of-generation and FIM tokens
//! by their text, the same partition of the input by special tokens (with lstrip/rstrip), and
//! the same SPM / BPE / WPM algorithms. Where llama.cpp aborts on bad metadata this returns a
//! [`TokenizerError`]; where it silently repairs (empty token text, out-of-range default ids)
//! this does the same repair.

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use gguf::{GgufFile, Value};

use crate::pretok::{PreTokenizer, PreType};
use crate::unicode;
use crate::TokenizerError;

/// Token attributes (llama.cpp's `llama_token_attr` bits).
pub mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// FxHash: a fast non-cryptographic hash; the keys are token texts from the model file, and
/// the maps are built once, so hash flooding is not a concern worth SipHash's cost here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The tokenization algorithm of a GGUF vocabulary (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabType {
    /// SentencePiece-style (`llama`): score-ordered bigram merges with byte fallback.
    Spm,
    /// Byte-level BPE (`gpt2`, also `gemma4`): pre-tokenizer regexes and merge ranks.
    Bpe,
    /// WordPiece (`bert`): greedy longest match per word.
    Wpm,
}

/// Special token ids of a vocabulary (`None` where the model has none).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

#[derive(Debug)]
pub struct Vocab {
    pub(crate) ty: VocabType,
    pub(crate) model: String,
    pub(crate) pre_name: String,
    pretok: Option<PreTokenizer>,
    pre: Option<PreType>,
    pub(crate) tokens: Vec<String>,
    scores: Vec<f32>,
    pub(crate) attrs: Vec<u32>,
    token_to_id: FxMap<String, u32>,
    /// Merge ranks keyed by `"left right"`.
    bpe_ranks: FxMap<String, u32>,
    pub(crate) ids: SpecialIds,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_sep: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    clean_spaces: bool,
    ignore_merges: bool,
    lowercase: bool,
    strip_accents: bool,
    max_token_len: usize,
    /// Control, user-defined and unknown tokens, longest text first.
    special_tokens: Vec<u32>,
    special_matcher: OnceLock<Option<aho_corasick::AhoCorasick>>,
    eog: BTreeSet<u32>,
}

fn key(k: &str) -> String {
    format!("tokenizer.ggml.{k}")
}

fn wrong_type(k: &str, expected: &str, v: &Value) -> TokenizerError {
    TokenizerError::WrongType {
        key: key(k),
        expected: expected.to_string(),
        found: v.display_short(4),
    }
}

fn get_bool(f: &GgufFile, k: &str) -> Result<Option<bool>, TokenizerError> {
    match f.get(&key(k)) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type(k, "bool", v)),
    }
}

fn get_id(f: &GgufFile, k: &str, n: usize) -> Result<Option<u32>, TokenizerError> {
    match f.get(&key(k)) {
        None => Ok(None),
        Some(v) => {
            let id = v
                .as_u64()
                .ok_or_else(|| wrong_type(k, "non-negative integer", v))?;
            if id >= n as u64 {
                return Err(TokenizerError::IdOutOfRange {
                    key: key(k),
                    id,
                    n_tokens: n,
                });
            }
            Ok(Some(id as u32))
        }
    }
}

fn get_str_array<'a>(f: &'a GgufFile, k: &str) -> Result<Option<&'a [Value]>, TokenizerError> {
    match f.get(&key(k)) {
        None => Ok(None),
        Some(v) => match v.as_array() {
            Some(a) => Ok(Some(a)),
            None => Err(wrong_type(k, "array of strings", v)),
        },
    }
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Heap entry of the SPM merge queue: highest score first, then leftmost.
struct SpmBigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}
impl PartialEq for SpmBigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for SpmBigram {}
impl PartialOrd for SpmBigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for SpmBigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Heap entry of the BPE merge queue: lowest rank first, then leftmost.
struct BpeBigram {
    left: usize,
    right: usize,
    rank: u32,
    size: usize,
}
impl PartialEq for BpeBigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for BpeBigram {}
impl PartialOrd for BpeBigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for BpeBigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.rank.cmp(&self.rank).then_with(|| o.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    n: usize,
    prev: isize,
    next: isize,
}

enum Frag {
    Text(usize, usize),
    Token(u32),
}

impl Vocab {
    /// Builds the vocabulary from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Vocab, TokenizerError> {
        let model = match f.get(&key("model")) {
            None => return Err(TokenizerError::MissingKey { key: key("model") }),
            Some(v) => v
                .as_str()
                .ok_or_else(|| wrong_type("model", "string", v))?
                .to_string(),
        };
        let pre_name = match f.get(&key("pre")) {
            None => String::new(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| wrong_type("pre", "string", v))?
                .to_string(),
        };

        // Defaults per model (llama.cpp's loader), as (bos, eos, unk, sep, pad, mask).
        let (ty, defaults): (VocabType, [Option<u32>; 6]) = match model.as_str() {
            "llama" => (
                VocabType::Spm,
                [Some(1), Some(2), Some(0), None, None, None],
            ),
            "bert" => (
                VocabType::Wpm,
                [Some(101), None, Some(100), Some(102), Some(0), Some(103)],
            ),
            "gpt2" => (VocabType::Bpe, [Some(11), Some(11), None, None, None, None]),
            "gemma4" => (VocabType::Bpe, [None; 6]),
            _ => return Err(TokenizerError::UnknownModel { model }),
        };

        let mut add_space_prefix = false;
        let mut escape_whitespaces = true;
        let mut clean_spaces = false;
        let mut add_bos = false;
        let mut add_eos = false;
        let mut add_sep = false;
        let mut ignore_merges = false;
        let mut pre = None;
        let mut pre_name_eff = pre_name.clone();
        match ty {
            VocabType::Bpe => {
                if model == "gemma4" {
                    pre_name_eff = "gemma4".to_string();
                }
                add_space_prefix = false;
                escape_whitespaces = false;
                clean_spaces = true;
                let (p, flags) = PreType::from_name(&pre_name_eff).ok_or_else(|| {
                    TokenizerError::UnknownPreTokenizer {
                        pre: pre_name_eff.clone(),
                    }
                })?;
                pre = Some(p);
                ignore_merges = flags.ignore_merges;
                if let Some(c) = flags.clean_spaces {
                    clean_spaces = c;
                }
                if let Some(b) = flags.add_bos {
                    add_bos = b;
                }
                if flags.escape_whitespaces {
                    escape_whitespaces = true;
                }
                if pre_name_eff == "jina-v1-en"
                    || pre_name_eff == "jina-v2-code"
                    || pre_name_eff == "roberta-bpe"
                {
                    add_sep = true;
                }
            }
            VocabType::Spm => {
                add_space_prefix = true;
                add_bos = true;
            }
            VocabType::Wpm => {
                clean_spaces = true;
                add_bos = true;
                add_sep = true;
            }
        }
        if let Some(b) = get_bool(f, "add_space_prefix")? {
            add_space_prefix = b;
        }
        let remove_extra_whitespaces = get_bool(f, "remove_extra_whitespaces")?.unwrap_or(false);

        // Tokens, scores, types.
        let tok_vals = get_str_array(f, "tokens")?
            .ok_or_else(|| TokenizerError::MissingKey { key: key("tokens") })?;
        let n = tok_vals.len();
        if n == 0 {
            return Err(TokenizerError::Invalid {
                key: key("tokens"),
                what: "the vocabulary is empty".into(),
            });
        }
        if n > i32::MAX as usize {
            return Err(TokenizerError::Invalid {
                key: key("tokens"),
                what: format!("{n} tokens is more than a token id can address"),
            });
        }
        let scores_v = get_str_array(f, "scores")?;
        if let Some(s) = scores_v {
            if s.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    key: key("scores"),
                    found: s.len(),
                    expected: n,
                });
            }
        }
        let types_v = get_str_array(f, "token_type")?;
        if let Some(t) = types_v {
            if t.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    key: key("token_type"),
                    found: t.len(),
                    expected: n,
                });
            }
        }

        let mut tokens = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(n);
        let mut attrs = Vec::with_capacity(n);
        let mut token_to_id: FxMap<String, u32> =
            FxMap::with_capacity_and_hasher(n, Default::default());
        let mut max_token_len = 0usize;
        for i in 0..n {
            let text = tok_vals[i]
                .as_str()
                .ok_or_else(|| TokenizerError::BadEntry {
                    key: key("tokens"),
                    index: i,
                    what: format!("expected a string, found {}", tok_vals[i].display_short(2)),
                })?;
            let text = if text.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                text.to_string()
            };
            max_token_len = max_token_len.max(text.len());
            let score = match scores_v {
                None => 0.0,
                Some(s) => match &s[i] {
                    Value::F32(x) => *x,
                    Value::I32(x) => *x as f32,
                    other => {
                        return Err(TokenizerError::BadEntry {
                            key: key("scores"),
                            index: i,
                            what: format!("expected f32 or i32, found {}", other.display_short(2)),
                        })
                    }
                },
            };
            let a = match types_v {
                None => attr::NORMAL,
                Some(t) => match &t[i] {
                    Value::I32(x) => match x {
                        1 => attr::NORMAL,
                        2 => attr::UNKNOWN,
                        3 => attr::CONTROL,
                        4 => attr::USER_DEFINED,
                        5 => attr::UNUSED,
                        6 => attr::BYTE,
                        _ => 0,
                    },
                    other => {
                        return Err(TokenizerError::BadEntry {
                            key: key("token_type"),
                            index: i,
                            what: format!("expected i32, found {}", other.display_short(2)),
                        })
                    }
                },
            };
            token_to_id.insert(text.clone(), i as u32);
            tokens.push(text);
            scores.push(score);
            attrs.push(a);
        }

        // Merges (BPE only).
        let mut bpe_ranks: FxMap<String, u32> = FxMap::default();
        if ty == VocabType::Bpe {
            let merges = get_str_array(f, "merges")?
                .ok_or_else(|| TokenizerError::MissingKey { key: key("merges") })?;
            bpe_ranks.reserve(merges.len());
            for (i, m) in merges.iter().enumerate() {
                let s = m.as_str().ok_or_else(|| TokenizerError::BadEntry {
                    key: key("merges"),
                    index: i,
                    what: format!("expected a string, found {}", m.display_short(2)),
                })?;
                // Split at the first space after the first byte (a merge may start with one).
                if let Some(p) = s.get(1..).and_then(|r| r.find(' ')).map(|p| p + 1) {
                    let (l, r) = (&s[..p], &s[p + 1..]);
                    let k = format!("{l} {r}");
                    bpe_ranks.entry(k).or_insert(i as u32);
                } else if let Some(p) = s.char_indices().nth(1).and_then(|(b, _)| {
                    // first byte not on a char boundary: search from the next char
                    s[b..].find(' ').map(|q| q + b)
                }) {
                    let (l, r) = (&s[..p], &s[p + 1..]);
                    bpe_ranks.entry(format!("{l} {r}")).or_insert(i as u32);
                }
            }
        }

        // Special ids: model defaults (dropped when out of range), then metadata.
        let in_range = |d: Option<u32>| d.filter(|&id| (id as usize) < n);
        let mut ids = SpecialIds {
            bos: in_range(defaults[0]),
            eos: in_range(defaults[1]),
            unk: in_range(defaults[2]),
            sep: in_range(defaults[3]),
            pad: in_range(defaults[4]),
            mask: in_range(defaults[5]),
            ..Default::default()
        };
        if ty == VocabType::Bpe
            && (pre_name_eff == "chatglm-bpe" || pre_name_eff == "glm4" || pre_name_eff == "glm5")
        {
            ids.bos = None;
        }
        let keys: [&str; 17] = [
            "bos_token_id",
            "eos_token_id",
            "eot_token_id",
            "eom_token_id",
            "unknown_token_id",
            "seperator_token_id",
            "padding_token_id",
            "mask_token_id",
            "fim_pre_token_id",
            "fim_suf_token_id",
            "fim_mid_token_id",
            "fim_pad_token_id",
            "fim_rep_token_id",
            "fim_sep_token_id",
            "prefix_token_id",
            "suffix_token_id",
            "middle_token_id",
        ];
        for k in keys {
            let Some(id) = get_id(f, k, n)? else {
                continue;
            };
            let slot = match k {
                "bos_token_id" => &mut ids.bos,
                "eos_token_id" => &mut ids.eos,
                "eot_token_id" => &mut ids.eot,
                "eom_token_id" => &mut ids.eom,
                "unknown_token_id" => &mut ids.unk,
                "seperator_token_id" => &mut ids.sep,
                "padding_token_id" => &mut ids.pad,
                "mask_token_id" => &mut ids.mask,
                "fim_pre_token_id" | "prefix_token_id" => &mut ids.fim_pre,
                "fim_suf_token_id" | "suffix_token_id" => &mut ids.fim_suf,
                "fim_mid_token_id" | "middle_token_id" => &mut ids.fim_mid,
                "fim_pad_token_id" => &mut ids.fim_pad,
                "fim_rep_token_id" => &mut ids.fim_rep,
                _ => &mut ids.fim_sep,
            };
            *slot = Some(id);
        }
        if let Some(b) = get_bool(f, "add_bos_token")? {
            add_bos = b;
        }
        if let Some(b) = get_bool(f, "add_eos_token")? {
            add_eos = b;
        }
        if let Some(b) = get_bool(f, "add_sep_token")? {
            add_sep = b;
        }
        if pre == Some(PreType::Gemma4) {
            add_bos = true;
        }
        let lowercase = get_bool(f, "normalizer.lowercase")?.unwrap_or(true);
        let strip_accents = get_bool(f, "normalizer.strip_accents")?.unwrap_or(lowercase);

        // Auto-detection by text, over the unique texts (the id that owns each text).
        let owns = |id: usize, tokens: &[String], map: &FxMap<String, u32>| {
            map.get(&tokens[id]).copied() == Some(id as u32)
        };
        let detect = |slot: &mut Option<u32>,
                      texts: &[&str],
                      attrs: &mut Vec<u32>,
                      tokens: &[String],
                      map: &FxMap<String, u32>| {
            if slot.is_some() {
                return;
            }
            let mut best: Option<u32> = None;
            for t in texts {
                if let Some(&id) = map.get(*t) {
                    best = Some(best.map_or(id, |b: u32| b.min(id)));
                }
            }
            if let Some(id) = best {
                *slot = Some(id);
                attrs[id as usize] |= attr::CONTROL;
            }
            let _ = tokens;
        };
        detect(&mut ids.eot, EOT_TEXTS, &mut attrs, &tokens, &token_to_id);
        detect(
            &mut ids.eom,
            &["<|eom_id|>"],
            &mut attrs,
            &tokens,
            &token_to_id,
        );
        detect(
            &mut ids.fim_pre,
            FIM_PRE_TEXTS,
            &mut attrs,
            &tokens,
            &token_to_id,
        );
        detect(
            &mut ids.fim_suf,
            FIM_SUF_TEXTS,
            &mut attrs,
            &tokens,
            &token_to_id,
        );
        detect(
            &mut ids.fim_mid,
            FIM_MID_TEXTS,
            &mut attrs,
            &tokens,
            &token_to_id,
        );
        detect(
            &mut ids.fim_pad,
            FIM_PAD_TEXTS,
            &mut attrs,
            &tokens,
            &token_to_id,
        );
        detect(
            &mut ids.fim_rep,
            FIM_REP_TEXTS,
            &mut attrs,
            &tokens,
            &token_to_id,
        );
        detect(
            &mut ids.fim_sep,
            FIM_SEP_TEXTS,
            &mut attrs,
            &tokens,
            &token_to_id,
        );

        // Control tokens whose text says "unused" are unused.
        for id in 0..n {
            if attrs[id] & attr::CONTROL != 0
                && tokens[id].contains("unused")
                && owns(id, &tokens, &token_to_id)
            {
                attrs[id] |= attr::UNUSED;
            }
        }

        // End-of-generation set.
        let mut eog = BTreeSet::new();
        for id in [ids.fim_pad, ids.fim_rep, ids.fim_sep]
            .into_iter()
            .flatten()
        {
            eog.insert(id);
        }
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*t) {
                eog.insert(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        for id in [ids.eos, ids.eot, ids.eom].into_iter().flatten() {
            eog.insert(id);
        }
        {
            let has = |eog: &BTreeSet<u32>, t: &str| eog.iter().any(|&id| tokens[id as usize] == t);
            let end_id = eog
                .iter()
                .copied()
                .find(|&id| tokens[id as usize] == "<|end|>");
            if let Some(end_id) = end_id {
                let has_call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
                if has_call && (has(&eog, "<|return|>") || has(&eog, "<|flush|>")) {
                    eog.remove(&end_id);
                    attrs[end_id as usize] = attr::USER_DEFINED;
                }
            }
            if has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>") {
                if let Some(s_id) = eog
                    .iter()
                    .copied()
                    .find(|&id| tokens[id as usize] == "</s>")
                {
                    eog.remove(&s_id);
                    attrs[s_id as usize] = attr::NORMAL;
                }
            }
        }

        // Special tokens, longest text first.
        let mut special_tokens: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_tokens.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()));

        // Per-model token attributes.
        let name = f.get_str("general.name").unwrap_or_default().to_lowercase();
        let arch = f.get_str("general.architecture").unwrap_or_default();
        let set_attr = |attrs: &mut Vec<u32>, t: &str, a: u32, on: bool| {
            if let Some(&id) = token_to_id.get(t) {
                if on {
                    attrs[id as usize] |= a;
                } else {
                    attrs[id as usize] &= !a;
                }
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre_name.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|p| arch.contains(p))
        {
            set_attr(&mut attrs, "<mask>", attr::LSTRIP, true);
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_tokens {
                attrs[id as usize] |= attr::RSTRIP;
            }
            set_attr(&mut attrs, "</s>", attr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set_attr(&mut attrs, t, attr::RSTRIP, false);
            }
        } else if name.contains("modern-bert") {
            set_attr(&mut attrs, "[MASK]", attr::LSTRIP, true);
        }

        let pretok = match pre {
            Some(p) => Some(PreTokenizer::new(p)?),
            None => None,
        };

        Ok(Vocab {
            ty,
            model,
            pre_name: pre_name_eff,
            pretok,
            pre,
            tokens,
            scores,
            attrs,
            token_to_id,
            bpe_ranks,
            ids,
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            remove_extra_whitespaces,
            escape_whitespaces,
            clean_spaces,
            ignore_merges,
            lowercase,
            strip_accents,
            max_token_len,
            special_tokens,
            special_matcher: OnceLock::new(),
            eog,
        })
    }

    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    // ---------------------------------------------------------------- encode

    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let frags = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        let mut out = Vec::with_capacity(text.len() / 3 + 4);
        match self.ty {
            VocabType::Spm => {
                let mut is_prev_special = true;
                if add_special && self.add_bos {
                    if let Some(b) = self.ids.bos {
                        out.push(b);
                    }
                }
                let mut buf = String::new();
                for fr in &frags {
                    match *fr {
                        Frag::Text(a, b) => {
                            buf.clear();
                            if self.add_space_prefix && is_prev_special {
                                buf.push('▁');
                            }
                            for c in text[a..b].chars() {
                                if c == ' ' {
                                    buf.push('▁');
                                } else {
                                    buf.push(c);
                                }
                            }
                            self.spm_tokenize(&buf, &mut out);
                            is_prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            is_prev_special = true;
                        }
                    }
                }
                if add_special && self.add_eos {
                    if let Some(e) = self.ids.eos {
                        out.push(e);
                    }
                }
            }
            VocabType::Bpe => {
                if add_special && self.add_bos {
                    if let Some(b) = self.ids.bos {
                        out.push(b);
                    }
                }
                for fr in &frags {
                    match *fr {
                        Frag::Text(a, b) => {
                            if self.escape_whitespaces {
                                let s = text[a..b].replace(' ', "▁");
                                self.bpe_tokenize(&s, &mut out);
                            } else {
                                self.bpe_tokenize(&text[a..b], &mut out);
                            }
                        }
                        Frag::Token(id) => out.push(id),
                    }
                }
                if add_special && self.add_eos {
                    if let Some(e) = self.ids.eos {
                        out.push(e);
                    }
                }
            }
            VocabType::Wpm => {
                if add_special {
                    if let Some(b) = self.ids.bos {
                        out.push(b);
                    }
                }
                for fr in &frags {
                    match *fr {
                        Frag::Text(a, b) => self.wpm_tokenize(&text[a..b], &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
                if add_special {
                    if let Some(s) = self.ids.sep {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    fn matcher(&self) -> Option<&aho_corasick::AhoCorasick> {
        self.special_matcher
            .get_or_init(|| {
                if self.special_tokens.is_empty() {
                    return None;
                }
                let pats: Vec<&str> = self
                    .special_tokens
                    .iter()
                    .map(|&id| self.tokens[id as usize].as_str())
                    .collect();
                aho_corasick::AhoCorasick::new(pats).ok()
            })
            .as_ref()
    }

    /// llama.cpp's `tokenizer_st_partition`: splits the text around special tokens, one
    /// special token at a time in cache order (longest first), each over all text fragments.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = vec![Frag::Text(0, text.len())];
        // Which special tokens occur anywhere in the text (fragments are substrings of it).
        let mut present: Vec<usize> = match self.matcher() {
            None => return frags,
            Some(ac) => {
                let mut seen = vec![false; self.special_tokens.len()];
                for m in ac.find_overlapping_iter(text) {
                    seen[m.pattern().as_usize()] = true;
                }
                seen.iter()
                    .enumerate()
                    .filter(|(_, &s)| s)
                    .map(|(i, _)| i)
                    .collect()
            }
        };
        present.sort_unstable();
        let bytes = text.as_bytes();
        for idx in present {
            let id = self.special_tokens[idx];
            let a = self.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let tt = self.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for fr in frags {
                let (mut off, mut len) = match fr {
                    Frag::Token(_) => {
                        next.push(fr);
                        continue;
                    }
                    Frag::Text(a, b) => (a, b - a),
                };
                loop {
                    let m = match text[off..off + len].find(tt) {
                        None => {
                            if len > 0 {
                                next.push(Frag::Text(off, off + len));
                            }
                            break;
                        }
                        Some(p) => off + p,
                    };
                    if m > off {
                        let mut llen = m - off;
                        if a & attr::LSTRIP != 0 {
                            while llen > 0 && is_c_space(bytes[off + llen - 1]) {
                                llen -= 1;
                            }
                        }
                        if llen > 0 {
                            next.push(Frag::Text(off, off + llen));
                        }
                    }
                    next.push(Frag::Token(id));
                    let end = m + tt.len();
                    if end < off + len {
                        let mut roff = end;
                        let mut rlen = off + len - end;
                        if a & attr::RSTRIP != 0 {
                            while rlen > 0 && is_c_space(bytes[roff]) {
                                roff += 1;
                                rlen -= 1;
                            }
                        }
                        off = roff;
                        len = rlen;
                        if len == 0 {
                            break;
                        }
                    } else {
                        break;
                    }
                }
            }
            frags = next;
        }
        frags
    }

    fn byte_token(&self, b: u8) -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        if let Some(id) = self.token_id(&hex) {
            return Some(id);
        }
        match self.ty {
            VocabType::Spm => {
                if b < 0x80 {
                    let s = [b];
                    if let Ok(s) = std::str::from_utf8(&s) {
                        if let Some(id) = self.token_id(s) {
                            return Some(id);
                        }
                    }
                }
                self.ids.unk
            }
            _ => self.ids.unk,
        }
    }

    fn spm_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return;
        }
        let mut syms: Vec<Sym> = Vec::with_capacity(bytes.len());
        let mut offs = 0usize;
        while offs < bytes.len() {
            let n = unicode::utf8_len(bytes[offs]).min(bytes.len() - offs);
            let idx = syms.len() as isize;
            syms.push(Sym {
                start: offs,
                n,
                prev: idx - 1,
                next: if offs + n == bytes.len() { -1 } else { idx + 1 },
            });
            offs += n;
        }
        let mut heap = BinaryHeap::with_capacity(syms.len());
        let try_add = |heap: &mut BinaryHeap<SpmBigram>, syms: &[Sym], l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (l, r) = (l as usize, r as usize);
            let start = syms[l].start;
            let size = syms[l].n + syms[r].n;
            let Some(s) = text.get(start..start + size) else {
                return;
            };
            if let Some(&id) = self.token_to_id.get(s) {
                heap.push(SpmBigram {
                    left: l,
                    right: r,
                    score: self.scores[id as usize],
                    size,
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, i as isize - 1, i as isize);
        }
        while let Some(bg) = heap.pop() {
            let (ln, rn) = (syms[bg.left].n, syms[bg.right].n);
            if ln == 0 || rn == 0 || ln + rn != bg.size {
                continue;
            }
            syms[bg.left].n += rn;
            syms[bg.right].n = 0;
            let rnext = syms[bg.right].next;
            syms[bg.left].next = rnext;
            if rnext >= 0 {
                syms[rnext as usize].prev = bg.left as isize;
            }
            let lprev = syms[bg.left].prev;
            try_add(&mut heap, &syms, lprev, bg.left as isize);
            try_add(&mut heap, &syms, bg.left as isize, rnext);
        }
        let mut i: isize = 0;
        while i >= 0 {
            let s = syms[i as usize];
            let piece = &bytes[s.start..s.start + s.n];
            match std::str::from_utf8(piece)
                .ok()
                .and_then(|p| self.token_id(p))
            {
                Some(id) => out.push(id),
                None => {
                    for &b in piece {
                        if let Some(id) = self.byte_token(b) {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }

    fn bpe_rank(&self, buf: &mut String, l: &str, r: &str) -> Option<u32> {
        buf.clear();
        buf.push_str(l);
        buf.push(' ');
        buf.push_str(r);
        self.bpe_ranks.get(buf.as_str()).copied()
    }

    fn bpe_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let Some(pretok) = &self.pretok else {
            return;
        };
        let byte_encode =
            self.pre != Some(PreType::Gemma4) && self.pre != Some(PreType::Whitespace);
        let words = pretok.split(text);
        let mut syms: Vec<Sym> = Vec::new();
        let mut heap: BinaryHeap<BpeBigram> = BinaryHeap::new();
        let mut key = String::new();
        for word in &words {
            syms.clear();
            heap.clear();
            let wb = word.as_bytes();
            let mut offset = 0usize;
            // Whole word as one token: with ignore_merges, or (Gemma 4) a run of newlines.
            let whole = self.ignore_merges
                || (self.pre == Some(PreType::Gemma4) && wb.iter().all(|&b| b == b'\n'));
            if whole && self.token_to_id.contains_key(word.as_str()) {
                syms.push(Sym {
                    start: 0,
                    n: wb.len(),
                    prev: -1,
                    next: -1,
                });
                offset = wb.len();
            }
            while offset < wb.len() {
                let n = unicode::utf8_len(wb[offset]).min(wb.len() - offset);
                let idx = syms.len() as isize;
                syms.push(Sym {
                    start: offset,
                    n,
                    prev: idx - 1,
                    next: if offset + n == wb.len() { -1 } else { idx + 1 },
                });
                offset += n;
            }
            let add = |heap: &mut BinaryHeap<BpeBigram>,
                       syms: &[Sym],
                       key: &mut String,
                       l: isize,
                       r: isize| {
                if l < 0 || r < 0 {
                    return;
                }
                let (l, r) = (l as usize, r as usize);
                let (ls, rs) = (syms[l], syms[r]);
                let lt = &word[ls.start..ls.start + ls.n];
                let rt = &word[rs.start..rs.start + rs.n];
                if let Some(rank) = self.bpe_rank(key, lt, rt) {
                    heap.push(BpeBigram {
                        left: l,
                        right: r,
                        rank,
                        size: ls.n + rs.n,
                    });
                }
            };
            for i in 1..syms.len() {
                add(&mut heap, &syms, &mut key, i as isize - 1, i as isize);
            }
            while let Some(bg) = heap.pop() {
                let (ls, rs) = (syms[bg.left], syms[bg.right]);
                if ls.n == 0 || rs.n == 0 {
                    continue;
                }
                // Stale unless the two are still adjacent with the lengths they had.
                if ls.n + rs.n != bg.size || ls.start + ls.n != rs.start {
                    continue;
                }
                syms[bg.left].n += rs.n;
                syms[bg.right].n = 0;
                syms[bg.left].next = rs.next;
                if rs.next >= 0 {
                    syms[rs.next as usize].prev = bg.left as isize;
                }
                let lprev = syms[bg.left].prev;
                add(&mut heap, &syms, &mut key, lprev, bg.left as isize);
                add(&mut heap, &syms, &mut key, bg.left as isize, rs.next);
            }
            for s in syms.iter().filter(|s| s.n > 0) {
                let piece = &word[s.start..s.start + s.n];
                match self.token_id(piece) {
                    Some(id) => out.push(id),
                    None => {
                        for &b in piece.as_bytes() {
                            let id = if byte_encode {
                                if b < 0x80 {
                                    let one = [b];
                                    std::str::from_utf8(&one)
                                        .ok()
                                        .and_then(|s| self.token_id(s))
                                } else {
                                    None
                                }
                            } else {
                                self.token_id(&format!("<0x{b:02X}>"))
                            };
                            if let Some(id) = id {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }

    fn wpm_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        for word in self.wpm_preprocess(text) {
            if word.is_empty() {
                continue;
            }
            let w = format!("▁{word}");
            let wb = w.as_bytes();
            let n = wb.len();
            let current = out.len();
            let mut i = 0usize;
            while i < n {
                let mut matched = false;
                let mut j = n.min(i + self.max_token_len + 1);
                while j > i {
                    if let Some(id) = std::str::from_utf8(&wb[i..j])
                        .ok()
                        .and_then(|s| self.token_id(s))
                    {
                        out.push(id);
                        matched = true;
                        i = j - 1;
                        break;
                    }
                    j -= 1;
                }
                if !matched {
                    out.truncate(current);
                    break;
                }
                i += 1;
            }
            if current == out.len() {
                if let Some(unk) = self.ids.unk {
                    out.push(unk);
                }
            }
        }
    }

    fn wpm_preprocess(&self, text: &str) -> Vec<String> {
        let mut words: Vec<String> = vec![String::new()];
        for c in text.chars() {
            let mut cpt = c as u32;
            if self.strip_accents {
                cpt = unicode::nfd_first(cpt);
            }
            let f = unicode::flags(cpt);
            if unicode::is_whitespace(f) {
                if words.last().is_some_and(|w| !w.is_empty()) {
                    words.push(String::new());
                }
                continue;
            }
            let cat = f & unicode::MASK_CATEGORIES;
            if cpt == 0 || cpt == 0xFFFD || cat == unicode::CONTROL {
                continue;
            }
            if self.strip_accents && cat == unicode::ACCENT_MARK {
                continue;
            }
            let out_cpt = if self.lowercase {
                unicode::to_lower(cpt)
            } else {
                cpt
            };
            let s = char::from_u32(out_cpt).unwrap_or('\u{FFFD}');
            if cat == unicode::PUNCTUATION
                || (cpt < 0x7F && cat == unicode::SYMBOL)
                || is_chinese_char(cpt)
            {
                if words.last().is_some_and(|w| !w.is_empty()) {
                    words.push(String::new());
                }
                if let Some(last) = words.last_mut() {
                    *last = s.to_string();
                }
                words.push(String::new());
            } else if let Some(last) = words.last_mut() {
                last.push(s);
            }
        }
        if words.last().is_some_and(|w| w.is_empty()) {
            words.pop();
        }
        words
    }

    // ---------------------------------------------------------------- decode

    /// `llama_token_to_piece(id, lstrip = 0, special)`: the bytes of one token.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        let a = self.attrs[id as usize];
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Vec::new();
        }
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match self.ty {
                VocabType::Spm | VocabType::Wpm => text.replace('▁', " ").into_bytes(),
                VocabType::Bpe => {
                    if self.escape_whitespaces {
                        text.replace('▁', " ").into_bytes()
                    } else {
                        decode_byte_level(text)
                    }
                }
            };
        }
        if a & attr::BYTE != 0 {
            if self.ty == VocabType::Wpm {
                return Vec::new();
            }
            return text
                .get(3..5)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|b| vec![b])
                .unwrap_or_default();
        }
        Vec::new()
    }

    /// `llama_detokenize`: concatenated pieces, with the leading-space removal and (for
    /// vocabularies that ask for it) the clean-up of spaces before punctuation.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        self.detokenize_with(ids, remove_special, unparse_special, false)
    }

    /// `detokenize`, optionally keeping the SentencePiece leading-space removal even when a
    /// BOS is dropped (llama.cpp keeps the space then; `Tokenizer::decode` does not).
    pub fn detokenize_with(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
        always_remove_space: bool,
    ) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && !ids.is_empty() && Some(ids[0]) == self.ids.bos {
            remove_space = always_remove_space && self.add_space_prefix;
            ids = &ids[1..];
        }
        if remove_special
            && self.add_eos
            && !ids.is_empty()
            && Some(ids[ids.len() - 1]) == self.ids.eos
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special);
            let p: &[u8] = if remove_space && piece.first() == Some(&b' ') {
                &piece[1..]
            } else {
                &piece
            };
            text.extend_from_slice(p);
            remove_space = false;
        }
        if self.clean_spaces {
            text = clean_up_spaces(&text);
        }
        text
    }
}

fn clean_up_spaces(t: &[u8]) -> Vec<u8> {
    // pass 1: " ?", " !", " .", " ,"
    let mut a: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // pass 2: " ' " -> "'"
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let x = a[i];
        if i > 0 && x == b'\'' && i + 1 < a.len() && a[i - 1] == b' ' && a[i + 1] == b' ' {
            b.pop();
            b.push(x);
            // llama.cpp overwrites the skipped space with NUL in place, which later checks see
            a[i + 1] = 0;
            i += 2;
            continue;
        }
        b.push(x);
        i += 1;
    }
    // pass 3: " 's", " 'm", " 're", " 've"
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for i in 0..b.len() {
        let x = b[i];
        if i > 0 && b[i - 1] == b' ' && x == b'\'' && i + 1 < b.len() {
            let x1 = b[i + 1];
            if x1 == b's' || x1 == b'm' {
                c.pop();
            } else if x1 != b't' && x1 != b'd' && i + 2 < b.len() {
                let x2 = b[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    c.pop();
                }
            }
        }
        c.push(x);
    }
    c
}

/// Undoes the GPT-2 byte->unicode map; characters outside it are kept as llama.cpp does
/// (`[UNK_BYTE_0x..]` marker).
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode::unicode_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

#[inline]
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn is_chinese_char(c: u32) -> bool {
    (0x4E00..=0x9FFF).contains(&c)
        || (0x3400..=0x4DBF).contains(&c)
        || (0x20000..=0x2A6DF).contains(&c)
        || (0x2A700..=0x2B73F).contains(&c)
        || (0x2B740..=0x2B81F).contains(&c)
        || (0x2B920..=0x2CEAF).contains(&c)
        || (0xF900..=0xFAFF).contains(&c)
        || (0x2F800..=0x2FA1F).contains(&c)
}
