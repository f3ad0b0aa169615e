//! Licence governance for models: which licence a model is under (with the evidence and a
//! confidence), what its terms require, the most restrictive terms across its lineage,
//! whether an organisation's policy allows it, and a CycloneDX ML-BOM describing it.
//!
//! Everything here is a policy check against an embedded terms database, not legal advice;
//! every report that reaches a person says so ([`DISCLAIMER`]).
//!
//! The crate knows nothing of the store, the engine or HTTP: callers hand it metadata and
//! file texts ([`LicenseInputs`]) and get plain data back.

pub mod bom;
mod error;
pub mod fingerprint;
pub mod frontmatter;
pub mod policy;
mod resolve;
pub mod terms;
pub mod text;

pub use bom::{bom, bom_with, BomFile, BomInput, FileRole};
pub use error::LicenseError;
pub use policy::{
    evaluate, evaluate_with_override, Decision, OnUnknown, Organisation, Override, Policy,
};
pub use resolve::{
    effective, resolve, resolve_base_name, Confidence, EffectiveTerms, Evidence, LicenseId,
    LicenseInputs, QuotedClause, Resolution,
};
pub use terms::{Commercial, Outputs, Terms, Topic, UsePolicy};

/// The sentence every report for people carries.
pub const DISCLAIMER: &str =
    "This is an automated policy check against freehold's terms database, not legal advice.";
