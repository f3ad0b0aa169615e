//! Byte-level BPE pre-tokenization: splitting text into words with a chain of regexes chosen
//! by `tokenizer.ggml.pre`, the way llama.cpp does it.
//!
//! Each regex of the chain refines the word boundaries found by the previous one; text between
//! two matches becomes a word of its own. The common GPT-2 / Llama 3 / Qwen 2 patterns run as
//! hand-written scanners over code points and their categories (what llama.cpp does too, so
//! the quirks agree: unassigned code points are "other", digits are split per pattern, ...).
//! Any other pattern runs through `fancy-regex` on llama.cpp's "collapsed" text, where every
//! non-ASCII code point is replaced by a placeholder for its category and `\p{..}` classes by
//! the placeholder plus the ASCII members, which reproduces llama.cpp's `std::regex` results.

use crate::unicode::{self, flags, is_letter, is_mark, is_number, is_whitespace};
use crate::TokenizerError;

/// Which pre-tokenizer a byte-level BPE vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreType {
    Default,
    Llama3,
    DeepseekLlm,
    DeepseekCoder,
    Deepseek3,
    Falcon,
    Mpt,
    Starcoder,
    Gpt2,
    Qwen2,
    Qwen35,
    Refact,
    CommandR,
    Smollm,
    Olmo,
    Dbrx,
    Smaug,
    Poro,
    Chatglm4,
    Viking,
    Jais,
    Tekken,
    Codeshell,
    Bloom,
    Exaone,
    Chameleon,
    Minerva,
    Gpt4o,
    StableLm2,
    Gemma4,
    Seed,
    Trillion,
    BailingMoe,
    Whitespace,
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const NEWLINES_RE: &str = r"[^\n]+|[\n]+";

impl PreType {
    /// Maps a `tokenizer.ggml.pre` value to a pre-tokenizer, with the flags llama.cpp ties to
    /// it: (type, ignore_merges, clean_spaces, add_bos forced on).
    pub fn from_name(pre: &str) -> Option<(PreType, PreFlags)> {
        use PreType::*;
        let f = PreFlags::default();
        let no_clean = PreFlags {
            clean_spaces: Some(false),
            ..f
        };
        Some(match pre {
            "" | "default" => (Default, f),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => (
                Llama3,
                PreFlags {
                    ignore_merges: true,
                    add_bos: Some(true),
                    ..f
                },
            ),
            "deepseek-llm" => (DeepseekLlm, no_clean),
            "deepseek-coder" => (DeepseekCoder, no_clean),
            "deepseek-v3" => (Deepseek3, no_clean),
            "falcon" => (Falcon, f),
            "mpt" => (Mpt, f),
            "starcoder" => (Starcoder, f),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" => (Gpt2, f),
            "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => (Gpt2, f),
            "gemma4" | "granite-embed-multi-311m" => (
                Gemma4,
                PreFlags {
                    escape_whitespaces: true,
                    ..f
                },
            ),
            "whitespace" => (Whitespace, f),
            "refact" => (Refact, f),
            "command-r" => (CommandR, no_clean),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => (Qwen2, no_clean),
            "megrez" => (Qwen2, f),
            "qwen35" => (Qwen35, no_clean),
            "stablelm2" => (StableLm2, f),
            "olmo" => (Olmo, f),
            "dbrx" => (Dbrx, f),
            "smaug-bpe" => (Smaug, f),
            "poro-chat" => (Poro, no_clean),
            "chatglm-bpe" => (Chatglm4, f),
            "glm4" | "glm5" => (
                Chatglm4,
                PreFlags {
                    ignore_merges: true,
                    ..f
                },
            ),
            "viking" => (Viking, no_clean),
            "jais" => (Jais, f),
            "tekken" => (
                Tekken,
                PreFlags {
                    ignore_merges: true,
                    add_bos: Some(true),
                    clean_spaces: Some(false),
                    ..f
                },
            ),
            "smollm" => (Smollm, no_clean),
            "codeshell" => (Codeshell, f),
            "bloom" => (Bloom, f),
            "gpt3-finnish" => (Bloom, f),
            "exaone" => (Exaone, f),
            "chameleon" => (
                Chameleon,
                PreFlags {
                    add_bos: Some(true),
                    clean_spaces: Some(false),
                    ..f
                },
            ),
            "minerva-7b" => (Minerva, f),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" => (Gpt4o, no_clean),
            "trillion" => (Trillion, no_clean),
            "granite-docling" => (Trillion, no_clean),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => (BailingMoe, no_clean),
            "seed-coder" => (Seed, no_clean),
            "hunyuan" => (Qwen2, no_clean),
            "grok-2" => (Qwen2, no_clean),
            "solar-open" => (Qwen2, no_clean),
            "mellum2" => (Starcoder, f),
            _ => return None,
        })
    }

    /// The regex chain (llama.cpp's `regex_exprs`) and whether words are GPT-2 byte-encoded.
    fn regexes(self) -> (Vec<&'static str>, bool) {
        use PreType::*;
        let v = match self {
            Llama3 | Dbrx | Smaug | Chatglm4 => vec![LLAMA3_RE],
            DeepseekLlm => vec![
                "[\r\n]",
                "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
                "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
                "\\s+$",
                "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
                "\\p{N}+",
            ],
            Deepseek3 => vec![
                "\\p{N}{1,3}",
                "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
            ],
            DeepseekCoder => vec![
                "[\r\n]",
                "\\s?\\p{L}+",
                "\\s?\\p{P}+",
                "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
                "\\p{N}",
            ],
            Falcon => vec![
                "[\\p{P}\\$\\+<=>\\^~\\|`]+",
                GPT2_RE,
                "[0-9][0-9][0-9]",
            ],
            Starcoder | Refact | CommandR | Smollm | Codeshell | Exaone | Minerva => {
                vec!["\\p{N}", GPT2_RE]
            }
            Gpt2 | Mpt | Olmo | Jais | Trillion => vec![GPT2_RE],
            StableLm2 | Qwen2 => vec![QWEN2_RE],
            Qwen35 => vec![QWEN35_RE],
            Poro | Bloom => vec![" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"],
            Viking => vec![" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+", "\\p{N}"],
            Tekken => vec!["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            Chameleon => vec![
                "<sentinel:[0-9]+>",
                "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                "([\\t\\n]|    |  )",
                "\\p{N}",
                "[\\p{P}!-/:-@\\[-`{-~]",
                GPT2_RE,
            ],
            Gpt4o => vec!["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            BailingMoe => vec!["'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"],
            Seed => vec!["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            Gemma4 => return (vec![NEWLINES_RE], false),
            Whitespace => return (vec!["\\S+"], false),
            Default => vec![
                "[\\p{P}\\$\\+<=>\\^~\\|]+",
                GPT2_RE,
                "\\p{N}+",
                "[0-9][0-9][0-9]",
            ],
        };
        (v, true)
    }
}

/// Vocabulary flags implied by the pre-tokenizer name (llama.cpp sets them in its loader).
#[derive(Clone, Copy, Debug, Default)]
pub struct PreFlags {
    pub ignore_merges: bool,
    pub clean_spaces: Option<bool>,
    pub add_bos: Option<bool>,
    pub escape_whitespaces: bool,
}

enum Step {
    Gpt2,
    Llama3Like {
        max_digits: usize,
        marks: bool,
    },
    Newlines,
    Regex {
        re: fancy_regex::Regex,
        collapsed: bool,
    },
}

/// A compiled regex chain.
pub struct PreTokenizer {
    steps: Vec<Step>,
    byte_encode: bool,
}

impl std::fmt::Debug for PreTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreTokenizer")
            .field("steps", &self.steps.len())
            .field("byte_encode", &self.byte_encode)
            .finish()
    }
}

/// llama.cpp's placeholder for each category in the collapsed text, and the ASCII members of
/// the category that the rewritten class keeps.
fn category_placeholder(name: &str) -> Option<(char, &'static str)> {
    Some(match name {
        "N" => ('\u{D1}', "0-9"),
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => ('\u{D2}', "A-Za-z"),
        "P" => ('\u{D3}', r"!-#%-*,-/:-;?-@\[-\]_\{\}"),
        "M" => ('\u{D4}', ""),
        "S" => ('\u{D5}', r"\$\+<->\^`\|\~"),
        _ => return None,
    })
}

fn uses_categories(re: &str) -> bool {
    ["\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}"]
        .iter()
        .any(|p| re.contains(p))
}

/// Rewrites a regex for the collapsed text (llama.cpp's rewrite: `\p{X}` becomes the
/// placeholder plus the category's ASCII members, wrapped in a class when outside one).
fn collapse_regex(re: &str) -> String {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' && (i == 0 || chars[i - 1] != '\\') {
            out.push('[');
            inside = true;
            i += 1;
            continue;
        }
        if inside && c == ']' && chars[i - 1] != '\\' {
            out.push(']');
            inside = false;
            i += 1;
            continue;
        }
        if c == '\\' && i + 3 < chars.len() && chars[i + 1] == 'p' && chars[i + 2] == '{' {
            if let Some(close) = chars[i + 3..].iter().position(|&c| c == '}') {
                let name: String = chars[i + 3..i + 3 + close].iter().collect();
                if let Some((ph, ascii)) = category_placeholder(&name) {
                    if !inside {
                        out.push('[');
                    }
                    out.push_str(&format!("\\x{{{:X}}}", ph as u32));
                    out.push_str(ascii);
                    if !inside {
                        out.push(']');
                    }
                    i += 3 + close + 1;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

impl PreTokenizer {
    pub fn new(pre: PreType) -> Result<PreTokenizer, TokenizerError> {
        let (res, byte_encode) = pre.regexes();
        let mut steps = Vec::with_capacity(res.len());
        for re in res {
            let step = match re {
                GPT2_RE => Step::Gpt2,
                LLAMA3_RE => Step::Llama3Like {
                    max_digits: 3,
                    marks: false,
                },
                QWEN2_RE => Step::Llama3Like {
                    max_digits: 1,
                    marks: false,
                },
                QWEN35_RE => Step::Llama3Like {
                    max_digits: 1,
                    marks: true,
                },
                NEWLINES_RE => Step::Newlines,
                _ => {
                    let collapsed = uses_categories(re);
                    let pattern = if collapsed {
                        collapse_regex(re)
                    } else {
                        re.to_string()
                    };
                    let re =
                        fancy_regex::Regex::new(&pattern).map_err(|e| TokenizerError::Regex {
                            pattern: pattern.clone(),
                            msg: e.to_string(),
                        })?;
                    Step::Regex { re, collapsed }
                }
            };
            steps.push(step);
        }
        Ok(PreTokenizer { steps, byte_encode })
    }

    /// Splits `text` into words (byte-encoded with the GPT-2 map where the chain says so).
    pub fn split(&self, text: &str) -> Vec<String> {
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let mut offsets = vec![cpts.len()];
        let mut collapsed: Option<(String, Vec<usize>)> = None;
        let mut wtext: Option<(String, Vec<usize>)> = None;
        for step in &self.steps {
            let next = match step {
                Step::Gpt2 => split_gpt2(&cpts, &offsets),
                Step::Llama3Like { max_digits, marks } => {
                    split_llama3(&cpts, &offsets, *max_digits, *marks)
                }
                Step::Newlines => split_newlines(&cpts, &offsets),
                Step::Regex { re, collapsed: c } => {
                    let (s, starts) = if *c {
                        collapsed.get_or_insert_with(|| build_text(&cpts, true))
                    } else {
                        wtext.get_or_insert_with(|| build_text(&cpts, false))
                    };
                    split_regex(re, s, starts, &offsets)
                }
            };
            offsets = next;
        }
        let mut words = Vec::with_capacity(offsets.len());
        let mut start = 0usize;
        let map = unicode::byte_to_unicode();
        let mut byte_pos = 0usize;
        for len in offsets {
            let piece_len: usize = cpts[start..start + len]
                .iter()
                .map(|&c| char::from_u32(c).map(|c| c.len_utf8()).unwrap_or(0))
                .sum();
            let piece = &text[byte_pos..byte_pos + piece_len];
            byte_pos += piece_len;
            start += len;
            if self.byte_encode {
                let mut w = String::with_capacity(piece.len() * 2);
                for &b in piece.as_bytes() {
                    w.push(map[b as usize]);
                }
                words.push(w);
            } else {
                words.push(piece.to_string());
            }
        }
        words
    }
}

/// Text the regex fallback runs on: one char per code point (collapsed to category
/// placeholders, or with non-ASCII whitespace replaced by U+000B), plus the byte start of each
/// code point (and the total length at the end).
fn build_text(cpts: &[u32], collapse: bool) -> (String, Vec<usize>) {
    let mut s = String::with_capacity(cpts.len() * 2);
    let mut starts = Vec::with_capacity(cpts.len() + 1);
    for &c in cpts {
        starts.push(s.len());
        let ch = if c < 128 {
            char::from_u32(c).unwrap_or('\0')
        } else {
            let f = flags(c);
            if is_whitespace(f) {
                '\u{0B}'
            } else if !collapse {
                char::from_u32(c).unwrap_or('\u{FFFD}')
            } else {
                match f & unicode::MASK_CATEGORIES {
                    unicode::NUMBER => '\u{D1}',
                    unicode::LETTER => '\u{D2}',
                    unicode::PUNCTUATION => '\u{D3}',
                    unicode::ACCENT_MARK => '\u{D4}',
                    unicode::SYMBOL => '\u{D5}',
                    _ => '\u{D0}',
                }
            }
        };
        s.push(ch);
    }
    starts.push(s.len());
    (s, starts)
}

fn split_regex(
    re: &fancy_regex::Regex,
    text: &str,
    starts: &[usize],
    offsets: &[usize],
) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0usize;
    for &len in offsets {
        let (b0, b1) = (starts[start], starts[start + len]);
        let sub = &text[b0..b1];
        // byte offset within `sub` -> code point index within the fragment
        let to_cp = |b: usize| -> usize {
            starts[start..=start + len]
                .binary_search(&(b0 + b))
                .unwrap_or_else(|i| i)
        };
        let mut last = 0usize;
        for m in re.find_iter(sub) {
            let m = match m {
                Ok(m) => m,
                // A backtracking limit was hit: keep the rest of the fragment as one word.
                Err(_) => break,
            };
            let (ms, me) = (to_cp(m.start()), to_cp(m.end()));
            if ms > last {
                out.push(ms - last);
            }
            if me > ms {
                out.push(me - ms);
            }
            last = me;
        }
        if last < len {
            out.push(len - last);
        }
        start += len;
    }
    out
}

fn split_newlines(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0usize;
    for &len in offsets {
        let end = start + len;
        let mut pos = start;
        while pos < end {
            let nl = cpts[pos] == '\n' as u32;
            let run = pos;
            while pos < end && (cpts[pos] == '\n' as u32) == nl {
                pos += 1;
            }
            out.push(pos - run);
        }
        start = end;
    }
    out
}

const OUT_OF_RANGE: u32 = u32::MAX;

/// A fragment being scanned: code points and flags inside `[ini, end)`, nothing outside.
struct Frag<'a> {
    cpts: &'a [u32],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Frag<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    #[inline]
    fn flags(&self, pos: usize) -> u16 {
        if self.ini <= pos && pos < self.end {
            flags(self.cpts[pos])
        } else {
            0
        }
    }
    /// Ends the current word at `end`; returns its length.
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

#[inline]
fn not_ws_l_n(f: u16) -> bool {
    f & (unicode::WHITESPACE | unicode::LETTER | unicode::NUMBER) == 0
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn split_gpt2(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0usize;
    for &len in offsets {
        let mut f = Frag {
            cpts,
            ini: start,
            end: start + len,
            prev_end: start,
            out: &mut out,
        };
        start += len;
        let mut pos = f.ini;
        while pos < f.end {
            let cpt = f.cpt(pos);
            let fl = f.flags(pos);
            if cpt == '\'' as u32 && pos + 1 < f.end {
                let n = f.cpt(pos + 1);
                if [b's', b't', b'm', b'd'].iter().any(|&c| n == c as u32) {
                    pos += f.add(pos + 2);
                    continue;
                }
                if pos + 2 < f.end {
                    let nn = f.cpt(pos + 2);
                    if ((n == 'r' as u32 || n == 'v' as u32) && nn == 'e' as u32)
                        || (n == 'l' as u32 && nn == 'l' as u32)
                    {
                        pos += f.add(pos + 3);
                        continue;
                    }
                }
            }
            let space = cpt == ' ' as u32;
            let mut f2 = if space { f.flags(pos + 1) } else { fl };
            if is_letter(f2) {
                pos += space as usize;
                while is_letter(f2) {
                    pos += 1;
                    f2 = f.flags(pos);
                }
                f.add(pos);
                continue;
            }
            if is_number(f2) {
                pos += space as usize;
                while is_number(f2) {
                    pos += 1;
                    f2 = f.flags(pos);
                }
                f.add(pos);
                continue;
            }
            if not_ws_l_n(f2) && f2 != 0 {
                pos += space as usize;
                while not_ws_l_n(f2) && f2 != 0 {
                    pos += 1;
                    f2 = f.flags(pos);
                }
                f.add(pos);
                continue;
            }
            let mut nws = 0;
            while is_whitespace(f.flags(pos + nws)) {
                nws += 1;
            }
            if nws > 1 && f.cpt(pos + nws) != OUT_OF_RANGE {
                pos += nws - 1;
                f.add(pos);
                continue;
            }
            if nws > 0 {
                pos += nws;
                f.add(pos);
                continue;
            }
            pos += 1;
            f.add(pos);
        }
    }
    out
}

/// Llama 3 (`max_digits` 3), Qwen 2 (1) and Qwen 3.5 (1, letters take marks):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn split_llama3(cpts: &[u32], offsets: &[usize], max_digits: usize, marks: bool) -> Vec<usize> {
    let letterish = |f: u16| is_letter(f) || (marks && is_mark(f));
    let other = |f: u16| not_ws_l_n(f) && !(marks && is_mark(f));
    let is_rn = |c: u32| c == '\r' as u32 || c == '\n' as u32;
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0usize;
    for &len in offsets {
        let mut f = Frag {
            cpts,
            ini: start,
            end: start + len,
            prev_end: start,
            out: &mut out,
        };
        start += len;
        let mut pos = f.ini;
        while pos < f.end {
            let cpt = f.cpt(pos);
            let fl = f.flags(pos);
            if cpt == '\'' as u32 && pos + 1 < f.end {
                let n = ascii_lower(f.cpt(pos + 1));
                if [b's', b't', b'm', b'd'].iter().any(|&c| n == c as u32) {
                    pos += f.add(pos + 2);
                    continue;
                }
                if pos + 2 < f.end {
                    let nn = ascii_lower(f.cpt(pos + 2));
                    if ((n == 'r' as u32 || n == 'v' as u32) && nn == 'e' as u32)
                        || (n == 'l' as u32 && nn == 'l' as u32)
                    {
                        pos += f.add(pos + 3);
                        continue;
                    }
                }
            }
            if !(is_rn(cpt) || is_number(fl)) && (letterish(fl) || letterish(f.flags(pos + 1))) {
                pos += 1;
                while letterish(f.flags(pos)) {
                    pos += 1;
                }
                f.add(pos);
                continue;
            }
            if is_number(fl) {
                let mut ini = pos;
                while is_number(f.flags(pos)) {
                    pos += 1;
                    if pos - ini >= max_digits {
                        f.add(pos);
                        ini = pos;
                    }
                }
                f.add(pos);
                continue;
            }
            let space = cpt == ' ' as u32;
            let mut f2 = if space { f.flags(pos + 1) } else { fl };
            if other(f2) && fl != 0 {
                pos += space as usize;
                while other(f2) && f2 != 0 {
                    pos += 1;
                    f2 = f.flags(pos);
                }
                while is_rn(f.cpt(pos)) {
                    pos += 1;
                }
                f.add(pos);
                continue;
            }
            let mut nws = 0;
            let mut last_rn = 0;
            while is_whitespace(f.flags(pos + nws)) {
                if is_rn(f.cpt(pos + nws)) {
                    last_rn = pos + nws + 1;
                }
                nws += 1;
            }
            if last_rn > 0 {
                pos = last_rn;
                f.add(pos);
                continue;
            }
            if nws > 1 && f.cpt(pos + nws) != OUT_OF_RANGE {
                pos += nws - 1;
                f.add(pos);
                continue;
            }
            if nws > 0 {
                pos += nws;
                f.add(pos);
                continue;
            }
            pos += 1;
            f.add(pos);
        }
    }
    out
}

/// Lowercase for the contraction check: only ASCII letters can lowercase to `s t m d r e v l`.
#[inline]
fn ascii_lower(c: u32) -> u32 {
    if (b'A' as u32..=b'Z' as u32).contains(&c) {
        c + 32
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreType, text: &str) -> Vec<String> {
        let p = PreTokenizer::new(pre).unwrap();
        let map = unicode::byte_to_unicode();
        p.split(text)
            .into_iter()
            .map(|w| {
                if p.byte_encode {
                    let bytes: Vec<u8> = w
                        .chars()
                        .map(|c| unicode::unicode_to_byte(c).unwrap())
                        .collect();
                    let _ = map;
                    String::from_utf8(bytes).unwrap()
                } else {
                    w
                }
            })
            .collect()
    }

    #[test]
    fn gpt2_split() {
        assert_eq!(
            words(PreType::Gpt2, "Hello world's  123 !!"),
            vec!["Hello", " world", "'s", " ", " 123", " !!"]
        );
    }

    #[test]
    fn llama3_split() {
        assert_eq!(
            words(PreType::Llama3, "Hello 12345 world\n\n  x"),
            vec!["Hello", " ", "123", "45", " world", "\n\n", " ", " x"]
        );
    }

    #[test]
    fn collapse() {
        assert_eq!(collapse_regex(r"\p{N}+"), r"[\x{D1}0-9]+");
        assert_eq!(collapse_regex(r"[\p{N}a]"), r"[\x{D1}0-9a]");
        assert_eq!(
            words(PreType::Default, "abc 1234 ,.!"),
            vec!["abc", " ", "123", "4", " ", ",.!"]
        );
    }
}
