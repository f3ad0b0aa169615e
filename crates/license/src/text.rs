//! Text normalisation shared by fingerprinting and clause quoting.
//!
//! Licence texts reach us as plain text, Markdown or whole HTML pages, wrapped at any width,
//! in any case, with numbering styles that differ between copies. Everything is reduced to a
//! sequence of lowercase words so that two copies of one licence compare equal however they
//! were formatted.

/// Removes HTML markup (tags, comments, `<script>`/`<style>` bodies), decodes character
/// entities and unwraps Markdown links and emphasis, keeping the words in order.
///
/// Input that is not HTML passes through unchanged apart from entity decoding and Markdown
/// clean-up; a lone `<` that opens no tag (as in `a < b`) is kept.
pub fn clean(input: &str) -> String {
    let no_tags = strip_html(input);
    let decoded = decode_entities(&no_tags);
    strip_markdown(&decoded)
}

fn strip_html(s: &str) -> String {
    let mut gt = NextByte::new(s, b'>');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('<') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let lower_head: String = after
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        // Bodies of these elements are code or styling, never licence words.
        let skip_body = ["script", "style"]
            .into_iter()
            .find(|t| lower_head.starts_with(t));
        if let Some(tag) = skip_body {
            let close = format!("</{tag}");
            match find_ascii_ci(after, &close) {
                Some(end) => {
                    let tail = &after[end..];
                    rest = tail.find('>').map_or("", |g| &tail[g + 1..]);
                }
                None => rest = "",
            }
            out.push(' ');
            continue;
        }
        if after.starts_with("!--") {
            rest = after.find("-->").map_or("", |e| &after[e + 3..]);
            out.push(' ');
            continue;
        }
        let opens_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        // A real tag closes soon; a `<` followed by prose is kept as text. The search is
        // bounded so a text full of `<` stays linear.
        match gt.within(after, 4096) {
            Some(end) if opens_tag => {
                out.push(' ');
                rest = &after[end + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Finds the next occurrence of one ASCII byte after successive positions of one text,
/// remembering the last answer so that many searches over the same stretch (a text full of
/// unclosed `<`) cost one scan in total.
struct NextByte<'a> {
    text: &'a str,
    byte: u8,
    cached: Option<Option<usize>>,
}

impl<'a> NextByte<'a> {
    fn new(text: &'a str, byte: u8) -> Self {
        NextByte {
            text,
            byte,
            cached: None,
        }
    }

    /// Distance from `tail` (a suffix of the text) to the byte, if it is within `limit`.
    fn within(&mut self, tail: &str, limit: usize) -> Option<usize> {
        let from = self.text.len() - tail.len();
        let next = match self.cached {
            Some(Some(at)) if at >= from => Some(at),
            Some(None) => None,
            _ => {
                let found = tail.bytes().position(|x| x == self.byte).map(|i| i + from);
                self.cached = Some(found);
                found
            }
        };
        next.map(|at| at - from).filter(|d| *d < limit)
    }
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let end = after
            .char_indices()
            .take(12)
            .find(|&(_, c)| c == ';')
            .map(|(i, _)| i);
        let decoded = end.and_then(|e| entity(&after[..e]).map(|c| (c, e)));
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "hellip" => '…',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "sect" => '§',
        "middot" => '·',
        "bull" => '•',
        _ => return None,
    })
}

/// Unwraps `[text](url)` to `text` and drops emphasis markers and heading hashes, so a
/// Markdown copy reads like the plain one. URLs outside links stay: some licences name
/// their own address in an operative sentence.
fn strip_markdown(s: &str) -> String {
    let mut paren = NextByte::new(s, b')');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("](") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        match paren.within(after, 2048) {
            Some(end) if !after[..end].contains(char::is_whitespace) => rest = &after[end + 1..],
            _ => {
                out.push_str("](");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let chars: Vec<char> = out.chars().collect();
    let mut cleaned = String::with_capacity(out.len());
    for (i, &c) in chars.iter().enumerate() {
        // An underscore inside a word (`prohibited_use_policy`) is part of it; at a word's
        // edge it is emphasis.
        let inner_underscore = c == '_'
            && i > 0
            && chars[i - 1].is_alphanumeric()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        match c {
            '_' if inner_underscore => cleaned.push(c),
            '*' | '_' | '#' | '`' | '[' | ']' | '>' | '|' => cleaned.push(' '),
            c => cleaned.push(c),
        }
    }
    cleaned
}

/// The words of `text` for comparison: lowercase alphanumeric runs, with single letters and
/// roman numerals dropped because list markers such as `(a)`, `(ii)` and the article "a"
/// are formatting noise that differs between copies. Digits stay: version numbers and user
/// caps matter.
pub fn words(text: &str) -> Vec<String> {
    let cleaned = clean(text);
    words_of_clean(&cleaned)
}

/// [`words`] for text that has already been through [`clean`].
pub fn words_of_clean(cleaned: &str) -> Vec<String> {
    let chars: Vec<char> = cleaned.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
            continue;
        }
        if !cur.is_empty() {
            // Joiners: a copy with its punctuation stripped still reads "nonexclusive",
            // "licensors" and "20", so hyphens, apostrophes and decimal points inside a
            // word join rather than split it. A hyphen ending a line joins across the break.
            let next = chars.get(i).copied();
            let hyphen = matches!(c, '-' | '\u{2010}' | '\u{2011}');
            if hyphen || matches!(c, '\'' | '\u{2019}') {
                if next.is_some_and(char::is_alphanumeric) {
                    continue;
                }
                if hyphen && next == Some('\n') {
                    let mut j = i;
                    while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                        j += 1;
                    }
                    if chars.get(j).is_some_and(|c| c.is_alphabetic()) {
                        i = j;
                        continue;
                    }
                }
            }
            if c == '.'
                && cur.chars().last().is_some_and(|l| l.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit())
            {
                continue;
            }
            push_word(&mut out, std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        push_word(&mut out, cur);
    }
    out
}

fn push_word(out: &mut Vec<String>, w: String) {
    let mut chars = w.chars();
    let single_letter =
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic());
    // Roman list markers, `(ii)`, `(iv)`: numbering, not words (no English word is made of
    // only i, v and x).
    let roman = w.len() <= 5 && w.chars().all(|c| matches!(c, 'i' | 'v' | 'x'));
    if !single_letter && !roman {
        out.push(w);
    }
}

/// Sentences of a cleaned text with their whitespace collapsed, for quoting clauses.
/// Splits after `.` or `;` followed by whitespace, and at blank lines, except after
/// common abbreviations, so a numbered heading stays with its sentence.
pub fn sentences(text: &str) -> Vec<String> {
    let cleaned = clean(text);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut newlines = 0usize;
    let mut prev_end = false;
    for c in cleaned.chars() {
        if c == '\n' {
            newlines += 1;
        }
        if c.is_whitespace() {
            if newlines >= 2 || prev_end {
                flush_sentence(&mut out, &mut cur);
                prev_end = false;
            }
            if !cur.is_empty() && !cur.ends_with(' ') {
                cur.push(' ');
            }
            continue;
        }
        newlines = 0;
        prev_end = false;
        cur.push(c);
        // Not at `:`: a colon introduces the rest of its sentence ("You must not ...: for").
        if matches!(c, '.' | ';') && !ends_with_abbreviation(&cur) {
            prev_end = true;
        }
    }
    flush_sentence(&mut out, &mut cur);
    out
}

/// The parts of one sentence between `.`, `;` and `:` stops (each keeping its stop), for
/// narrowing a long quotation down to the clause that matters.
pub fn clause_parts(sentence: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sentence.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        let at_stop = matches!(c, '.' | ';' | ':')
            && chars.peek().is_some_and(|n| n.is_whitespace())
            && !ends_with_abbreviation(&cur);
        if at_stop {
            out.push(cur.trim().to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn ends_with_abbreviation(s: &str) -> bool {
    let last = s.rsplit(' ').next().unwrap_or("").to_ascii_lowercase();
    matches!(
        last.as_str(),
        "e.g." | "i.e." | "inc." | "ltd." | "co." | "etc." | "vs." | "no." | "u.s." | "llc."
    ) || {
        // "4." numbers a heading; "3.2." ends a sentence that cites a section.
        let body = last.strip_suffix('.').unwrap_or(&last);
        !body.is_empty() && body.chars().all(|c| c.is_ascii_digit())
    }
}

fn flush_sentence(out: &mut Vec<String>, cur: &mut String) {
    let s = cur.trim();
    if s.chars().any(char::is_alphanumeric) {
        out.push(s.to_string());
    }
    cur.clear();
}

/// Whether `needle` occurs in `hay` as a contiguous run of words.
pub fn contains_words(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_entities_and_tags_vanish() {
        let w = words("<p>You&nbsp;must <b>give</b> a&#x20;copy &amp; <script>var x = 1;</script>NOTICE&quot;</p>");
        assert_eq!(w, ["you", "must", "give", "copy", "notice"]);
    }

    #[test]
    fn markdown_links_and_emphasis() {
        let w = words("## 1. **Grant** of [Copyright License](https://example.org/x).");
        assert_eq!(w, ["1", "grant", "of", "copyright", "license"]);
        let w = words("a non-exclusive, royalty-\n   free Licensor's 2.0 and/or x-");
        assert_eq!(
            w,
            [
                "nonexclusive",
                "royaltyfree",
                "licensors",
                "20",
                "and",
                "or"
            ]
        );
    }

    #[test]
    fn lone_angle_bracket_is_text() {
        assert_eq!(words("a < b and c > d"), ["and"]);
        assert_eq!(
            words("ab<cd unterminated <tag"),
            ["ab", "cd", "unterminated", "tag"]
        );
    }

    #[test]
    fn unclosed_markup_stays_linear() {
        // Quadratic scanning would take minutes here.
        let n = 200_000;
        let w = words(&"<ab ](xy ".repeat(n));
        assert_eq!(w.len(), 2 * n);
    }

    #[test]
    fn hostile_fragments_do_not_panic() {
        for s in [
            "<",
            "&",
            "&#xFFFFFFFF;",
            "&#;",
            "](",
            "<!--",
            "<script",
            "é<é>é&é;",
            "\u{0}",
        ] {
            let _ = words(s);
            let _ = sentences(s);
        }
    }

    #[test]
    fn clause_parts_split_inside_a_sentence() {
        let p = clause_parts("Do this: first, e.g. so; then that in Section 3.2 here. Done");
        assert_eq!(
            p,
            [
                "Do this:",
                "first, e.g. so;",
                "then that in Section 3.2 here.",
                "Done"
            ]
        );
    }

    #[test]
    fn sentences_split_on_stops_not_section_numbers() {
        let s = sentences("4.2 Use. You may: do this; and that.\n\nNext e.g. thing_one");
        assert_eq!(
            s,
            [
                "4.2 Use.",
                "You may: do this;",
                "and that.",
                "Next e.g. thing_one"
            ]
        );
    }
}
