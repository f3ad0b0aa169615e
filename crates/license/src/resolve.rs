//! Resolution of a model's licence from its metadata, model card and licence files, and the
//! effective terms across its lineage.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::fingerprint::{self, Match};
use crate::frontmatter;
use crate::terms::{self, Commercial, Outputs, Terms, Topic, UsePolicy, UNKNOWN};
use crate::text;

/// What a caller knows about one model, gathered from wherever it lives (a GGUF file, a
/// store manifest's config blob and layers, a directory of files).
#[derive(Clone, Debug, Default)]
pub struct LicenseInputs {
    /// GGUF `general.*` metadata as strings (`general.license`, `general.license.name`,
    /// `general.license.link`, `general.name`, `general.base_model.N.*`, ...).
    pub gguf_metadata: BTreeMap<String, String>,
    /// The model card (`README.md`) text, YAML front matter included.
    pub model_card: Option<String>,
    /// Licence-related files as (file name, text): `LICENSE`, `USE_POLICY.md`, `NOTICE`...
    pub files: Vec<(String, String)>,
}

/// How sure a resolution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Weak or conflicting evidence, or none.
    Low,
    /// One good source.
    Medium,
    /// Independent sources agree, or the licence text itself matches closely.
    High,
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        })
    }
}

/// A licence id from the terms database (`apache-2.0`, `gemma`, `llama3.2`, `unknown`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LicenseId(&'static str);

impl LicenseId {
    /// The id of an unresolved licence.
    pub const UNKNOWN: LicenseId = LicenseId("unknown");

    /// The id as text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// Whether this is [`LicenseId::UNKNOWN`].
    pub fn is_unknown(&self) -> bool {
        *self == LicenseId::UNKNOWN
    }
}

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<&str> for LicenseId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for LicenseId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// One piece of evidence: where it came from and what it said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The source: `gguf general.license`, `README.md front matter license`,
    /// `LICENSE (fingerprint 0.97)`...
    pub source: String,
    /// What it showed.
    pub detail: String,
}

/// An operative clause of the resolved licence, quoted from the model's own licence file
/// when one was given.
#[derive(Clone, Debug, Serialize)]
pub struct QuotedClause {
    /// What it is about.
    pub topic: Topic,
    /// What it means, in our words.
    pub summary: &'static str,
    /// The sentence of the model's licence file containing the clause's key phrase.
    pub quote: Option<String>,
    /// The file quoted, or why there is no quote.
    pub source: String,
}

/// The licence of one model.
#[derive(Clone, Debug, Serialize)]
pub struct Resolution {
    /// The licence id (`unknown` when nothing matched).
    pub id: LicenseId,
    /// Its name; for an unknown licence, what the metadata declared, if anything.
    pub name: String,
    /// How sure this is.
    pub confidence: Confidence,
    /// Every piece of evidence considered, matching or not.
    pub evidence: Vec<Evidence>,
    /// The terms (the `unknown` placeholder when unresolved).
    pub terms: &'static Terms,
    /// Base models named by the card or metadata (`org/name` where known).
    pub base_models: Vec<String>,
    /// The model's name from its metadata, or the name it was resolved under.
    pub model_name: Option<String>,
    /// Sources that disagree with the result, one line each.
    pub conflicts: Vec<String>,
    /// Operative clauses, quoted from the licence file where one matched.
    pub clauses: Vec<QuotedClause>,
    /// The licence file the clauses were quoted from.
    pub licence_file: Option<String>,
    /// Training data sets named by the card or metadata.
    pub datasets: Vec<String>,
    /// The task (`pipeline_tag`) named by the card.
    pub task: Option<String>,
    /// Problems reading the inputs (malformed front matter...), one line each.
    pub warnings: Vec<String>,
    /// True when this resolution stands for a base model known only by name.
    pub inferred_from_name: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Gguf,
    Card,
    Text,
}

struct Vote {
    terms: &'static Terms,
    group: Group,
    score: Option<f64>,
    file: Option<usize>,
}

/// Resolves the licence of a model from everything known about it.
///
/// Each source votes: the GGUF `general.license*` keys and the card's `license`,
/// `license_name` and `license_link` by name or link; every file by fingerprint. One
/// licence agreed on by independent sources, or a close text match, gives high
/// confidence; a single declaration medium. When sources disagree the most restrictive
/// candidate wins (a close text match beats declarations) and the conflict is reported.
pub fn resolve(inputs: &LicenseInputs) -> Resolution {
    let mut evidence = Vec::new();
    let mut warnings = Vec::new();
    let mut votes: Vec<Vote> = Vec::new();
    let mut declared_names: Vec<String> = Vec::new();

    for key in [
        "general.license",
        "general.license.name",
        "general.license.link",
    ] {
        if let Some(v) = inputs
            .gguf_metadata
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            let found = if key.ends_with(".link") {
                terms::by_link(v)
            } else {
                lookup_declared(v)
            };
            declare(
                &mut evidence,
                &mut votes,
                &mut declared_names,
                format!("gguf {key}"),
                v,
                found,
                Group::Gguf,
            );
        }
    }

    let mut base_models: Vec<String> = Vec::new();
    let mut datasets: Vec<String> = Vec::new();
    let mut task = None;
    let mut card_model_name = None;
    if let Some(card) = &inputs.model_card {
        let fm = frontmatter::parse(card);
        warnings.extend(fm.warnings.iter().map(|w| format!("model card: {w}")));
        for v in fm.list("license") {
            let found = lookup_declared(v);
            if found.is_none() && v.eq_ignore_ascii_case("other") {
                evidence.push(Evidence {
                    source: "model card front matter license".into(),
                    detail: "\"other\": a licence outside the usual list; see license_name / license_link".into(),
                });
                continue;
            }
            declare(
                &mut evidence,
                &mut votes,
                &mut declared_names,
                "model card front matter license".into(),
                v,
                found,
                Group::Card,
            );
        }
        if let Some(v) = fm.str("license_name") {
            declare(
                &mut evidence,
                &mut votes,
                &mut declared_names,
                "model card front matter license_name".into(),
                v,
                lookup_declared(v),
                Group::Card,
            );
        }
        if let Some(v) = fm.str("license_link") {
            let found = terms::by_link(v);
            if found.is_none() && !v.contains("://") {
                evidence.push(Evidence {
                    source: "model card front matter license_link".into(),
                    detail: format!("\"{v}\": a file in the model's repository; its text decides"),
                });
            } else {
                declare(
                    &mut evidence,
                    &mut votes,
                    &mut declared_names,
                    "model card front matter license_link".into(),
                    v,
                    found,
                    Group::Card,
                );
            }
        }
        for b in fm.list("base_model") {
            push_unique(&mut base_models, b.trim());
        }
        for d in fm.list("datasets") {
            push_unique(&mut datasets, d.trim());
        }
        task = fm.str("pipeline_tag").map(str::to_string);
        card_model_name = fm.str("model_name").map(str::to_string);
    }

    for b in gguf_base_models(&inputs.gguf_metadata) {
        push_unique(&mut base_models, &b);
    }
    for d in gguf_indexed(&inputs.gguf_metadata, "general.dataset") {
        push_unique(&mut datasets, &d);
    }

    let mut matches: Vec<Option<Match>> = Vec::with_capacity(inputs.files.len());
    for (i, (name, body)) in inputs.files.iter().enumerate() {
        let m = fingerprint::identify(body);
        match &m {
            Some(m) => {
                evidence.push(Evidence {
                    source: format!("{name} (fingerprint {:.2})", m.score),
                    detail: format!(
                        "text matches {} ({}): {} of {} distinctive phrases",
                        m.terms.name, m.terms.id, m.phrases_found, m.phrases_total
                    ),
                });
                votes.push(Vote {
                    terms: m.terms,
                    group: Group::Text,
                    score: Some(m.score),
                    file: Some(i),
                });
            }
            None => {
                let best = fingerprint::scores(body).into_iter().next();
                let detail = match best {
                    Some(b) => format!(
                        "no licence in the database matches (closest: {} at {:.2})",
                        b.terms.id, b.score
                    ),
                    None => "no licence in the database matches".into(),
                };
                evidence.push(Evidence {
                    source: name.clone(),
                    detail,
                });
            }
        }
        matches.push(m);
    }

    let (winner, confidence, conflicts) = decide(&votes);
    let model_name = inputs
        .gguf_metadata
        .get("general.name")
        .cloned()
        .filter(|s| !s.trim().is_empty())
        .or(card_model_name);

    // Quote from the file whose text matched the winner best.
    let quote_file = votes
        .iter()
        .filter(|v| v.group == Group::Text && std::ptr::eq(v.terms, winner))
        .max_by(|a, b| a.score.unwrap_or(0.0).total_cmp(&b.score.unwrap_or(0.0)))
        .and_then(|v| v.file);
    let clauses = quote_clauses(
        winner,
        quote_file.map(|i| (&inputs.files[i].0, &inputs.files[i].1)),
    );

    let name = if winner.is_unknown() && !declared_names.is_empty() {
        format!("unknown (declared: {})", declared_names.join(", "))
    } else {
        winner.name.to_string()
    };
    if winner.is_unknown() && votes.is_empty() && evidence.is_empty() {
        evidence.push(Evidence {
            source: "(none)".into(),
            detail: "no licence metadata, model card or licence file was given".into(),
        });
    }

    Resolution {
        id: LicenseId(winner.id),
        name,
        confidence,
        evidence,
        terms: winner,
        base_models,
        model_name,
        conflicts,
        clauses,
        licence_file: quote_file.map(|i| inputs.files[i].0.clone()),
        datasets,
        task,
        warnings,
        inferred_from_name: false,
    }
}

fn lookup_declared(v: &str) -> Option<&'static Terms> {
    if v.contains("://") {
        terms::by_link(v)
    } else {
        terms::by_alias(v)
    }
}

fn declare(
    evidence: &mut Vec<Evidence>,
    votes: &mut Vec<Vote>,
    declared_names: &mut Vec<String>,
    source: String,
    value: &str,
    found: Option<&'static Terms>,
    group: Group,
) {
    match found {
        Some(t) => {
            evidence.push(Evidence {
                source,
                detail: format!("\"{value}\" names {} ({})", t.name, t.id),
            });
            votes.push(Vote {
                terms: t,
                group,
                score: None,
                file: None,
            });
        }
        None => {
            evidence.push(Evidence {
                source,
                detail: format!("\"{value}\" names no licence in the terms database"),
            });
            push_unique(declared_names, value);
        }
    }
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !s.is_empty() && !v.iter().any(|x| x.eq_ignore_ascii_case(s)) {
        v.push(s.to_string());
    }
}

/// `general.base_model.N.*` as `org/name`: the Hugging Face repository path when the
/// `repo_url` gives one, else `organization/name`, else `name`.
fn gguf_base_models(meta: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..indexed_count(meta, "general.base_model") {
        let get = |k: &str| {
            meta.get(&format!("general.base_model.{i}.{k}"))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        let from_url = get("repo_url").and_then(|u| {
            let u = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"))?;
            let path = u.strip_prefix("huggingface.co/")?;
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).take(2).collect();
            (parts.len() == 2).then(|| parts.join("/"))
        });
        let named = match (get("organization"), get("name")) {
            (Some(o), Some(n)) => Some(format!("{o}/{n}")),
            (None, Some(n)) => Some(n.to_string()),
            _ => None,
        };
        if let Some(b) = from_url.or(named) {
            push_unique(&mut out, &b);
        }
    }
    out
}

fn indexed_count(meta: &BTreeMap<String, String>, prefix: &str) -> usize {
    let declared = meta
        .get(&format!("{prefix}.count"))
        .and_then(|c| c.trim().parse::<usize>().ok())
        .unwrap_or(0);
    // Bounded: a hostile count must not make us loop for ages.
    declared.min(64)
}

fn gguf_indexed(meta: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    (0..indexed_count(meta, prefix))
        .filter_map(|i| meta.get(&format!("{prefix}.{i}.name")).cloned())
        .filter(|s| !s.trim().is_empty())
        .collect()
}

fn decide(votes: &[Vote]) -> (&'static Terms, Confidence, Vec<String>) {
    if votes.is_empty() {
        return (&UNKNOWN, Confidence::Low, Vec::new());
    }
    let mut ids: Vec<&'static Terms> = Vec::new();
    for v in votes {
        if !ids.iter().any(|t| std::ptr::eq(*t, v.terms)) {
            ids.push(v.terms);
        }
    }
    let best_text = |t: &Terms| {
        votes
            .iter()
            .filter(|v| std::ptr::eq(v.terms, t))
            .filter_map(|v| v.score)
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))))
    };
    if ids.len() == 1 {
        let t = ids[0];
        let groups: std::collections::BTreeSet<Group> = votes.iter().map(|v| v.group).collect();
        let text_conf = best_text(t).map(|s| {
            if s >= fingerprint::HIGH_SCORE {
                Confidence::High
            } else if s >= fingerprint::MEDIUM_SCORE {
                Confidence::Medium
            } else {
                Confidence::Low
            }
        });
        let conf = if groups.len() >= 2 {
            Confidence::High
        } else {
            text_conf.unwrap_or(Confidence::Medium)
        };
        return (t, conf, Vec::new());
    }
    // Disagreement. A close text match is the strongest evidence there is; otherwise take
    // the most restrictive candidate so a policy errs on the safe side.
    let strong_texts: Vec<&'static Terms> = ids
        .iter()
        .copied()
        .filter(|t| best_text(t).is_some_and(|s| s >= fingerprint::HIGH_SCORE))
        .collect();
    let (winner, conf) = match strong_texts
        .iter()
        .copied()
        .max_by_key(|t| t.restrictiveness())
    {
        Some(t) if strong_texts.len() == 1 => (t, Confidence::Medium),
        Some(t) => (t, Confidence::Low),
        None => (
            ids.iter()
                .copied()
                .max_by_key(|t| t.restrictiveness())
                .unwrap_or(&UNKNOWN),
            Confidence::Low,
        ),
    };
    let conflicts = ids
        .iter()
        .filter(|t| !std::ptr::eq(**t, winner))
        .map(|t| {
            let sources: Vec<&str> = votes
                .iter()
                .filter(|v| std::ptr::eq(v.terms, *t))
                .map(|v| match v.group {
                    Group::Gguf => "GGUF metadata",
                    Group::Card => "model card",
                    Group::Text => "a licence file",
                })
                .collect();
            format!(
                "{} says {} ({}), but {} ({}) was chosen as {}",
                sources.join(" and "),
                t.name,
                t.id,
                winner.name,
                winner.id,
                if strong_texts.len() == 1 {
                    "its text matches closely"
                } else {
                    "the most restrictive candidate"
                }
            )
        })
        .collect();
    (winner, conf, conflicts)
}

const MAX_QUOTE_CHARS: usize = 600;

fn quote_clauses(t: &'static Terms, file: Option<(&String, &String)>) -> Vec<QuotedClause> {
    let sentences: Vec<(String, Vec<String>)> = file
        .map(|(_, body)| {
            text::sentences(body)
                .into_iter()
                .map(|s| {
                    let w = text::words_of_clean(&s);
                    (s, w)
                })
                .collect()
        })
        .unwrap_or_default();
    t.clauses
        .iter()
        .map(|c| {
            let key = text::words(c.key_phrase);
            let found = sentences
                .iter()
                .position(|(_, w)| text::contains_words(w, &key))
                .map(|k| narrow(&sentences, k, &key));
            let (quote, source) = match (file, found) {
                (Some((name, _)), Some(s)) => (Some(shorten(&s)), name.clone()),
                (Some((name, _)), None) => (None, format!("not found in {name}")),
                (None, _) => (None, "terms database (no licence file given)".into()),
            };
            QuotedClause {
                topic: c.topic,
                summary: c.summary,
                quote,
                source,
            }
        })
        .collect()
}

/// The quotation for a key phrase found in sentence `k`: the part of the sentence between
/// stops that holds the phrase; a part following a lead-in that ends with `:` ("You must
/// not use any of the Gemma Services:" + "for the restricted uses...") keeps the lead-in,
/// whether it is in the same sentence or the one before (a list item).
fn narrow(sentences: &[(String, Vec<String>)], k: usize, key: &[String]) -> String {
    let parts = text::clause_parts(&sentences[k].0);
    let hit = parts
        .iter()
        .position(|p| text::contains_words(&text::words_of_clean(p), key));
    let Some(i) = hit else {
        // The phrase spans a stop: quote the whole sentence.
        return sentences[k].0.clone();
    };
    let lead = if i > 0 {
        Some(parts[i - 1].clone())
    } else {
        k.checked_sub(1)
            .and_then(|p| text::clause_parts(&sentences[p].0).pop())
    };
    match lead {
        Some(l) if l.ends_with(':') => format!("{l} {}", parts[i]),
        _ => parts[i].clone(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTE_CHARS {
        return s.to_string();
    }
    let cut: String = s.chars().take(MAX_QUOTE_CHARS).collect();
    format!("{}…", cut.trim_end())
}

/// Resolves a base model known only by its name (`meta-llama/Llama-3.2-1B`,
/// `google/gemma-3-270m`): families whose every release shares one licence are inferred
/// from the name with low confidence; anything else is `unknown`, and says so.
pub fn resolve_base_name(name: &str) -> Resolution {
    let lower = name.to_ascii_lowercase();
    let compact: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let has = |s: &str| compact.contains(s);
    // Order matters: the more specific version first.
    let inferred: Option<&'static Terms> = if has("llama4") {
        terms::by_id("llama4")
    } else if has("llama33") {
        terms::by_id("llama3.3")
    } else if has("llama32") {
        terms::by_id("llama3.2")
    } else if has("llama31") {
        terms::by_id("llama3.1")
    } else if has("llama3") {
        terms::by_id("llama3")
    } else if has("llama2") {
        terms::by_id("llama2")
    } else if has("gemma") && !has("paligemma") {
        terms::by_id("gemma")
    } else {
        None
    };
    let t = inferred.unwrap_or(&UNKNOWN);
    let detail = match inferred {
        Some(t) => format!(
            "not available locally; every release of this family is under {} ({}), so it is inferred from the name only",
            t.name, t.id
        ),
        None => "not available locally, and its name does not determine a licence: its terms are unknown".into(),
    };
    Resolution {
        id: LicenseId(t.id),
        name: t.name.to_string(),
        confidence: Confidence::Low,
        evidence: vec![Evidence {
            source: format!("base model {name}"),
            detail,
        }],
        terms: t,
        base_models: Vec::new(),
        model_name: Some(name.to_string()),
        conflicts: Vec::new(),
        clauses: quote_clauses(t, None),
        licence_file: None,
        datasets: Vec::new(),
        task: None,
        warnings: Vec::new(),
        inferred_from_name: true,
    }
}

/// One link of a lineage chain.
#[derive(Clone, Debug, Serialize)]
pub struct ChainLink {
    /// The model's name, where known.
    pub model: Option<String>,
    /// Its licence.
    pub id: LicenseId,
    /// The licence's name.
    pub name: String,
    /// How sure its resolution is.
    pub confidence: Confidence,
    /// Resolved from the base model's name only.
    pub inferred_from_name: bool,
}

/// The terms that apply to a model once its whole lineage is taken into account: for each
/// dimension, the most restrictive of the chain; duties are the union.
#[derive(Clone, Debug, Serialize)]
pub struct EffectiveTerms {
    /// The chain: the model first, then its bases and adapters.
    pub chain: Vec<ChainLink>,
    /// Commercial use.
    pub commercial: Commercial,
    /// Training other models on outputs.
    pub outputs: Outputs,
    /// Incorporated use policies that flow down.
    pub use_policies: Vec<UsePolicy>,
    /// Derivative naming rules.
    pub naming: Vec<String>,
    /// Every duty of every licence in the chain.
    pub obligations: Vec<String>,
    /// Some licence requires adaptations to carry the same licence.
    pub share_alike: bool,
    /// Some link of the chain is unresolved.
    pub unknown: bool,
    /// Base models named by the chain but not part of it (their terms are unknown).
    pub unresolved_bases: Vec<String>,
    /// Confidence of the model's own resolution (the first link).
    pub confidence: Confidence,
    /// Notes for people: lineage caveats, regional exclusions, remote-restriction rights.
    pub notes: Vec<String>,
}

impl EffectiveTerms {
    /// The terms of one resolution alone, lineage not considered.
    pub fn of(r: &Resolution) -> EffectiveTerms {
        combine(std::slice::from_ref(r), false)
    }

    /// The licence ids of the chain, in order.
    pub fn ids(&self) -> Vec<LicenseId> {
        self.chain.iter().map(|l| l.id).collect()
    }
}

/// The most restrictive terms across a lineage chain: `chain[0]` is the model itself,
/// then its base models and adapters (resolved from the store, or by name with
/// [`resolve_base_name`]). A base model named by any link but absent from the chain makes
/// the result incomplete: it is listed in `unresolved_bases` and noted.
pub fn effective(chain: &[Resolution]) -> EffectiveTerms {
    combine(chain, true)
}

fn combine(chain: &[Resolution], lineage: bool) -> EffectiveTerms {
    let mut e = EffectiveTerms {
        chain: Vec::new(),
        commercial: Commercial::Yes,
        outputs: Outputs::Unrestricted,
        use_policies: Vec::new(),
        naming: Vec::new(),
        obligations: Vec::new(),
        share_alike: false,
        unknown: chain.is_empty(),
        unresolved_bases: Vec::new(),
        confidence: chain.first().map_or(Confidence::Low, |r| r.confidence),
        notes: Vec::new(),
    };
    if chain.is_empty() {
        e.commercial = Commercial::Unknown;
        e.outputs = Outputs::Unknown;
        e.notes.push("no licence was resolved".into());
    }
    for r in chain {
        let t = r.terms;
        e.chain.push(ChainLink {
            model: r.model_name.clone(),
            id: r.id,
            name: r.name.clone(),
            confidence: r.confidence,
            inferred_from_name: r.inferred_from_name,
        });
        e.commercial = e.commercial.most_restrictive(t.commercial);
        e.outputs = e.outputs.most_restrictive(t.outputs);
        if let Some(p) = t.use_policy {
            if !e.use_policies.contains(&p) {
                e.use_policies.push(p);
            }
        }
        if let Some(n) = t.naming {
            push_unique(&mut e.naming, n);
        }
        for o in t.obligations() {
            push_unique(&mut e.obligations, &o);
        }
        e.share_alike |= t.share_alike;
        for n in t.notes {
            push_unique(&mut e.notes, n);
        }
        if t.is_unknown() {
            e.unknown = true;
            let who = r.model_name.as_deref().unwrap_or("the model");
            push_unique(
                &mut e.notes,
                &format!("the licence of {who} is unknown, so the effective terms are unknown too"),
            );
        } else if r.inferred_from_name {
            let who = r.model_name.as_deref().unwrap_or("a base model");
            push_unique(
                &mut e.notes,
                &format!(
                    "{who}: licence inferred from its name only ({}); check its own licence file",
                    t.id
                ),
            );
        }
    }
    if lineage {
        let known = |b: &str| {
            chain
                .iter()
                .skip(1)
                .any(|r| r.model_name.as_deref().is_some_and(|m| same_model(m, b)))
        };
        for r in chain {
            for b in &r.base_models {
                if !known(b) {
                    push_unique(&mut e.unresolved_bases, b);
                }
            }
        }
        for b in e.unresolved_bases.clone() {
            push_unique(
                &mut e.notes,
                &format!("base model {b} is not in the chain: its licence is unknown, so the effective terms may be more restrictive than shown"),
            );
        }
    }
    e
}

/// `org/Name` and `Name` denote the same model; case does not matter.
fn same_model(a: &str, b: &str) -> bool {
    let last = |s: &str| {
        s.rsplit('/')
            .next()
            .unwrap_or(s)
            .trim()
            .to_ascii_lowercase()
    };
    a.eq_ignore_ascii_case(b) || last(a) == last(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> LicenseInputs {
        LicenseInputs {
            gguf_metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn single_declaration_is_medium() {
        let r = resolve(&meta(&[("general.license", "apache-2.0")]));
        assert_eq!(r.id, "apache-2.0");
        assert_eq!(r.confidence, Confidence::Medium);
    }

    #[test]
    fn nothing_is_unknown_and_says_so() {
        let r = resolve(&LicenseInputs::default());
        assert!(r.id.is_unknown());
        assert_eq!(r.confidence, Confidence::Low);
        assert!(!r.evidence.is_empty());
        let r = resolve(&meta(&[("general.license", "other")]));
        assert!(r.id.is_unknown());
        assert!(r.name.contains("other"), "{}", r.name);
    }

    #[test]
    fn disagreement_picks_the_most_restrictive_and_reports_it() {
        let mut i = meta(&[("general.license", "apache-2.0")]);
        i.model_card = Some("---\nlicense: cc-by-nc-4.0\n---\n".into());
        let r = resolve(&i);
        assert_eq!(r.id, "cc-by-nc-4.0");
        assert_eq!(r.confidence, Confidence::Low);
        assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
        assert!(r.conflicts[0].contains("apache-2.0"));
    }

    #[test]
    fn gguf_base_models_and_links() {
        let r = resolve(&meta(&[
            (
                "general.license.link",
                "https://llama.meta.com/llama3_1/license/",
            ),
            ("general.base_model.count", "2"),
            ("general.base_model.0.name", "Llama 3.1 8B"),
            ("general.base_model.0.organization", "Meta Llama"),
            (
                "general.base_model.0.repo_url",
                "https://huggingface.co/meta-llama/Llama-3.1-8B",
            ),
            ("general.base_model.1.name", "Other"),
            ("general.base_model.count.bogus", "x"),
        ]));
        assert_eq!(r.id, "llama3.1");
        assert_eq!(r.base_models, ["meta-llama/Llama-3.1-8B", "Other"]);
        let r = resolve(&meta(&[(
            "general.base_model.count",
            "18446744073709551615",
        )]));
        assert!(r.base_models.is_empty());
    }

    #[test]
    fn lineage_takes_the_most_restrictive_and_flags_missing_bases() {
        let mut i = meta(&[
            ("general.license", "apache-2.0"),
            ("general.name", "my-finetune"),
        ]);
        i.model_card =
            Some("---\nbase_model:\n- meta-llama/Llama-3.2-1B\n- someone/mystery\n---\n".into());
        let model = resolve(&i);
        let base = resolve_base_name("meta-llama/Llama-3.2-1B");
        assert_eq!(base.id, "llama3.2");
        let e = effective(&[model.clone(), base]);
        assert!(matches!(
            e.commercial,
            Commercial::MauCap {
                cap: 700_000_000,
                ..
            }
        ));
        assert_eq!(e.use_policies.len(), 1);
        assert_eq!(e.naming.len(), 1);
        assert_eq!(e.unresolved_bases, ["someone/mystery"]);
        assert!(e
            .notes
            .iter()
            .any(|n| n.contains("someone/mystery") && n.contains("unknown")));
        let mystery = resolve_base_name("someone/mystery");
        assert!(mystery.id.is_unknown());
        let e = effective(&[model, resolve_base_name("meta-llama/Llama-3.2-1B"), mystery]);
        assert!(e.unknown);
        assert!(e.unresolved_bases.is_empty());
        assert_eq!(e.commercial, Commercial::Unknown);
    }
}
