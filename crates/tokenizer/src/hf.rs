//! Hugging Face `tokenizer.json` through the `tokenizers` crate.

use std::path::{Path, PathBuf};

use crate::unicode;
use crate::TokenizerError;

/// How token strings map back to bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceStyle {
    /// GPT-2 byte-level: each char is one byte through the byte->unicode map.
    ByteLevel,
    /// SentencePiece style: `▁` is a space, `<0xXX>` a raw byte.
    Metaspace,
    /// Anything else (WordPiece): the text as is, `##` continuation markers stripped.
    Plain,
}

pub struct HfTokenizer {
    path: PathBuf,
    tok: tokenizers::Tokenizer,
    /// Same tokenizer with special-token matching switched off (parse_special = false).
    tok_plain: tokenizers::Tokenizer,
    style: PieceStyle,
    special: Vec<bool>,
    vocab_size: usize,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) add_bos: bool,
    eog: Vec<u32>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

fn token_content(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl HfTokenizer {
    pub fn from_file(path: &Path) -> Result<HfTokenizer, TokenizerError> {
        let err = |msg: String| TokenizerError::HfJson {
            path: path.to_path_buf(),
            msg,
        };
        let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| err(format!("not JSON: {e}")))?;
        let tok = tokenizers::Tokenizer::from_bytes(&raw).map_err(|e| err(e.to_string()))?;
        let mut tok_plain = tok.clone();
        tok_plain.set_encode_special_tokens(true);

        let decoder = json
            .get("decoder")
            .map(|d| d.to_string())
            .unwrap_or_default();
        let style = if decoder.contains("\"ByteLevel\"") {
            PieceStyle::ByteLevel
        } else if decoder.contains("Metaspace")
            || decoder.contains("ByteFallback")
            || decoder.contains('▁')
        {
            PieceStyle::Metaspace
        } else {
            PieceStyle::Plain
        };

        let vocab_size = tok.get_vocab_size(true);
        let mut special = vec![false; vocab_size];
        if let Some(added) = json.get("added_tokens").and_then(|a| a.as_array()) {
            for t in added {
                let id = t.get("id").and_then(|v| v.as_u64());
                let sp = t.get("special").and_then(|v| v.as_bool()).unwrap_or(false);
                if let (Some(id), true) = (id, sp) {
                    if let Some(s) = special.get_mut(id as usize) {
                        *s = true;
                    }
                }
            }
        }

        // BOS/EOS from tokenizer_config.json beside the file, else by well-known texts.
        let mut bos = None;
        let mut eos = None;
        let mut add_bos = false;
        if let Some(dir) = path.parent() {
            if let Ok(cfg) = std::fs::read(dir.join("tokenizer_config.json")) {
                if let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&cfg) {
                    bos = cfg
                        .get("bos_token")
                        .and_then(token_content)
                        .and_then(|t| tok.token_to_id(&t));
                    eos = cfg
                        .get("eos_token")
                        .and_then(token_content)
                        .and_then(|t| tok.token_to_id(&t));
                    add_bos = cfg
                        .get("add_bos_token")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false);
                }
            }
        }
        let first = |texts: &[&str]| texts.iter().find_map(|t| tok.token_to_id(t));
        if bos.is_none() {
            bos = first(&[
                "<|begin_of_text|>",
                "<bos>",
                "<s>",
                "<|startoftext|>",
                "[CLS]",
            ]);
        }
        if eos.is_none() {
            eos = first(&[
                "<|end_of_text|>",
                "<|endoftext|>",
                "<eos>",
                "</s>",
                "<|im_end|>",
                "[SEP]",
            ]);
        }
        let mut eog: Vec<u32> = crate::vocab_eog_texts()
            .iter()
            .filter_map(|t| tok.token_to_id(t))
            .collect();
        eog.extend(eos);
        eog.sort_unstable();
        eog.dedup();

        Ok(HfTokenizer {
            path: path.to_path_buf(),
            tok,
            tok_plain,
            style,
            special,
            vocab_size,
            bos,
            eos,
            add_bos,
            eog,
        })
    }

    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let t = if parse_special {
            &self.tok
        } else {
            &self.tok_plain
        };
        t.encode(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::HfJson {
                path: self.path.clone(),
                msg: format!("encode: {e}"),
            })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_text(&self, id: u32) -> Option<String> {
        self.tok.id_to_token(id)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tok.token_to_id(text)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        if self.is_special(id) {
            return if special {
                self.token_text(id).unwrap_or_default().into_bytes()
            } else {
                Vec::new()
            };
        }
        let Some(text) = self.token_text(id) else {
            return Vec::new();
        };
        match self.style {
            PieceStyle::ByteLevel => {
                let bytes: Option<Vec<u8>> = text.chars().map(unicode::unicode_to_byte).collect();
                bytes.unwrap_or_else(|| text.into_bytes())
            }
            PieceStyle::Metaspace => {
                if text.len() == 6 && text.starts_with("<0x") && text.ends_with('>') {
                    if let Ok(b) = u8::from_str_radix(&text[3..5], 16) {
                        return vec![b];
                    }
                }
                text.replace('▁', " ").into_bytes()
            }
            PieceStyle::Plain => match text.strip_prefix("##") {
                Some(rest) => rest.as_bytes().to_vec(),
                None => format!(" {text}").into_bytes(),
            },
        }
    }

    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String, TokenizerError> {
        self.tok
            .decode(ids, !special)
            .map_err(|e| TokenizerError::HfJson {
                path: self.path.clone(),
                msg: format!("decode: {e}"),
            })
    }
}
