//! The YAML front matter of a model card (`README.md`), read for the few top-level keys that
//! matter here (`license`, `license_name`, `license_link`, `base_model`, `datasets`,
//! `pipeline_tag`...).
//!
//! A deliberately small reader rather than a YAML library: model cards are written by hand
//! and are often not valid YAML, and one broken key elsewhere must not hide the licence.
//! It understands top-level `key: value` pairs with plain, quoted, flow-list (`[a, b]`),
//! block-list (`- a`) and block-scalar (`|`, `>`) values; nested mappings are skipped.
//! Anything it cannot read becomes a warning naming the line. It never panics.

use std::collections::BTreeMap;

/// A front-matter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A scalar.
    Str(String),
    /// A list of scalars.
    List(Vec<String>),
    /// A nested mapping or anything else not read (kept so its presence is known).
    Other,
}

impl Value {
    /// The scalar, or each list item, as strings.
    pub fn items(&self) -> Vec<&str> {
        match self {
            Value::Str(s) => vec![s.as_str()],
            Value::List(v) => v.iter().map(String::as_str).collect(),
            Value::Other => Vec::new(),
        }
    }
}

/// Front matter read from a model card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontMatter {
    /// Top-level keys and their values, last occurrence winning.
    pub values: BTreeMap<String, Value>,
    /// Problems met, each naming a line of the card (1-based).
    pub warnings: Vec<String>,
    /// The card text after the front matter.
    pub body_start_line: usize,
}

impl FrontMatter {
    /// The scalar at `key`, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(Value::Str(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// The scalar or list at `key` as a list (empty when absent).
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.values.get(key).map(Value::items).unwrap_or_default()
    }
}

/// Limits that keep a hostile card cheap.
const MAX_LINES: usize = 10_000;

/// Reads the front matter of `card`. A card without one gives an empty result; a front
/// matter without its closing `---` is read up to the end, with a warning.
pub fn parse(card: &str) -> FrontMatter {
    let mut fm = FrontMatter::default();
    let card = card.strip_prefix('\u{feff}').unwrap_or(card);
    let mut lines = card.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.trim_end() == "---" => {}
        _ => return fm,
    }
    let mut body: Vec<(usize, &str)> = Vec::new();
    let mut closed = false;
    for (i, line) in lines {
        if line.trim_end() == "---" || line.trim_end() == "..." {
            fm.body_start_line = i + 2;
            closed = true;
            break;
        }
        if body.len() >= MAX_LINES {
            fm.warnings.push(format!(
                "front matter longer than {MAX_LINES} lines: read the first {MAX_LINES}"
            ));
            break;
        }
        body.push((i + 1, line));
    }
    if !closed {
        fm.warnings
            .push("front matter has no closing `---` line: read to the end of the card".into());
    }
    parse_body(&body, &mut fm);
    fm
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

fn parse_body(lines: &[(usize, &str)], fm: &mut FrontMatter) {
    let mut i = 0;
    while i < lines.len() {
        let (lineno, line) = lines[i];
        i += 1;
        let content = strip_comment(line);
        if content.trim().is_empty() {
            continue;
        }
        if indent_of(line) > 0 {
            // Continuation of something skipped (a nested mapping): not a top-level key.
            continue;
        }
        let Some((key, rest)) = split_key(content) else {
            fm.warnings
                .push(format!("front matter line {lineno}: expected `key: value`"));
            continue;
        };
        let rest = rest.trim();
        // Lines indented under this key belong to it.
        let mut nested: Vec<(usize, &str)> = Vec::new();
        while i < lines.len() {
            let (n, l) = lines[i];
            let c = strip_comment(l);
            let is_item = c.trim_start().starts_with("- ") || c.trim() == "-";
            if c.trim().is_empty() || indent_of(l) > 0 || (is_item && rest.is_empty()) {
                nested.push((n, l));
                i += 1;
            } else {
                break;
            }
        }
        let value = if rest.is_empty() {
            block_value(&nested, lineno, &mut fm.warnings)
        } else if rest == "|"
            || rest == ">"
            || rest.starts_with("|-")
            || rest.starts_with(">-")
            || rest.starts_with("|+")
            || rest.starts_with(">+")
        {
            let folded = rest.starts_with('>');
            let parts: Vec<&str> = nested.iter().map(|(_, l)| l.trim()).collect();
            Value::Str(if folded {
                parts.join(" ").trim().to_string()
            } else {
                parts.join("\n").trim().to_string()
            })
        } else if rest.starts_with('[') {
            flow_list(rest, &nested, lineno, &mut fm.warnings)
        } else if rest.starts_with('{') {
            Value::Other
        } else {
            // A plain or quoted scalar, possibly continued on indented lines.
            let mut s = rest.to_string();
            for (_, l) in &nested {
                let t = strip_comment(l).trim();
                if !t.is_empty() {
                    s.push(' ');
                    s.push_str(t);
                }
            }
            Value::Str(unquote(&s, lineno, &mut fm.warnings))
        };
        fm.values.insert(key.to_string(), value);
    }
}

/// `key: rest` for a top-level line; keys may be quoted.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_end();
    let (key, rest) = if let Some(q) = t.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], q[end + 1..].strip_prefix(':')?)
    } else if let Some(q) = t.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], q[end + 1..].strip_prefix(':')?)
    } else {
        let colon = t
            .find(": ")
            .or_else(|| t.strip_suffix(':').map(|k| k.len()))?;
        (&t[..colon], &t[colon + 1..])
    };
    let key = key.trim();
    if key.is_empty() || key.starts_with('-') || key.len() > 128 {
        return None;
    }
    Some((key, rest))
}

/// Drops a ` # comment` that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut in_single = false;
    let mut in_double = false;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            '#' if !in_single && !in_double && prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    line
}

fn unquote(s: &str, lineno: usize, warnings: &mut Vec<String>) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q) {
            return match inner.strip_suffix(q) {
                Some(body) if q == '\'' => body.replace("''", "'"),
                Some(body) => unescape_double(body),
                None => {
                    warnings.push(format!(
                        "front matter line {lineno}: unterminated quoted value"
                    ));
                    inner.to_string()
                }
            };
        }
    }
    s.to_string()
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn block_value(nested: &[(usize, &str)], lineno: usize, warnings: &mut Vec<String>) -> Value {
    let items: Vec<(usize, &str)> = nested
        .iter()
        .map(|(n, l)| (*n, strip_comment(l).trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if items.is_empty() {
        return Value::Str(String::new());
    }
    if items.iter().all(|(_, l)| l.starts_with('-')) {
        return Value::List(
            items
                .iter()
                .map(|(n, l)| unquote(l[1..].trim(), *n, warnings))
                .filter(|s| !s.is_empty())
                .collect(),
        );
    }
    if items.iter().any(|(_, l)| l.starts_with('-')) {
        // A list of mappings (`- name: x`) or a mix: keep the scalar items only.
        let scalars: Vec<String> = items
            .iter()
            .filter_map(|(n, l)| l.strip_prefix('-').map(|rest| (n, rest.trim())))
            .filter(|(_, rest)| !rest.is_empty() && split_key(rest).is_none())
            .map(|(n, rest)| unquote(rest, *n, warnings))
            .collect();
        return if scalars.is_empty() {
            Value::Other
        } else {
            Value::List(scalars)
        };
    }
    // A nested mapping (`model-index:` and the like): valid, but nothing here needs it.
    let _ = lineno;
    Value::Other
}

fn flow_list(
    rest: &str,
    nested: &[(usize, &str)],
    lineno: usize,
    warnings: &mut Vec<String>,
) -> Value {
    let mut s = rest.to_string();
    for (_, l) in nested {
        s.push(' ');
        s.push_str(strip_comment(l).trim());
    }
    let Some(inner) = s.trim().strip_prefix('[').and_then(|x| x.strip_suffix(']')) else {
        warnings.push(format!("front matter line {lineno}: unterminated `[` list"));
        return Value::Other;
    };
    Value::List(
        inner
            .split(',')
            .map(|x| unquote(x, lineno, warnings))
            .filter(|x| !x.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_shapes() {
        let card = "---\nlicense: apache-2.0  # SPDX\nlicense_name: \"my licence\"\nbase_model:\n- meta-llama/Llama-3.2-1B\n- 'org/other'\ndatasets: [a/b, \"c/d\"]\nextra_gated_prompt: To access it you must\n  agree to the terms.\nwidget:\n  - text: hi\n    output: x\ndescription: >\n  folded\n  text\n---\n# Title\n";
        let fm = parse(card);
        assert_eq!(fm.str("license"), Some("apache-2.0"));
        assert_eq!(fm.str("license_name"), Some("my licence"));
        assert_eq!(
            fm.list("base_model"),
            ["meta-llama/Llama-3.2-1B", "org/other"]
        );
        assert_eq!(fm.list("datasets"), ["a/b", "c/d"]);
        assert_eq!(
            fm.str("extra_gated_prompt"),
            Some("To access it you must agree to the terms.")
        );
        assert_eq!(fm.values.get("widget"), Some(&Value::Other));
        assert_eq!(fm.str("description"), Some("folded text"));
        assert!(fm.warnings.is_empty(), "{:?}", fm.warnings);
        assert_eq!(fm.body_start_line, 17);
    }

    #[test]
    fn single_base_model_string() {
        let fm = parse("---\nbase_model: google/gemma-3-270m\n---\n");
        assert_eq!(fm.list("base_model"), ["google/gemma-3-270m"]);
    }

    #[test]
    fn no_front_matter_is_empty() {
        assert_eq!(
            parse("# Just a README\nlicense: mit\n"),
            FrontMatter::default()
        );
        assert_eq!(parse(""), FrontMatter::default());
    }

    #[test]
    fn broken_front_matter_warns_and_keeps_what_it_can() {
        let fm = parse("---\nlicense: \"mit\nthis line has no colon\n: empty key\ntags: [a, b\nbase_model: x/y\n");
        assert_eq!(fm.str("license"), Some("mit"));
        assert_eq!(fm.list("base_model"), ["x/y"]);
        assert!(
            fm.warnings
                .iter()
                .any(|w| w.contains("line 2") && w.contains("unterminated")),
            "{:?}",
            fm.warnings
        );
        assert!(
            fm.warnings.iter().any(|w| w.contains("line 3")),
            "{:?}",
            fm.warnings
        );
        assert!(
            fm.warnings.iter().any(|w| w.contains("closing")),
            "{:?}",
            fm.warnings
        );
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let nasty = [
            "---",
            "---\n",
            "---\n:",
            "---\n- a\n- b",
            "---\n\"",
            "---\n'a':",
            "---\nk: '",
            "---\nk: [",
            "---\nk: |\n",
            "---\nk:\n  -\n  - ''\n",
            "---\n\u{feff}é: ü\n---",
            "\u{feff}---\nlicense: mit\n---",
            "---\nk: \"\\\"\n",
            "---\n\tk: v\n",
            "---\nk: v # c ' \" \n",
            "---\r\nlicense: mit\r\n---\r\n",
        ];
        for n in nasty {
            let _ = parse(n);
        }
        assert_eq!(
            parse("\u{feff}---\nlicense: mit\n---").str("license"),
            Some("mit")
        );
        assert_eq!(
            parse("---\r\nlicense: mit\r\n---\r\n").str("license"),
            Some("mit")
        );
        let long = format!("---\n{}", "k: v\n".repeat(MAX_LINES + 10));
        assert!(parse(&long).warnings.iter().any(|w| w.contains("longer")));
    }
}
