//! Python-compatible text forms of template values: `str()`, `repr()` and `json.dumps()`.

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, Output};

/// Nesting limit for printing and JSON, so a self-referencing or absurdly deep value cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 256;

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "value nested too deeply to print",
    )
}

/// Formatter for `{{ expr }}`: Python's `str(value)`, undefined prints as nothing.
pub(super) fn write_str_of(out: &mut Output<'_>, value: &Value) -> Result<(), Error> {
    if let Some(s) = value.as_str() {
        return out
            .write_str(s)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"));
    }
    let mut s = String::new();
    py_str(&mut s, value)?;
    out.write_str(&s)
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"))
}

/// Python's `str(value)`.
pub(super) fn py_str(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Undefined => {}
        _ => py_repr(out, value, 0)?,
    }
    Ok(())
}

/// Python's `repr(value)` (containers print their items with `repr`).
pub(super) fn py_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &item, depth + 1)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                py_repr(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else if let Ok(f) = f64::try_from(value.clone()) {
        out.push_str(&py_float_repr(f, false));
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Python's `repr(float)` (or `json.dumps(float)` when `json`): shortest round-trip digits,
/// scientific notation outside `1e-4 <= |f| < 1e16`.
pub(super) fn py_float_repr(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN".into() } else { "nan".into() };
    }
    if f.is_infinite() {
        return match (f > 0.0, json) {
            (true, true) => "Infinity".into(),
            (false, true) => "-Infinity".into(),
            (true, false) => "inf".into(),
            (false, false) => "-inf".into(),
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-5", "1e20"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.splitlines()` (no ends kept).
pub(super) fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !is_break {
            continue;
        }
        lines.push(&s[start..i]);
        let mut end = i + c.len_utf8();
        if c == '\r' {
            if let Some(&(j, '\n')) = iter.peek() {
                iter.next();
                end = j + 1;
            }
        }
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `indent` argument of `json.dumps`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum JsonIndent {
    #[default]
    None,
    Text(String),
}

impl JsonIndent {
    pub(super) fn from_value(v: &Value) -> Result<JsonIndent, Error> {
        if v.is_none() || v.is_undefined() {
            return Ok(JsonIndent::None);
        }
        if let Some(s) = v.as_str() {
            return Ok(JsonIndent::Text(s.to_owned()));
        }
        if let Some(n) = v.as_i64() {
            let n = n.clamp(0, 64) as usize;
            return Ok(JsonIndent::Text(" ".repeat(n)));
        }
        Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: indent must be an integer, a string or none",
        ))
    }
}

/// Options of transformers' `tojson` (Python `json.dumps`).
#[derive(Debug, Clone, Default)]
pub(super) struct JsonOptions {
    pub ensure_ascii: bool,
    pub indent: JsonIndent,
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
}

impl JsonOptions {
    fn seps(&self) -> (&str, &str) {
        match (&self.separators, &self.indent) {
            (Some((a, b)), _) => (a, b),
            (None, JsonIndent::None) => (", ", ": "),
            (None, JsonIndent::Text(_)) => (",", ": "),
        }
    }
}

fn newline(out: &mut String, opts: &JsonOptions, level: usize) {
    if let JsonIndent::Text(unit) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(unit);
        }
    }
}

/// Python's `json.dumps(value, ...)` with transformers' defaults.
pub(super) fn json_dumps(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    level: usize,
) -> Result<(), Error> {
    if level > MAX_DEPTH {
        return Err(too_deep());
    }
    let (item_sep, key_sep) = opts.seps();
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                let f = f64::try_from(value.clone())?;
                out.push_str(&py_float_repr(f, true));
            }
        }
        ValueKind::String => json_str(out, value.as_str().unwrap_or_default(), opts.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, opts, level + 1);
                json_dumps(out, item, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let v = value.get_item(&key)?;
                entries.push((json_key(&key)?, v));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, opts, level + 1);
                json_str(out, k, opts.ensure_ascii);
                out.push_str(key_sep);
                json_dumps(out, v, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push('}');
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a value of type {kind} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

/// JSON object keys as Python converts them (`True` -> `"true"`, `1` -> `"1"`, ...).
fn json_key(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number if key.is_integer() => key.to_string(),
        ValueKind::Number => py_float_repr(f64::try_from(key.clone())?, true),
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
            ))
        }
    })
}

fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_like_python() {
        assert_eq!(splitlines("a\n\nb\r\nc\rd\n"), vec!["a", "", "b", "c", "d"]);
        assert_eq!(splitlines(""), Vec::<&str>::new());
        assert_eq!(splitlines("x"), vec!["x"]);
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(py_float_repr(1.0, false), "1.0");
        assert_eq!(py_float_repr(0.1, false), "0.1");
        assert_eq!(py_float_repr(1e16, false), "1e+16");
        assert_eq!(py_float_repr(1.5e-5, false), "1.5e-05");
        assert_eq!(py_float_repr(123456.5, false), "123456.5");
        assert_eq!(py_float_repr(f64::NAN, true), "NaN");
    }

    #[test]
    fn repr_like_python() {
        let v = Value::from_serialize(serde_json::json!({"a": [1, "it's", null, true, 2.5]}));
        let mut s = String::new();
        py_repr(&mut s, &v, 0).unwrap();
        assert_eq!(s, "{'a': [1, \"it's\", None, True, 2.5]}");
    }

    #[test]
    fn json_like_python() {
        let v = Value::from_serialize(serde_json::json!({"b": [1, {}], "a": "é\u{7f}\n"}));
        let mut s = String::new();
        json_dumps(&mut s, &v, &JsonOptions::default(), 0).unwrap();
        assert_eq!(s, "{\"b\": [1, {}], \"a\": \"é\u{7f}\\n\"}");
        let opts = JsonOptions {
            indent: JsonIndent::Text("  ".into()),
            ensure_ascii: true,
            ..Default::default()
        };
        let mut s = String::new();
        json_dumps(&mut s, &v, &opts, 0).unwrap();
        assert_eq!(
            s,
            "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": \"\\u00e9\\u007f\\n\"\n}"
        );
    }
}
