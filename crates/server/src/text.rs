//! Token ids to streamed text: whole UTF-8 characters only, and stop strings that may span
//! token boundaries held back until they are resolved, so no client ever sees part of a stop
//! string or half a character.

/// Incremental detokenizer with stop-string hold-back for one sequence.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Bytes of a character not yet complete.
    bytes: Vec<u8>,
    /// Decoded text that could still be the beginning of a stop string.
    held: String,
    stop: Vec<String>,
}

/// What one token added.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Text that is final and can be sent.
    pub text: String,
    /// A stop string was found; `text` ends just before it and nothing more will follow.
    pub stopped: bool,
}

impl TextStream {
    /// A stream that ends before the first occurrence of any non-empty `stop` string.
    pub fn new(stop: Vec<String>) -> TextStream {
        TextStream {
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    /// Adds the bytes of one token's piece.
    pub fn push(&mut self, piece: &[u8]) -> Pushed {
        self.bytes.extend_from_slice(piece);
        let mut decoded = String::new();
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(s) => {
                    decoded.push_str(s);
                    self.bytes.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    decoded.push_str(&String::from_utf8_lossy(&self.bytes[..valid]));
                    match e.error_len() {
                        None => {
                            self.bytes.drain(..valid);
                            break;
                        }
                        Some(n) => {
                            decoded.push('\u{FFFD}');
                            self.bytes.drain(..valid + n);
                        }
                    }
                }
            }
        }
        self.held.push_str(&decoded);
        if let Some(cut) = self
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(cut);
            self.bytes.clear();
            return Pushed {
                text: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        // Everything but the longest tail that is the start of a stop string is final.
        let hold = self
            .stop
            .iter()
            .filter_map(|s| {
                (1..s.len())
                    .rev()
                    .find(|&k| s.is_char_boundary(k) && self.held.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0);
        let keep_from = self.held.len() - hold;
        let text: String = self.held.drain(..keep_from).collect();
        Pushed {
            text,
            stopped: false,
        }
    }

    /// Ends the stream (length limit or end-of-generation token): what was held back is final;
    /// an unfinished character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.bytes));
            self.bytes.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut t = TextStream::new(stop.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let r = t.push(p);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&t.finish());
        (out, false)
    }

    #[test]
    fn stop_across_tokens_is_held_then_cut() {
        let mut t = TextStream::new(vec!["END".into()]);
        assert_eq!(t.push(b"abc E").text, "abc ");
        assert_eq!(t.push(b"N").text, "");
        let r = t.push(b"Dxyz");
        assert_eq!(
            r,
            Pushed {
                text: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn false_start_is_released() {
        assert_eq!(
            run(&["END"], &[b"E", b"N", b"d of it"]),
            ("ENd of it".into(), false)
        );
    }

    #[test]
    fn split_utf8_is_joined() {
        let e = "é".as_bytes();
        assert_eq!(run(&[], &[&e[..1], &e[1..], b"!"]), ("é!".into(), false));
        // An unfinished character at the end becomes U+FFFD rather than vanishing.
        assert_eq!(run(&[], &[b"a", &e[..1]]), ("a\u{FFFD}".into(), false));
    }

    #[test]
    fn earliest_stop_wins_and_empty_stop_ignored() {
        assert_eq!(run(&["", "c", "b"], &[b"aabcc"]), ("aa".into(), true));
    }
}
