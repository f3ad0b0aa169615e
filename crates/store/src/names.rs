use std::fmt;

use crate::error::clip;
use crate::StoreError;

/// Longest model name accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 128;
/// Longest layer file name (`org.opencontainers.image.title`) accepted.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// The tag used when none is given.
pub const DEFAULT_TAG: &str = "latest";

/// A model's name in the store: `name:tag`.
///
/// Names are lowercase ASCII letters, digits, `.`, `_` and `-`, start with a letter or digit,
/// hold no `..`, and are at most [`MAX_NAME_LEN`] long; tags are the same but may also hold
/// uppercase letters (quantization tags such as `Q4_K_M` are common). Names never reach a
/// path, but the rules keep them safe to print, to put in a file name and to type.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    name: String,
    tag: String,
}

impl ModelRef {
    /// Parses `name[:tag]` (tag defaults to [`DEFAULT_TAG`]).
    pub fn parse(s: &str) -> Result<ModelRef, StoreError> {
        let (name, tag) = match s.split_once(':') {
            Some((n, t)) => (n, t),
            None => (s, DEFAULT_TAG),
        };
        ModelRef::new(name, tag).map_err(|e| match e {
            StoreError::BadName { why, .. } => StoreError::BadName {
                found: clip(s),
                why,
            },
            other => other,
        })
    }

    /// Builds a reference from a separate name and tag, both validated.
    pub fn new(name: &str, tag: &str) -> Result<ModelRef, StoreError> {
        check_component(name, "name", MAX_NAME_LEN, false)?;
        check_component(tag, "tag", MAX_TAG_LEN, true)?;
        Ok(ModelRef {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag part.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The same name with another tag.
    pub fn with_tag(&self, tag: &str) -> Result<ModelRef, StoreError> {
        ModelRef::new(&self.name, tag)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl fmt::Debug for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl std::str::FromStr for ModelRef {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        ModelRef::parse(s)
    }
}

fn check_component(s: &str, what: &str, max: usize, upper_ok: bool) -> Result<(), StoreError> {
    let bad = |why: String| StoreError::BadName {
        found: clip(s),
        why,
    };
    if s.is_empty() {
        return Err(bad(format!("the {what} is empty")));
    }
    if s.len() > max {
        return Err(bad(format!(
            "the {what} is {} characters long, the limit is {max}",
            s.len()
        )));
    }
    if let Some(c) = s.chars().find(|&c| {
        !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '.' | '_' | '-')
            || (upper_ok && c.is_ascii_uppercase()))
    }) {
        let hint = if c.is_ascii_uppercase() {
            " (names are lowercase)".to_string()
        } else {
            String::new()
        };
        return Err(bad(format!(
            "the {what} holds {c:?}; allowed are {}digits, '.', '_' and '-'{hint}",
            if upper_ok {
                "ASCII letters, "
            } else {
                "lowercase ASCII letters, "
            }
        )));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad(format!("the {what} must start with a letter or digit")));
    }
    if s.contains("..") {
        return Err(bad(format!("the {what} must not contain \"..\"")));
    }
    Ok(())
}

/// Checks a layer's file name (its `org.opencontainers.image.title`) is a plain file name:
/// not empty, at most [`MAX_FILE_NAME_LEN`] bytes, no `/`, `\`, NUL or control characters,
/// not `.` or `..`, no leading `.` or `-`. Returns why not.
pub fn check_file_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty file name".into());
    }
    if s.len() > MAX_FILE_NAME_LEN {
        return Err(format!(
            "file name is {} bytes long, the limit is {MAX_FILE_NAME_LEN}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c == '/' || c == '\\' || c == ':' || c.is_control())
    {
        return Err(format!(
            "file name {:?} holds {c:?}, which is not allowed",
            clip(s)
        ));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return Err(format!(
            "file name {:?} must not start with '.' or '-'",
            clip(s)
        ));
    }
    Ok(())
}

/// Turns free text (a GGUF `general.name`, a file or directory name) into a valid model name:
/// lowercase, every run of other characters one `-`, trimmed, capped. `None` when nothing
/// usable is left.
pub fn sanitize_name(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else if c == '.' && !out.ends_with('.') && !out.ends_with('-') {
            out.push('.');
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut s: String = trimmed.chars().take(MAX_NAME_LEN).collect();
    while s.ends_with(['-', '.', '_']) {
        s.pop();
    }
    check_component(&s, "name", MAX_NAME_LEN, false).ok()?;
    Some(s)
}
