//! Issue 4's acceptance cases on the real licence texts that ship with the test models.

use std::collections::BTreeMap;
use std::path::Path;

use license::{
    effective, evaluate, evaluate_with_override, resolve, resolve_base_name, Commercial,
    Confidence, Decision, LicenseInputs, Override, Policy, Topic,
};

fn read(rel: &str) -> String {
    let p = testdata::require(rel, "licence-data");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `general.*` metadata of the Gemma 3 270M GGUF, as `freehold inspect` shows it.
fn gemma_metadata() -> BTreeMap<String, String> {
    [
        ("general.architecture", "gemma3"),
        ("general.name", "Gemma 3 270m"),
        ("general.basename", "gemma-3"),
        ("general.size_label", "270M"),
        ("general.license", "gemma"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn gemma_inputs() -> LicenseInputs {
    LicenseInputs {
        gguf_metadata: gemma_metadata(),
        model_card: Some(read("licenses/gemma3/README.upstream.md")),
        files: vec![
            (
                "GEMMA_TERMS.html".into(),
                read("licenses/gemma3/GEMMA_TERMS.html"),
            ),
            ("NOTICE.md".into(), read("licenses/gemma3/NOTICE.md")),
        ],
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text, Path::new("/etc/freehold/policy.toml")).expect("policy parses")
}

#[test]
fn gemma_terms_text_resolves_to_gemma_with_prohibited_use_flow_down() {
    let r = resolve(&gemma_inputs());
    assert_eq!(r.id, "gemma", "{r:#?}");
    assert_eq!(r.name, "Gemma Terms of Use");
    assert_eq!(r.confidence, Confidence::High);
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    // Three independent sources agree: the GGUF key, the card and the terms page itself.
    assert!(r
        .evidence
        .iter()
        .any(|e| e.source == "gguf general.license"));
    assert!(r
        .evidence
        .iter()
        .any(|e| e.source.contains("front matter license")));
    let text = r
        .evidence
        .iter()
        .find(|e| e.source.starts_with("GEMMA_TERMS.html (fingerprint"))
        .unwrap_or_else(|| panic!("no fingerprint evidence: {:#?}", r.evidence));
    let score: f64 = text.source["GEMMA_TERMS.html (fingerprint ".len()..text.source.len() - 1]
        .parse()
        .unwrap();
    assert!(score >= 0.9, "{}", text.source);

    let aup = r
        .terms
        .use_policy
        .expect("Gemma incorporates its prohibited use policy");
    assert_eq!(aup.name, "Gemma Prohibited Use Policy");
    assert!(aup.flow_down.contains("distribute"));
    assert_eq!(r.terms.commercial, Commercial::Yes);
    assert_eq!(r.base_models, ["google/gemma-3-270m"]);

    // The operative clauses are quoted from the model's own terms file.
    assert_eq!(r.licence_file.as_deref(), Some("GEMMA_TERMS.html"));
    let aup_clause = r
        .clauses
        .iter()
        .find(|c| c.topic == Topic::UsePolicy)
        .unwrap();
    let quote = aup_clause
        .quote
        .as_deref()
        .expect("use-policy clause quoted");
    assert!(quote.contains("Gemma Prohibited Use Policy"), "{quote}");
    assert!(
        quote.starts_with("You must not use any of the Gemma Services"),
        "{quote}"
    );
    let notice = r.clauses.iter().find(|c| c.topic == Topic::Notice).unwrap();
    assert!(
        notice
            .quote
            .as_deref()
            .unwrap()
            .contains("ai.google.dev/gemma/terms"),
        "{:?}",
        notice.quote
    );
    for c in &r.clauses {
        assert!(
            c.quote.is_some(),
            "clause {:?} not found in the terms page",
            c.summary
        );
    }
}

#[test]
fn policy_allowing_only_apache_and_mit_denies_gemma_naming_it() {
    let r = resolve(&gemma_inputs());
    let p = policy("allow = [\"apache-2.0\", \"mit\"]\nunknown = \"deny\"\n");
    match evaluate(&p, &r) {
        Decision::Deny { reason } => {
            assert!(reason.contains("Gemma Terms of Use (gemma)"), "{reason}");
            assert!(reason.contains("/etc/freehold/policy.toml"), "{reason}");
            assert!(reason.contains("`allow`"), "{reason}");
        }
        other => panic!("expected deny, got {other:?}"),
    }
    // The same through the lineage: the base named by the card is inferred from its name.
    let chain = [r.clone(), resolve_base_name("google/gemma-3-270m")];
    assert!(matches!(
        evaluate(&p, &effective(&chain)),
        Decision::Deny { .. }
    ));

    // An override recorded for this model allows it, and says who, when, why and what
    // the policy alone decided.
    let o = Override {
        who: "alice".into(),
        when: "2026-11-22T17:00:00Z".into(),
        reason: "approved by legal, ticket 42".into(),
    };
    match evaluate_with_override(&p, &r, Some(&o)) {
        Decision::Allow { obligations } => {
            assert!(obligations[0].contains("alice") && obligations[0].contains("ticket 42"));
            assert!(
                obligations[0].contains("without it, deny"),
                "{}",
                obligations[0]
            );
        }
        other => panic!("expected allow, got {other:?}"),
    }
}

#[test]
fn policy_allowing_gemma_lists_the_obligations() {
    let r = resolve(&gemma_inputs());
    let chain = [r, resolve_base_name("google/gemma-3-270m")];
    let e = effective(&chain);
    assert!(e.unresolved_bases.is_empty());
    let p = policy(
        "allow = [\"apache-2.0\", \"mit\", \"gemma\"]\n[organisation]\ncommercial_use = true\nmonthly_active_users = 5_000_000\n",
    );
    match evaluate(&p, &e) {
        Decision::Allow { obligations } => {
            let all = obligations.join("\n");
            assert!(all.contains("Gemma Prohibited Use Policy"), "{all}");
            assert!(all.contains("copy of the Gemma Terms of Use"), "{all}");
            assert!(all.contains("Notice"), "{all}");
        }
        other => panic!("expected allow, got {other:?}"),
    }
    // Refusing acceptable-use flow-down refuses Gemma, naming the rule.
    let p = policy("use_policy_flow_down = false\n");
    match evaluate(&p, &e) {
        Decision::Deny { reason } => {
            assert!(
                reason.contains("use_policy_flow_down = false") && reason.contains("Gemma"),
                "{reason}"
            )
        }
        other => panic!("expected deny, got {other:?}"),
    }
}

#[test]
fn smollm2_resolves_to_apache_from_general_license() {
    let meta: BTreeMap<String, String> = [
        ("general.architecture", "llama"),
        ("general.name", "Smollm2 135M 8k Lc100K Mix1 Ep2"),
        ("general.organization", "HuggingFaceTB"),
        ("general.license", "apache-2.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = resolve(&LicenseInputs {
        gguf_metadata: meta.clone(),
        ..Default::default()
    });
    assert_eq!(r.id, "apache-2.0");
    assert_eq!(r.terms.spdx, Some("Apache-2.0"));
    assert_eq!(r.confidence, Confidence::Medium, "one declaration alone");
    assert_eq!(r.evidence[0].source, "gguf general.license");
    // With its wheel's LICENSE the text agrees and confidence is high.
    let r = resolve(&LicenseInputs {
        gguf_metadata: meta,
        model_card: None,
        files: vec![("LICENSE".into(), read("licenses/smollm2/LICENSE"))],
    });
    assert_eq!(r.id, "apache-2.0");
    assert_eq!(r.confidence, Confidence::High);
    let p = policy("allow = [\"apache-2.0\", \"mit\"]\n[organisation]\ncommercial_use = true\n");
    assert!(matches!(evaluate(&p, &r), Decision::Allow { .. }));
}

#[test]
fn policies_check_organisation_facts() {
    let llama = resolve(&LicenseInputs {
        model_card: Some(
            "---\nlicense: llama3.2\nbase_model: meta-llama/Llama-3.2-1B\n---\n".into(),
        ),
        ..Default::default()
    });
    assert_eq!(llama.id, "llama3.2");
    let big = policy("[organisation]\ncommercial_use = true\nmonthly_active_users = 800_000_000\n");
    match evaluate(&big, &llama) {
        Decision::Deny { reason } => assert!(
            reason.contains("700,000,000") && reason.contains("800,000,000"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let small = policy("[organisation]\ncommercial_use = true\nmonthly_active_users = 1000\n");
    match evaluate(&small, &llama) {
        Decision::Allow { obligations } => {
            let all = obligations.join("\n");
            assert!(
                all.contains("Built with Llama") && all.contains("beginning with \"Llama\""),
                "{all}"
            );
        }
        other => panic!("{other:?}"),
    }
    let unstated = policy("[organisation]\ncommercial_use = true\n");
    match evaluate(&unstated, &llama) {
        Decision::Allow { obligations } => assert!(obligations
            .iter()
            .any(|o| o.contains("does not state monthly_active_users"))),
        other => panic!("{other:?}"),
    }
    let no_names = policy("naming_rules = false\n");
    assert!(matches!(evaluate(&no_names, &llama), Decision::Deny { .. }));

    let nc = resolve(&LicenseInputs {
        model_card: Some("---\nlicense: cc-by-nc-4.0\n---\n".into()),
        ..Default::default()
    });
    match evaluate(&big, &nc) {
        Decision::Deny { reason } => assert!(
            reason.contains("does not permit commercial use"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let l2 = resolve(&LicenseInputs {
        model_card: Some("---\nlicense: llama2\n---\n".into()),
        ..Default::default()
    });
    let trains = policy("[organisation]\ntrains_on_outputs = true\n");
    assert!(matches!(evaluate(&trains, &l2), Decision::Deny { .. }));
    let l3 = resolve(&LicenseInputs {
        model_card: Some("---\nlicense: llama3\n---\n".into()),
        ..Default::default()
    });
    assert!(
        matches!(evaluate(&trains, &l3), Decision::Allow { .. }),
        "Llama 3 allows training on outputs with naming"
    );
}

#[test]
fn unknown_is_never_allowed_silently() {
    let r = resolve(&LicenseInputs::default());
    assert!(r.id.is_unknown());
    assert!(matches!(
        evaluate(&Policy::permissive_default(), &r),
        Decision::Review { .. }
    ));
    match evaluate(&policy("unknown = \"deny\"\n"), &r) {
        Decision::Deny { reason } => assert!(
            reason.contains("unknown = \"deny\"") && reason.contains("policy.toml"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    match evaluate(&policy("unknown = \"allow\"\n"), &r) {
        Decision::Allow { obligations } => assert!(
            obligations.iter().any(|o| o.contains("unknown")),
            "{obligations:?}"
        ),
        other => panic!("{other:?}"),
    }
    // A known model whose base is unknown is unknown-ish: reviewed by default, and said so.
    let tuned = resolve(&LicenseInputs {
        model_card: Some("---\nlicense: apache-2.0\nbase_model: someone/mystery-7b\n---\n".into()),
        ..Default::default()
    });
    let e = effective(std::slice::from_ref(&tuned));
    assert_eq!(e.unresolved_bases, ["someone/mystery-7b"]);
    match evaluate(&Policy::permissive_default(), &e) {
        Decision::Review { reason } => assert!(reason.contains("someone/mystery-7b"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let e = effective(&[tuned, resolve_base_name("someone/mystery-7b")]);
    assert!(e.unknown);
    assert!(matches!(
        evaluate(&policy("unknown_base = \"deny\"\n"), &e),
        Decision::Deny { .. }
    ));
}

#[test]
fn malformed_front_matter_never_panics_and_warns() {
    for card in [
        "---\nlicense: [apache-2.0\n",
        "---\n\u{0}\u{feff}: :\n---",
        "---\nlicense: \"gemma\nbase_model:\n  - \n  -\n---\n",
        "---\n- just\n- a list\n---\n",
        "---\nlicense: |\n",
        "---",
    ] {
        let r = resolve(&LicenseInputs {
            model_card: Some(card.into()),
            ..Default::default()
        });
        let _ = format!("{r:?}");
    }
    let r = resolve(&LicenseInputs {
        model_card: Some("---\nlicense: \"gemma\nno colon here\n".into()),
        ..Default::default()
    });
    assert_eq!(r.id, "gemma");
    assert!(
        r.warnings.iter().any(|w| w.contains("line 2")),
        "{:?}",
        r.warnings
    );
}
