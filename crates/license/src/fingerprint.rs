//! Identifies a licence from its text by the distinctive phrases of each database entry.
//!
//! Both the text and the phrases are reduced to words ([`crate::text::words`]) and then to
//! sets of word 3-shingles, so line wrapping, markup, case, punctuation and numbering do
//! not matter. A phrase's credit is the square of the share of its shingles found (a
//! phrase that is only half there counts a quarter), and a licence's score is the
//! weighted mean credit of its phrases. Phrases are spread over each licence, so a
//! truncated copy scores lower than a whole one.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use crate::terms::{Terms, DATABASE};
use crate::text;
use crate::Confidence;

const K: usize = 3;

/// Scores at or above this are a match (low confidence).
pub const MIN_SCORE: f64 = 0.30;
/// Scores at or above this are a medium-confidence match.
pub const MEDIUM_SCORE: f64 = 0.55;
/// Scores at or above this are a high-confidence match.
pub const HIGH_SCORE: f64 = 0.80;

/// How well a text matches one licence.
#[derive(Clone, Debug)]
pub struct Match {
    /// The licence.
    pub terms: &'static Terms,
    /// Weighted share of its phrases found, 0..=1.
    pub score: f64,
    /// Phrases found whole (credit above 0.9).
    pub phrases_found: usize,
    /// Phrases the licence has.
    pub phrases_total: usize,
}

impl Match {
    /// The confidence this score gives.
    pub fn confidence(&self) -> Confidence {
        if self.score >= HIGH_SCORE {
            Confidence::High
        } else if self.score >= MEDIUM_SCORE {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }
}

struct Compiled {
    terms: &'static Terms,
    phrases: Vec<(f64, Vec<u64>)>,
}

fn shingle_hash(words: &[String]) -> u64 {
    // SipHash with fixed keys: stable within a process, which is all a set lookup needs.
    let mut h = DefaultHasher::new();
    words.hash(&mut h);
    h.finish()
}

fn shingles(words: &[String]) -> Vec<u64> {
    if words.len() < K {
        return if words.is_empty() {
            Vec::new()
        } else {
            vec![shingle_hash(words)]
        };
    }
    words.windows(K).map(shingle_hash).collect()
}

fn compiled() -> &'static [Compiled] {
    static C: OnceLock<Vec<Compiled>> = OnceLock::new();
    C.get_or_init(|| {
        DATABASE
            .iter()
            .filter(|t| !t.phrases.is_empty())
            .map(|t| Compiled {
                terms: t,
                phrases: t
                    .phrases
                    .iter()
                    .map(|p| (f64::from(p.1), shingles(&text::words(p.0))))
                    .collect(),
            })
            .collect()
    })
}

/// Every licence with a non-zero score against `text`, best first.
pub fn scores(text: &str) -> Vec<Match> {
    let words = text::words(text);
    let doc: HashSet<u64> = shingles(&words).into_iter().collect();
    let mut out: Vec<Match> = compiled()
        .iter()
        .map(|c| {
            let mut total = 0.0;
            let mut got = 0.0;
            let mut found = 0;
            for (w, sh) in &c.phrases {
                total += w;
                if sh.is_empty() {
                    continue;
                }
                let share = sh.iter().filter(|h| doc.contains(h)).count() as f64 / sh.len() as f64;
                if share > 0.9 {
                    found += 1;
                }
                got += w * share * share;
            }
            Match {
                terms: c.terms,
                score: if total > 0.0 { got / total } else { 0.0 },
                phrases_found: found,
                phrases_total: c.phrases.len(),
            }
        })
        .filter(|m| m.score > 0.0)
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.terms.id.cmp(b.terms.id))
    });
    out
}

/// The licence `text` is a copy of, if any scores at least [`MIN_SCORE`] with at least two
/// whole phrases (one phrase alone is a mention, not a copy).
pub fn identify(text: &str) -> Option<Match> {
    scores(text)
        .into_iter()
        .next()
        .filter(|m| m.score >= MIN_SCORE && m.phrases_found >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phrase_has_a_shingle() {
        for c in compiled() {
            for (i, (_, sh)) in c.phrases.iter().enumerate() {
                assert!(
                    !sh.is_empty(),
                    "{} phrase {i} is empty after normalisation",
                    c.terms.id
                );
                assert!(
                    text::words(c.terms.phrases[i].0).len() >= K,
                    "{} phrase {:?} is shorter than {K} words",
                    c.terms.id,
                    c.terms.phrases[i].0
                );
            }
        }
    }

    #[test]
    fn a_licence_name_in_passing_is_not_a_match() {
        let t = "This page is licensed under the Creative Commons Attribution 4.0 License, and code samples under the Apache 2.0 License.";
        assert!(identify(t).is_none(), "{:?}", scores(t).first());
        assert!(identify("").is_none());
    }

    #[test]
    fn phrase_soup_of_one_licence_matches_it() {
        for c in compiled() {
            let soup: Vec<&str> = c.terms.phrases.iter().map(|p| p.0).collect();
            let m = identify(&soup.join(".\n\n")).expect(c.terms.id);
            assert_eq!(m.terms.id, c.terms.id);
            assert!(m.score > 0.99);
        }
    }
}
