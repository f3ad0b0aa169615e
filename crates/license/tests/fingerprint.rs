//! Fingerprint robustness on the real Apache-2.0 text: reformatting keeps a high score,
//! truncation lowers it, and an unrelated text matches nothing.

use license::fingerprint::{identify, scores, HIGH_SCORE};
use license::{resolve, Confidence, LicenseInputs};

fn apache() -> String {
    // Debian's copy of the licence (the reference data's perplexity input).
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/apache-2.0.txt");
    match std::fs::read_to_string(&p) {
        Ok(t) => t,
        // CI may lay shared/ elsewhere; SmolLM2's wheel carries the same text.
        Err(_) => std::fs::read_to_string(testdata::require(
            "licenses/smollm2/LICENSE",
            "licence-data",
        ))
        .unwrap(),
    }
}

fn paragraphs(t: &str) -> Vec<String> {
    t.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// Re-wrapped at 50 columns.
fn rewrap(t: &str) -> String {
    let mut out = String::new();
    for p in paragraphs(t) {
        let mut col = 0;
        for w in p.split(' ') {
            if col + w.len() > 50 {
                out.push('\n');
                col = 0;
            } else if col > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(w);
            col += w.len();
        }
        out.push_str("\n\n");
    }
    out
}

/// As Markdown: headings, bold terms, a numbered list, links.
fn markdown(t: &str) -> String {
    let mut out = String::from("# Apache License\n\n");
    for (i, p) in paragraphs(t).into_iter().enumerate() {
        let p = p.replace("\"License\"", "**\"License\"**").replace(
            "http://www.apache.org/licenses/",
            "[http://www.apache.org/licenses/](http://www.apache.org/licenses/)",
        );
        if p.len() < 60 {
            out.push_str(&format!("## {p}\n\n"));
        } else {
            out.push_str(&format!("{}. {p}\n\n", i + 1));
        }
    }
    out
}

/// As an HTML page with entities, tags inside sentences and a script.
fn html(t: &str) -> String {
    let mut out = String::from("<!DOCTYPE html><html><head><title>Apache License</title><script>var x = \"<p>\";</script><style>p{}</style></head><body>\n");
    for p in paragraphs(t) {
        let p = p
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
            .replace("Derivative Works", "<em>Derivative&nbsp;Works</em>")
            .replace(" You ", " <b>You</b> ");
        out.push_str(&format!("<p class=\"x\">{p}</p>\n<!-- comment -->"));
    }
    out.push_str("</body></html>");
    out
}

fn score(text: &str) -> f64 {
    let m = identify(text).unwrap_or_else(|| panic!("no match: {:?}", scores(text).first()));
    assert_eq!(m.terms.id, "apache-2.0");
    m.score
}

#[test]
fn apache_text_matches_in_every_format() {
    let t = apache();
    let plain = score(&t);
    assert!(plain >= 0.99, "plain {plain}");
    for (what, v) in [
        ("rewrapped", rewrap(&t)),
        ("markdown", markdown(&t)),
        ("html", html(&t)),
        ("uppercase", t.to_uppercase()),
        ("crlf", t.replace('\n', "\r\n")),
        (
            "no punctuation",
            t.chars()
                .filter(|c| c.is_alphanumeric() || c.is_whitespace())
                .collect(),
        ),
    ] {
        let s = score(&v);
        assert!(s >= HIGH_SCORE, "{what}: {s}");
        let r = resolve(&LicenseInputs {
            files: vec![("LICENSE".into(), v)],
            ..Default::default()
        });
        assert_eq!(
            (r.id.as_str(), r.confidence),
            ("apache-2.0", Confidence::High),
            "{what}"
        );
    }
}

#[test]
fn truncated_text_gets_lower_confidence() {
    let t = apache();
    let full = score(&t);
    let cut: String = t.chars().take(t.len() * 35 / 100).collect();
    let part = identify(&cut).map_or(0.0, |m| m.score);
    assert!(part < full, "{part} vs {full}");
    let r_full = resolve(&LicenseInputs {
        files: vec![("LICENSE".into(), t)],
        ..Default::default()
    });
    let r_cut = resolve(&LicenseInputs {
        files: vec![("LICENSE".into(), cut)],
        ..Default::default()
    });
    assert!(
        r_cut.confidence < r_full.confidence,
        "{:?} vs {:?}",
        r_cut.confidence,
        r_full.confidence
    );
}

#[test]
fn unrelated_text_is_unknown() {
    let prose = "The quick brown fox jumps over the lazy dog. This README explains how to build \
        the project: run make, then copy the binary somewhere on your PATH. Contributions are \
        welcome; please open an issue first. Copyright 2024 the authors. Licensed as stated in \
        the LICENSE file, which you must read before use.";
    assert!(identify(prose).is_none(), "{:?}", scores(prose).first());
    let r = resolve(&LicenseInputs {
        files: vec![("LICENSE".into(), prose.into())],
        ..Default::default()
    });
    assert!(r.id.is_unknown());
    assert!(r
        .evidence
        .iter()
        .any(|e| e.source == "LICENSE" && e.detail.contains("no licence")));
    // The Gemma terms page mentions Creative Commons and Apache in its footer: a mention is
    // not a copy.
    let gemma = std::fs::read_to_string(testdata::require(
        "licenses/gemma3/GEMMA_TERMS.html",
        "licence-data",
    ))
    .unwrap();
    let all = scores(&gemma);
    assert_eq!(all[0].terms.id, "gemma");
    for m in &all[1..] {
        assert!(m.score < 0.3, "{} scored {}", m.terms.id, m.score);
    }
}

#[test]
fn apache_clauses_are_quoted_from_the_file() {
    let r = resolve(&LicenseInputs {
        gguf_metadata: [("general.license".to_string(), "apache-2.0".to_string())].into(),
        files: vec![("LICENSE".into(), apache())],
        ..Default::default()
    });
    let quotes: Vec<&str> = r
        .clauses
        .iter()
        .filter_map(|c| c.quote.as_deref())
        .collect();
    assert_eq!(quotes.len(), r.clauses.len(), "{:#?}", r.clauses);
    assert!(
        quotes
            .iter()
            .any(|q| q.contains("You must give any other recipients of the Work")),
        "{quotes:#?}"
    );
}
