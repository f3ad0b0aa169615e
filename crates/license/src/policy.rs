//! Organisation policy: which licences are acceptable, the facts about the organisation
//! that licence conditions depend on, and the verdict for a model.
//!
//! A policy is a TOML file (given with `--policy FILE` or `FREEHOLD_POLICY`):
//!
//! ```toml
//! allow = ["apache-2.0", "mit", "gemma"]  # absent: every known licence not denied
//! deny = ["cc-by-nc-4.0"]
//! unknown = "review"                      # licence unresolved: deny | review | allow
//! unknown_base = "review"                 # a base model's licence unresolved
//! low_confidence = "review"               # the model's own licence resolved on weak or conflicting evidence
//! use_policy_flow_down = true             # acceptable-use policies that bind us and our users are acceptable
//! naming_rules = true                     # derivative-naming rules ("Llama ...") are acceptable
//! share_alike = true                      # share-alike licences are acceptable
//!
//! [organisation]
//! commercial_use = true
//! monthly_active_users = 2_000_000
//! trains_on_outputs = false
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::LicenseError;
use crate::resolve::{EffectiveTerms, Resolution};
use crate::terms::{self, group_thousands, Commercial, Outputs, Terms};

/// What to do with a model the policy cannot judge on its licence alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnknown {
    /// Refuse it.
    Deny,
    /// Ask a person.
    Review,
    /// Accept it.
    Allow,
}

impl fmt::Display for OnUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnUnknown::Deny => "deny",
            OnUnknown::Review => "review",
            OnUnknown::Allow => "allow",
        })
    }
}

/// Facts about the organisation that licence conditions depend on. `None` means not
/// stated: the condition is then listed as an obligation instead of checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Organisation {
    /// Its name, for reports.
    pub name: Option<String>,
    /// The organisation uses models commercially.
    pub commercial_use: Option<bool>,
    /// Monthly active users of its products and services.
    pub monthly_active_users: Option<u64>,
    /// It trains other models on model outputs.
    pub trains_on_outputs: Option<bool>,
}

/// A parsed policy.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    /// The file it came from; `None` for the built-in default.
    pub source: Option<PathBuf>,
    /// Allowed licence ids; `None` allows every known licence that is not denied.
    pub allow: Option<Vec<&'static str>>,
    /// Denied licence ids.
    pub deny: Vec<&'static str>,
    /// The model's licence is unresolved.
    pub unknown: OnUnknown,
    /// A base model's licence is unresolved, or a named base is missing from the chain.
    pub unknown_base: OnUnknown,
    /// The model's own licence was resolved with low confidence.
    pub low_confidence: OnUnknown,
    /// Acceptable-use policies that flow down are acceptable.
    pub use_policy_flow_down: bool,
    /// Derivative-naming rules are acceptable.
    pub naming_rules: bool,
    /// Share-alike licences are acceptable.
    pub share_alike: bool,
    /// Facts about the organisation.
    pub organisation: Organisation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allow: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    unknown: Option<OnUnknown>,
    unknown_base: Option<OnUnknown>,
    low_confidence: Option<OnUnknown>,
    use_policy_flow_down: Option<bool>,
    naming_rules: Option<bool>,
    share_alike: Option<bool>,
    #[serde(alias = "organization")]
    organisation: Option<RawOrganisation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    name: Option<String>,
    commercial_use: Option<bool>,
    monthly_active_users: Option<u64>,
    trains_on_outputs: Option<bool>,
}

/// Environment variable naming the policy file.
pub const POLICY_ENV: &str = "FREEHOLD_POLICY";

impl Policy {
    /// The built-in policy used when none is given: every known licence is allowed with
    /// its obligations listed; an unknown or weakly resolved licence needs review (never
    /// allowed silently); no organisation facts are assumed.
    pub fn permissive_default() -> Policy {
        Policy {
            source: None,
            allow: None,
            deny: Vec::new(),
            unknown: OnUnknown::Review,
            unknown_base: OnUnknown::Review,
            low_confidence: OnUnknown::Review,
            use_policy_flow_down: true,
            naming_rules: true,
            share_alike: true,
            organisation: Organisation::default(),
        }
    }

    /// Reads and validates a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, LicenseError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LicenseError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&text, path)
    }

    /// The policy named by `FREEHOLD_POLICY`, or [`Policy::permissive_default`] when it
    /// is unset or empty.
    pub fn from_env() -> Result<Policy, LicenseError> {
        match std::env::var_os(POLICY_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Policy::load(Path::new(&p)),
            None => Ok(Policy::permissive_default()),
        }
    }

    /// Parses policy text; `path` is only used to name the file in errors and verdicts.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, LicenseError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            let message = e.message().trim().to_string();
            // "unknown field `x`" names the key itself; other messages quote the value.
            let key = if message.starts_with("unknown field") {
                backticked(&message)
            } else {
                key_on_line(text, line)
            };
            LicenseError::Policy {
                path: path.to_path_buf(),
                line,
                column,
                key,
                message,
            }
        })?;
        let ids = |key: &str,
                   list: &[Spanned<String>]|
         -> Result<Vec<&'static str>, LicenseError> {
            list.iter()
                .map(|s| {
                    terms::by_alias(s.get_ref()).map(|t| t.id).ok_or_else(|| {
                        let (line, column) = line_col(text, s.span().start);
                        let known: Vec<&str> = terms::DATABASE.iter().filter(|t| !t.is_unknown()).map(|t| t.id).collect();
                        LicenseError::Policy {
                            path: path.to_path_buf(),
                            line,
                            column,
                            key: Some(key.to_string()),
                            message: format!(
                                "unknown licence \"{}\" (known: {}; unresolved licences are governed by `unknown`)",
                                s.get_ref(),
                                known.join(", ")
                            ),
                        }
                    })
                })
                .collect()
        };
        let allow = raw.allow.as_deref().map(|a| ids("allow", a)).transpose()?;
        let deny = ids("deny", &raw.deny)?;
        if let Some(a) = &allow {
            if let Some((i, both)) = deny.iter().enumerate().find(|(_, d)| a.contains(d)) {
                let (line, column) = line_col(text, raw.deny[i].span().start);
                return Err(LicenseError::Policy {
                    path: path.to_path_buf(),
                    line,
                    column,
                    key: Some("deny".into()),
                    message: format!("\"{both}\" is both allowed and denied"),
                });
            }
        }
        let d = Policy::permissive_default();
        let org = raw.organisation;
        Ok(Policy {
            source: Some(path.to_path_buf()),
            allow,
            deny,
            unknown: raw.unknown.unwrap_or(d.unknown),
            unknown_base: raw.unknown_base.unwrap_or(d.unknown_base),
            low_confidence: raw.low_confidence.unwrap_or(d.low_confidence),
            use_policy_flow_down: raw.use_policy_flow_down.unwrap_or(d.use_policy_flow_down),
            naming_rules: raw.naming_rules.unwrap_or(d.naming_rules),
            share_alike: raw.share_alike.unwrap_or(d.share_alike),
            organisation: Organisation {
                name: org.as_ref().and_then(|o| o.name.clone()),
                commercial_use: org.as_ref().and_then(|o| o.commercial_use),
                monthly_active_users: org.as_ref().and_then(|o| o.monthly_active_users),
                trains_on_outputs: org.as_ref().and_then(|o| o.trains_on_outputs),
            },
        })
    }

    /// How verdicts name this policy: `policy FILE` or `the built-in default policy`.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(p) => format!("policy {}", p.display()),
            None => "the built-in default policy".into(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string()).filter(|k| !k.is_empty())
}

fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && !k.starts_with('[')).then(|| k.to_string())
}

/// The verdict of a policy on a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    /// Acceptable, with the duties that come with it.
    Allow {
        /// What the organisation must do, one sentence each.
        obligations: Vec<String>,
    },
    /// A person must decide.
    Review {
        /// Why, naming the licence, the policy rule and the file.
        reason: String,
    },
    /// Not acceptable.
    Deny {
        /// Why, naming the licence, the policy rule and the file.
        reason: String,
    },
}

/// A recorded exception: one model allowed despite the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Override {
    /// Who decided.
    pub who: String,
    /// When (RFC 3339).
    pub when: String,
    /// Why.
    pub reason: String,
}

/// Anything a policy can judge: a single [`Resolution`] (its own terms only) or the
/// [`EffectiveTerms`] of a lineage.
pub trait Subject {
    /// The terms to judge.
    fn effective_terms(&self) -> EffectiveTerms;
}

impl Subject for Resolution {
    fn effective_terms(&self) -> EffectiveTerms {
        EffectiveTerms::of(self)
    }
}

impl Subject for EffectiveTerms {
    fn effective_terms(&self) -> EffectiveTerms {
        self.clone()
    }
}

/// Judges `subject` against `policy`.
pub fn evaluate<S: Subject + ?Sized>(policy: &Policy, subject: &S) -> Decision {
    judge(policy, &subject.effective_terms())
}

/// [`evaluate`], then an override (if any) turns a deny or review into an allow whose
/// first obligation records who allowed it, when, why, and what the policy alone said.
pub fn evaluate_with_override<S: Subject + ?Sized>(
    policy: &Policy,
    subject: &S,
    over: Option<&Override>,
) -> Decision {
    let e = subject.effective_terms();
    let d = judge(policy, &e);
    match (d, over) {
        (Decision::Allow { obligations }, _) => Decision::Allow { obligations },
        (d @ (Decision::Deny { .. } | Decision::Review { .. }), Some(o)) => {
            let alone = match &d {
                Decision::Deny { reason } => format!("deny: {reason}"),
                Decision::Review { reason } => format!("review: {reason}"),
                Decision::Allow { .. } => unreachable!("allow handled above"),
            };
            let mut obligations = vec![format!(
                "allowed by an override recorded by {} at {}: {} (without it, {alone})",
                o.who, o.when, o.reason
            )];
            obligations.extend(e.obligations.iter().cloned());
            Decision::Allow { obligations }
        }
        (d, None) => d,
    }
}

fn link_label(model: Option<&str>, name: &str, id: &str) -> String {
    match model {
        Some(m) => format!("{name} ({id}) of {m}"),
        None => format!("{name} ({id})"),
    }
}

fn judge(policy: &Policy, e: &EffectiveTerms) -> Decision {
    let pol = policy.describe();
    let org = &policy.organisation;
    let mut deny: Vec<String> = Vec::new();
    let mut review: Vec<String> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    let mut on = |action: OnUnknown,
                  reason: String,
                  deny: &mut Vec<String>,
                  review: &mut Vec<String>| match action {
        OnUnknown::Deny => deny.push(reason),
        OnUnknown::Review => review.push(reason),
        OnUnknown::Allow => extra.push(format!("accepted although {reason}")),
    };

    if e.chain.is_empty() {
        on(
            policy.unknown,
            format!(
                "no licence was resolved; {pol} says unknown = \"{}\"",
                policy.unknown
            ),
            &mut deny,
            &mut review,
        );
    }
    for (i, link) in e.chain.iter().enumerate() {
        let label = link_label(link.model.as_deref(), &link.name, link.id.as_str());
        if link.id.is_unknown() {
            let (rule, action) = if i == 0 {
                ("unknown", policy.unknown)
            } else {
                ("unknown_base", policy.unknown_base)
            };
            let who =
                link.model
                    .as_deref()
                    .unwrap_or(if i == 0 { "the model" } else { "a base model" });
            on(
                action,
                format!("the licence of {who} is unknown; {pol} says {rule} = \"{action}\""),
                &mut deny,
                &mut review,
            );
            continue;
        }
        if policy.deny.contains(&link.id.as_str()) {
            deny.push(format!("{label} is denied by {pol} (key `deny`)"));
            continue;
        }
        if let Some(allow) = &policy.allow {
            if !allow.contains(&link.id.as_str()) {
                deny.push(format!(
                    "{label} is not among the licences allowed by {pol} (key `allow`: {})",
                    if allow.is_empty() {
                        "none".to_string()
                    } else {
                        allow.join(", ")
                    }
                ));
            }
        }
    }
    for b in &e.unresolved_bases {
        on(
            policy.unknown_base,
            format!(
                "base model {b} has no resolved licence; {pol} says unknown_base = \"{}\"",
                policy.unknown_base
            ),
            &mut deny,
            &mut review,
        );
    }
    if let Some(first) = e.chain.first() {
        if !first.id.is_unknown() && first.confidence == crate::Confidence::Low {
            on(
                policy.low_confidence,
                format!(
                    "the licence {} was resolved with low confidence (weak or conflicting evidence); {pol} says low_confidence = \"{}\"",
                    link_label(first.model.as_deref(), &first.name, first.id.as_str()),
                    policy.low_confidence
                ),
                &mut deny,
                &mut review,
            );
        }
    }

    let names = |f: &dyn Fn(&Terms) -> bool| -> String {
        let v: Vec<String> = e
            .chain
            .iter()
            .filter_map(|l| {
                terms::by_id(l.id.as_str())
                    .filter(|t| f(t))
                    .map(|t| format!("{} ({})", t.name, t.id))
            })
            .collect();
        v.join(", ")
    };
    if org.commercial_use == Some(true) {
        match e.commercial {
            Commercial::No => deny.push(format!(
                "{} does not permit commercial use, and {pol} declares commercial_use = true",
                names(&|t| t.commercial == Commercial::No)
            )),
            Commercial::MauCap { cap, holder } => match org.monthly_active_users {
                Some(mau) if mau > cap => deny.push(format!(
                    "{} permits commercial use only up to {} monthly active users (above that a licence from {holder} is needed), and {pol} declares monthly_active_users = {}",
                    names(&|t| matches!(t.commercial, Commercial::MauCap { .. })),
                    group_thousands(cap),
                    group_thousands(mau)
                )),
                Some(_) => {}
                None => extra.push(format!(
                    "commercial use is allowed only up to {} monthly active users ({pol} does not state monthly_active_users)",
                    group_thousands(cap)
                )),
            },
            Commercial::Yes | Commercial::Unknown => {}
        }
    }
    if !policy.use_policy_flow_down && !e.use_policies.is_empty() {
        let aups: Vec<&str> = e.use_policies.iter().map(|p| p.name).collect();
        deny.push(format!(
            "{} incorporates {}, which binds you and everyone you distribute to, and {pol} sets use_policy_flow_down = false",
            names(&|t| t.use_policy.is_some()),
            aups.join(" and ")
        ));
    }
    if !policy.naming_rules && !e.naming.is_empty() {
        deny.push(format!(
            "{} imposes a naming rule on derived models, and {pol} sets naming_rules = false",
            names(&|t| t.naming.is_some())
        ));
    }
    if !policy.share_alike && e.share_alike {
        deny.push(format!(
            "{} requires adaptations to carry the same licence, and {pol} sets share_alike = false",
            names(&|t| t.share_alike)
        ));
    }
    if org.trains_on_outputs == Some(true) {
        if let Outputs::Prohibited(what) = e.outputs {
            deny.push(format!(
                "{} restricts training on outputs ({what}), and {pol} declares trains_on_outputs = true",
                names(&|t| matches!(t.outputs, Outputs::Prohibited(_)))
            ));
        }
    }

    if !deny.is_empty() {
        return Decision::Deny {
            reason: deny.join("; "),
        };
    }
    if !review.is_empty() {
        return Decision::Review {
            reason: review.join("; "),
        };
    }
    let mut obligations = e.obligations.clone();
    obligations.extend(extra);
    Decision::Allow { obligations }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_file_line_and_key() {
        let p = Path::new("/etc/freehold/policy.toml");
        let e = Policy::parse(
            "allow = [\"mit\"]\n\n[organisation]\ncommercial_use = \"yes\"\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/freehold/policy.toml")
                && e.contains("line 4")
                && e.contains("commercial_use"),
            "{e}"
        );
        let e = Policy::parse("alow = [\"mit\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("`alow`"), "{e}");
        let e = Policy::parse("allow = [\"mit\",\n  \"not-a-licence\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("key `allow`") && e.contains("not-a-licence"),
            "{e}"
        );
        let e = Policy::parse("unknown = \"maybe\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("unknown"), "{e}");
        let e = Policy::parse("allow = [\"mit\"]\ndeny = [\"MIT\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("both"), "{e}");
        let e = Policy::parse("allow = [\n", p).unwrap_err().to_string();
        assert!(e.contains("policy.toml: line"), "{e}");
        let e = Policy::parse("[organisation]\nmonthly_active_users = -5\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("monthly_active_users"),
            "{e}"
        );
    }

    #[test]
    fn empty_policy_is_the_default_with_a_source() {
        let p = Policy::parse("", Path::new("p.toml")).unwrap();
        assert_eq!(p.unknown, OnUnknown::Review);
        assert!(p.allow.is_none());
        assert_eq!(p.describe(), "policy p.toml");
        let p = Policy::parse(
            "[organization]\ncommercial_use = true\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(p.organisation.commercial_use, Some(true));
    }
}
