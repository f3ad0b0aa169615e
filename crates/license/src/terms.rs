//! The embedded terms database: for each licence, the structured terms in our own words,
//! the aliases and links by which model metadata names it, the distinctive phrases that
//! identify its text, and the key phrases that locate its operative clauses in a copy.
//!
//! No licence text is embedded. Phrases are short quotations of a few words from each
//! licence's own text (source: the licence named by the entry, at the URL in `url`); the
//! summaries are ours. The facts (user caps, naming rules, notice wording) were taken from
//! the licence texts published by their authors.

use serde::Serialize;

/// Whether commercial use is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Commercial {
    /// Allowed without a size condition.
    Yes,
    /// Allowed while the licensee's products have at most `cap` monthly active users;
    /// above it a separate licence must be requested from `holder`.
    MauCap {
        /// The monthly-active-user threshold.
        cap: u64,
        /// Who grants the licence needed above the cap.
        holder: &'static str,
    },
    /// Not allowed.
    No,
    /// Nothing is known (unresolved licence).
    Unknown,
}

impl Commercial {
    /// Ordering by restriction: larger is more restrictive.
    fn rank(self) -> (u8, u64) {
        match self {
            Commercial::Yes => (0, 0),
            // A smaller cap is the more restrictive one.
            Commercial::MauCap { cap, .. } => (1, u64::MAX - cap),
            Commercial::No => (2, 0),
            Commercial::Unknown => (3, 0),
        }
    }

    /// The more restrictive of two.
    pub fn most_restrictive(self, other: Commercial) -> Commercial {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// One line for people.
    pub fn describe(self) -> String {
        match self {
            Commercial::Yes => "allowed".into(),
            Commercial::MauCap { cap, holder } => format!(
                "allowed while your products have at most {} monthly active users; above that a licence must be requested from {holder}",
                group_thousands(cap)
            ),
            Commercial::No => "not allowed".into(),
            Commercial::Unknown => "unknown (licence not resolved)".into(),
        }
    }
}

/// `1234567` -> `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether the model's outputs may be used to train other models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Outputs {
    /// The licence places no condition on it.
    Unrestricted,
    /// Allowed with the stated condition.
    Conditional(&'static str),
    /// Not allowed (beyond the stated exception).
    Prohibited(&'static str),
    /// Nothing is known.
    Unknown,
}

impl Outputs {
    fn rank(self) -> u8 {
        match self {
            Outputs::Unrestricted => 0,
            Outputs::Conditional(_) => 1,
            Outputs::Prohibited(_) => 2,
            Outputs::Unknown => 3,
        }
    }

    /// The more restrictive of two.
    pub fn most_restrictive(self, other: Outputs) -> Outputs {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// One line for people.
    pub fn describe(self) -> String {
        match self {
            Outputs::Unrestricted => "no restriction in the licence".into(),
            Outputs::Conditional(c) => format!("allowed, on condition: {c}"),
            Outputs::Prohibited(c) => format!("restricted: {c}"),
            Outputs::Unknown => "unknown (licence not resolved)".into(),
        }
    }
}

/// An acceptable-use (prohibited-use) policy that the licence incorporates, so it binds
/// the licensee and must be passed on to everyone the model is distributed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UsePolicy {
    /// Its title.
    pub name: &'static str,
    /// Where its authoritative copy is published.
    pub url: &'static str,
    /// What flows down, in our words.
    pub flow_down: &'static str,
}

/// What a clause is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    /// The grant of rights.
    Grant,
    /// Commercial use and its conditions.
    Commercial,
    /// Conditions on passing the model on.
    Redistribution,
    /// NOTICE files and required notice text.
    Notice,
    /// Credit to the authors, "Built with ..." displays.
    Attribution,
    /// Names of derived models.
    Naming,
    /// Incorporated use restrictions.
    UsePolicy,
    /// Using outputs to train other models.
    Outputs,
    /// Adaptations under the same licence.
    ShareAlike,
    /// Patent terms.
    Patent,
    /// Trademarks.
    Trademark,
}

impl Topic {
    /// Short label for text output.
    pub fn label(self) -> &'static str {
        match self {
            Topic::Grant => "grant",
            Topic::Commercial => "commercial use",
            Topic::Redistribution => "redistribution",
            Topic::Notice => "notice",
            Topic::Attribution => "attribution",
            Topic::Naming => "derivative naming",
            Topic::UsePolicy => "use policy",
            Topic::Outputs => "outputs",
            Topic::ShareAlike => "share-alike",
            Topic::Patent => "patents",
            Topic::Trademark => "trademarks",
        }
    }
}

/// One operative clause: where to find it in a copy of the licence, and what it means.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Clause {
    /// What it is about.
    pub topic: Topic,
    /// A few words of the clause itself; the sentence of the model's own licence file that
    /// contains them is the one quoted.
    pub key_phrase: &'static str,
    /// What it requires, in our words.
    pub summary: &'static str,
}

/// A phrase that identifies a licence's text, with its weight in the match score.
#[derive(Clone, Copy, Debug)]
pub struct Phrase(pub &'static str, pub u8);

/// Structured terms of one licence.
#[derive(Debug, Serialize)]
pub struct Terms {
    /// Stable id, as printed and as used in policy files (e.g. `apache-2.0`, `llama3.1`).
    pub id: &'static str,
    /// Human name.
    pub name: &'static str,
    /// SPDX identifier, where SPDX lists one.
    pub spdx: Option<&'static str>,
    /// Where the authoritative text is published.
    pub url: &'static str,
    /// Family (`llama`, `gemma`, `creative-commons`...), for lineage notes.
    pub family: &'static str,
    /// Commercial use.
    pub commercial: Commercial,
    /// Redistribution conditions, one sentence each.
    pub redistribution: &'static [&'static str],
    /// Attribution duties (credits, "Built with ..." displays).
    pub attribution: &'static [&'static str],
    /// Naming rule for derived models, if any.
    pub naming: Option<&'static str>,
    /// Incorporated use policy, if any.
    pub use_policy: Option<UsePolicy>,
    /// Training other models on outputs.
    pub outputs: Outputs,
    /// Adaptations must carry the same licence.
    pub share_alike: bool,
    /// Other notes worth knowing (remote restriction rights, regional exclusions...).
    pub notes: &'static [&'static str],
    /// Operative clauses to quote.
    pub clauses: &'static [Clause],
    /// Names by which metadata refers to it, compared with punctuation and case removed.
    #[serde(skip)]
    pub aliases: &'static [&'static str],
    /// Fragments of links to its text, lowercase, without scheme or `www.`.
    #[serde(skip)]
    pub links: &'static [&'static str],
    /// Phrases identifying its text.
    #[serde(skip)]
    pub phrases: &'static [Phrase],
}

impl Terms {
    /// Whether this is the placeholder for an unresolved licence.
    pub fn is_unknown(&self) -> bool {
        self.id == UNKNOWN.id
    }

    /// How restrictive the terms are, for choosing between conflicting evidence: larger is
    /// more restrictive, and the unknown placeholder is the most restrictive of all.
    pub fn restrictiveness(&self) -> u32 {
        if self.is_unknown() {
            return u32::MAX;
        }
        let commercial = match self.commercial {
            Commercial::Yes => 0,
            Commercial::MauCap { .. } => 100,
            Commercial::No => 400,
            Commercial::Unknown => 800,
        };
        let outputs = u32::from(self.outputs.rank()) * 20;
        commercial
            + outputs
            + if self.use_policy.is_some() { 60 } else { 0 }
            + if self.share_alike { 50 } else { 0 }
            + if self.naming.is_some() { 15 } else { 0 }
            + self.attribution.len() as u32 * 3
            + self.redistribution.len() as u32
    }

    /// The duties a user of a model under these terms takes on, one sentence each.
    pub fn obligations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Commercial::MauCap { .. } = self.commercial {
            out.push(format!(
                "{}: commercial use {}",
                self.name,
                self.commercial.describe()
            ));
        }
        for r in self.redistribution {
            out.push(format!("{}: {r}", self.name));
        }
        for a in self.attribution {
            out.push(format!("{}: {a}", self.name));
        }
        if let Some(n) = self.naming {
            out.push(format!("{}: {n}", self.name));
        }
        if let Some(p) = self.use_policy {
            out.push(format!(
                "{}: {} ({}): {}",
                self.name, p.name, p.url, p.flow_down
            ));
        }
        match self.outputs {
            Outputs::Conditional(c) => out.push(format!("{}: training on outputs: {c}", self.name)),
            Outputs::Prohibited(c) => out.push(format!("{}: training on outputs: {c}", self.name)),
            Outputs::Unrestricted | Outputs::Unknown => {}
        }
        out
    }
}

/// The placeholder for a licence that could not be resolved.
pub static UNKNOWN: Terms = Terms {
    id: "unknown",
    name: "unknown licence",
    spdx: None,
    url: "",
    family: "unknown",
    commercial: Commercial::Unknown,
    redistribution: &[],
    attribution: &[],
    naming: None,
    use_policy: None,
    outputs: Outputs::Unknown,
    share_alike: false,
    notes: &["No licence could be identified: its terms are unknown and may forbid any use."],
    clauses: &[],
    aliases: &[],
    links: &[],
    phrases: &[],
};

const LLAMA_MAU: Commercial = Commercial::MauCap {
    cap: 700_000_000,
    holder: "Meta",
};

const LLAMA_COMMERCIAL_CLAUSE: Clause = Clause {
    topic: Topic::Commercial,
    key_phrase: "700 million monthly active users",
    summary: "above 700 million monthly active users (counted on the release date) a separate licence from Meta is needed",
};

const LLAMA_AUP_CLAUSE: Clause = Clause {
    topic: Topic::UsePolicy,
    key_phrase: "acceptable use policy for the llama materials",
    summary: "the Acceptable Use Policy is incorporated; use must comply with it",
};

const LLAMA_COPY_CLAUSE: Clause = Clause {
    topic: Topic::Redistribution,
    key_phrase: "provide a copy of this agreement",
    summary: "a copy of the agreement goes with every distribution",
};

const LLAMA3X_DISPLAY_CLAUSE: Clause = Clause {
    topic: Topic::Attribution,
    key_phrase: "prominently display built with",
    summary: "products and services using the model display \"Built with Llama\"",
};

const LLAMA3X_NAMING_CLAUSE: Clause = Clause {
    topic: Topic::Naming,
    key_phrase: "at the beginning of any such ai model name",
    summary: "a distributed model created or improved with the materials (or their outputs) has a name beginning with \"Llama\"",
};

const LLAMA3X_REDISTRIBUTION: &[&str] = &[
    "give a copy of the licence agreement with every distribution of the model or a derivative",
    "ship a \"Notice\" text file with the attribution notice the licence prescribes (\"... is licensed under the ... Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\")",
];

const LLAMA3X_ATTRIBUTION: &[&str] = &[
    "display \"Built with Llama\" prominently on a related website, user interface, blog post, about page or product documentation of products or services that use the model",
];

const LLAMA3X_NAMING: &str =
    "a model created, trained, fine-tuned or improved with the model or its outputs and then distributed must have a name beginning with \"Llama\"";

const LLAMA3X_OUTPUTS: Outputs = Outputs::Conditional(
    "a model improved with the outputs and then distributed must have a name beginning with \"Llama\" (and the licence terms apply to it)",
);

const LLAMA_SHARED_PHRASES: [Phrase; 5] = [
    Phrase("llama materials means collectively", 1),
    Phrase(
        "non-exclusive, worldwide, non-transferable and royalty-free limited license under",
        1,
    ),
    Phrase("copyright meta platforms inc all rights reserved", 1),
    Phrase(
        "greater than 700 million monthly active users in the preceding calendar month",
        1,
    ),
    Phrase(
        "you must request license from meta which meta may grant to you in its sole discretion",
        1,
    ),
];

macro_rules! llama3x {
    ($id:expr, $name:expr, $url:expr, $aup_name:expr, $aup_url:expr, $notes:expr, $aliases:expr, $links:expr, $title:expr, $release:expr, $notice:expr) => {
        Terms {
            id: $id,
            name: $name,
            spdx: None,
            url: $url,
            family: "llama",
            commercial: LLAMA_MAU,
            redistribution: LLAMA3X_REDISTRIBUTION,
            attribution: LLAMA3X_ATTRIBUTION,
            naming: Some(LLAMA3X_NAMING),
            use_policy: Some(UsePolicy {
                name: $aup_name,
                url: $aup_url,
                flow_down: "incorporated into the licence: you must comply with it, and anyone you distribute the model to is bound by it too",
            }),
            outputs: LLAMA3X_OUTPUTS,
            share_alike: false,
            notes: $notes,
            clauses: &[
                LLAMA_COMMERCIAL_CLAUSE,
                LLAMA_COPY_CLAUSE,
                LLAMA3X_DISPLAY_CLAUSE,
                LLAMA3X_NAMING_CLAUSE,
                LLAMA_AUP_CLAUSE,
            ],
            aliases: $aliases,
            links: $links,
            phrases: &[
                Phrase($title, 3),
                Phrase($release, 3),
                Phrase($notice, 2),
                LLAMA_SHARED_PHRASES[0],
                LLAMA_SHARED_PHRASES[1],
                LLAMA_SHARED_PHRASES[2],
                LLAMA_SHARED_PHRASES[3],
                LLAMA_SHARED_PHRASES[4],
                Phrase("prominently display built with llama", 2),
                Phrase("include llama at the beginning of any such ai model name", 2),
                Phrase("to create train fine tune or otherwise improve an ai model which is distributed or made available", 1),
            ],
        }
    };
}

/// Every licence the database knows, the unknown placeholder last.
pub static DATABASE: &[&Terms] = &[
    &APACHE_2_0,
    &MIT,
    &BSD_3_CLAUSE,
    &LLAMA2,
    &LLAMA3,
    &LLAMA3_1,
    &LLAMA3_2,
    &LLAMA3_3,
    &LLAMA4,
    &GEMMA,
    &QWEN,
    &TONGYI_QIANWEN,
    &CC_BY_4_0,
    &CC_BY_SA_4_0,
    &CC_BY_NC_4_0,
    &OPENRAIL_M,
    &MRL,
    &UNKNOWN,
];

/// Apache License 2.0 (apache.org/licenses/LICENSE-2.0).
pub static APACHE_2_0: Terms = Terms {
    id: "apache-2.0",
    name: "Apache License 2.0",
    spdx: Some("Apache-2.0"),
    url: "https://www.apache.org/licenses/LICENSE-2.0",
    family: "apache",
    commercial: Commercial::Yes,
    redistribution: &[
        "give every recipient a copy of the licence",
        "modified files must carry prominent notices that they were changed",
        "keep the copyright, patent, trademark and attribution notices of the source",
        "if the work has a NOTICE file, pass its attribution notices on with derivative works",
    ],
    attribution: &[],
    naming: None,
    use_policy: None,
    outputs: Outputs::Unrestricted,
    share_alike: false,
    notes: &[
        "The patent licence ends for anyone who sues claiming the work infringes a patent.",
        "No trademark rights are granted.",
    ],
    clauses: &[
        Clause {
            topic: Topic::Grant,
            key_phrase: "hereby grants to You a perpetual, worldwide, non-exclusive, no-charge, royalty-free, irrevocable copyright license",
            summary: "broad copyright licence to use, modify and distribute, including commercially",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "copy of this license",
            summary: "recipients get a copy of the licence",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "modified files to carry prominent notices",
            summary: "changed files say so",
        },
        Clause {
            topic: Topic::Notice,
            key_phrase: "includes notice text file as part of its distribution",
            summary: "NOTICE file attributions travel with derivative works",
        },
        Clause {
            topic: Topic::Patent,
            key_phrase: "institute patent litigation against any entity",
            summary: "patent licence terminates on patent litigation",
        },
        Clause {
            topic: Topic::Trademark,
            key_phrase: "does not grant permission to use the trade names",
            summary: "no trademark rights",
        },
    ],
    aliases: &["apache20", "apache2", "apachelicense20", "apachelicenseversion20", "apachev20", "apache20license"],
    links: &["apache.org/licenses/license-2.0", "opensource.org/licenses/apache-2.0"],
    phrases: &[
        Phrase("Apache License, Version 2.0, January 2004", 3),
        Phrase("terms and conditions for use reproduction and distribution", 2),
        Phrase("each Contributor hereby grants to You a perpetual, worldwide, non-exclusive, no-charge, royalty-free, irrevocable copyright license", 2),
        Phrase("to reproduce prepare derivative works of publicly display publicly perform sublicense and distribute the work", 1),
        Phrase("irrevocable except as stated in this section patent license to make have made use offer to sell sell import", 1),
        Phrase("If You institute patent litigation against any entity (including a cross-claim or counterclaim in a lawsuit)", 1),
        Phrase("you must give any other recipients of the work or derivative works copy of this license", 1),
        Phrase("you must cause any modified files to carry prominent notices stating that you changed the files", 1),
        Phrase("if the work includes notice text file as part of its distribution", 1),
        Phrase("any contribution intentionally submitted for inclusion in the work by you to the licensor shall be under the terms and conditions of this license", 1),
        Phrase("this license does not grant permission to use the trade names trademarks service marks or product names of the licensor", 1),
        Phrase("while redistributing the work or derivative works thereof you may choose to offer and charge fee for acceptance of support warranty indemnity", 1),
        Phrase("derivative works shall not include works that remain separable from or merely link or bind by name", 1),
    ],
};

/// MIT licence (opensource.org/licenses/MIT).
pub static MIT: Terms = Terms {
    id: "mit",
    name: "MIT License",
    spdx: Some("MIT"),
    url: "https://opensource.org/licenses/MIT",
    family: "mit",
    commercial: Commercial::Yes,
    redistribution: &["keep the copyright notice and the permission notice in all copies or substantial portions"],
    attribution: &[],
    naming: None,
    use_policy: None,
    outputs: Outputs::Unrestricted,
    share_alike: false,
    notes: &[],
    clauses: &[
        Clause {
            topic: Topic::Grant,
            key_phrase: "to deal in the software without restriction",
            summary: "use, copy, modify, merge, publish, distribute, sublicense and sell",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "above copyright notice and this permission notice shall be included",
            summary: "notices stay with copies",
        },
    ],
    aliases: &["mit", "mitlicense", "expat"],
    links: &["opensource.org/licenses/mit"],
    phrases: &[
        Phrase("permission is hereby granted free of charge to any person obtaining copy of this software and associated documentation files", 3),
        Phrase("to deal in the software without restriction including without limitation the rights to use copy modify merge publish distribute sublicense and or sell copies of the software", 2),
        Phrase("and to permit persons to whom the software is furnished to do so subject to the following conditions", 1),
        Phrase("the above copyright notice and this permission notice shall be included in all copies or substantial portions of the software", 2),
        Phrase("in no event shall the authors or copyright holders be liable for any claim damages or other liability", 1),
    ],
};

/// BSD 3-Clause licence (opensource.org/licenses/BSD-3-Clause).
pub static BSD_3_CLAUSE: Terms = Terms {
    id: "bsd-3-clause",
    name: "BSD 3-Clause License",
    spdx: Some("BSD-3-Clause"),
    url: "https://opensource.org/licenses/BSD-3-Clause",
    family: "bsd",
    commercial: Commercial::Yes,
    redistribution: &[
        "source copies keep the copyright notice, the conditions and the disclaimer",
        "binary copies reproduce them in their documentation or other materials",
    ],
    attribution: &["the copyright holder's and contributors' names may not be used to endorse or promote derived products without permission"],
    naming: None,
    use_policy: None,
    outputs: Outputs::Unrestricted,
    share_alike: false,
    notes: &[],
    clauses: &[
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "redistributions of source code must retain",
            summary: "source copies keep the notices",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "redistributions in binary form must reproduce",
            summary: "binary copies reproduce the notices",
        },
        Clause {
            topic: Topic::Attribution,
            key_phrase: "may be used to endorse or promote products derived",
            summary: "no endorsement by name",
        },
    ],
    aliases: &["bsd3clause", "bsd3", "newbsd", "revisedbsd", "bsd3clauselicense"],
    links: &["opensource.org/licenses/bsd-3-clause"],
    phrases: &[
        Phrase("redistribution and use in source and binary forms with or without modification are permitted provided that the following conditions are met", 2),
        Phrase("redistributions of source code must retain the above copyright notice this list of conditions and the following disclaimer", 2),
        Phrase("redistributions in binary form must reproduce the above copyright notice this list of conditions and the following disclaimer in the documentation and or other materials provided with the distribution", 2),
        Phrase("neither the name of the copyright holder nor the names of its contributors may be used to endorse or promote products derived from this software without specific prior written permission", 3),
        Phrase("this software is provided by the copyright holders and contributors as is", 1),
    ],
};

/// Llama 2 Community License Agreement (ai.meta.com/llama/license), release date 18 July 2023.
pub static LLAMA2: Terms = Terms {
    id: "llama2",
    name: "Llama 2 Community License",
    spdx: None,
    url: "https://ai.meta.com/llama/license/",
    family: "llama",
    commercial: LLAMA_MAU,
    redistribution: &[
        "give a copy of the agreement to every third party the model or a derivative is made available to",
        "ship a \"Notice\" text file with \"Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, Inc. All Rights Reserved.\"",
    ],
    attribution: &[],
    naming: None,
    use_policy: Some(UsePolicy {
        name: "Llama 2 Acceptable Use Policy",
        url: "https://ai.meta.com/llama/use-policy",
        flow_down: "incorporated into the licence: you must comply with it, and anyone you distribute the model to is bound by it too",
    }),
    outputs: Outputs::Prohibited(
        "the model and its outputs may not be used to improve any other large language model (Llama 2 and its derivatives excepted)",
    ),
    share_alike: false,
    notes: &[],
    clauses: &[
        LLAMA_COMMERCIAL_CLAUSE,
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "shall provide copy of this agreement to such third party",
            summary: "a copy of the agreement goes with every distribution",
        },
        Clause {
            topic: Topic::Outputs,
            key_phrase: "to improve any other large language model",
            summary: "no training of other LLMs on the model or its outputs",
        },
        LLAMA_AUP_CLAUSE,
    ],
    aliases: &["llama2", "llama2communitylicense", "llama2communitylicenseagreement", "llama2license"],
    links: &["ai.meta.com/llama/license", "github.com/facebookresearch/llama/blob/main/license", "ai.meta.com/resources/models-and-libraries/llama-downloads"],
    phrases: &[
        Phrase("llama 2 community license agreement", 3),
        Phrase("llama 2 version release date july 18 2023", 3),
        Phrase("llama 2 is licensed under the llama 2 community license", 2),
        LLAMA_SHARED_PHRASES[0],
        LLAMA_SHARED_PHRASES[1],
        LLAMA_SHARED_PHRASES[2],
        LLAMA_SHARED_PHRASES[3],
        Phrase("you will not use the llama materials or any output or results of the llama materials to improve any other large language model excluding llama 2 or derivative works thereof", 2),
        Phrase("if on the llama 2 version release date the monthly active users of the products or services made available by or for licensee", 1),
    ],
};

/// Meta Llama 3 Community License Agreement (llama.meta.com/llama3/license), 18 April 2024.
pub static LLAMA3: Terms = Terms {
    id: "llama3",
    name: "Meta Llama 3 Community License",
    spdx: None,
    url: "https://llama.meta.com/llama3/license/",
    family: "llama",
    commercial: LLAMA_MAU,
    redistribution: LLAMA3X_REDISTRIBUTION,
    attribution: &["display \"Built with Meta Llama 3\" prominently on a related website, user interface, blog post, about page or product documentation of products or services that use the model"],
    naming: Some("a model created, trained, fine-tuned or improved with the model and then distributed must have a name beginning with \"Llama 3\""),
    use_policy: Some(UsePolicy {
        name: "Meta Llama 3 Acceptable Use Policy",
        url: "https://llama.meta.com/llama3/use-policy",
        flow_down: "incorporated into the licence: you must comply with it, and anyone you distribute the model to is bound by it too",
    }),
    outputs: Outputs::Conditional(
        "allowed; a distributed model created or improved with the Llama materials must have a name beginning with \"Llama 3\"",
    ),
    share_alike: false,
    notes: &[],
    clauses: &[
        LLAMA_COMMERCIAL_CLAUSE,
        LLAMA_COPY_CLAUSE,
        Clause {
            topic: Topic::Attribution,
            key_phrase: "prominently display built with meta llama 3",
            summary: "products and services using the model display \"Built with Meta Llama 3\"",
        },
        Clause {
            topic: Topic::Naming,
            key_phrase: "at the beginning of any such ai model name",
            summary: "a distributed model created or improved with the materials has a name beginning with \"Llama 3\"",
        },
        LLAMA_AUP_CLAUSE,
    ],
    aliases: &["llama3", "metallama3", "llama3communitylicense", "metallama3communitylicense", "metallama3communitylicenseagreement", "llama3license"],
    links: &["llama.meta.com/llama3/license", "github.com/meta-llama/llama3/blob/main/license"],
    phrases: &[
        Phrase("meta llama 3 community license agreement", 3),
        Phrase("meta llama 3 version release date april 18 2024", 3),
        Phrase("meta llama 3 is licensed under the meta llama 3 community license", 2),
        LLAMA_SHARED_PHRASES[0],
        LLAMA_SHARED_PHRASES[1],
        LLAMA_SHARED_PHRASES[2],
        LLAMA_SHARED_PHRASES[3],
        LLAMA_SHARED_PHRASES[4],
        Phrase("prominently display built with meta llama 3", 2),
        Phrase("include llama 3 at the beginning of any such ai model name", 2),
    ],
};

/// Llama 3.1 Community License Agreement (llama.meta.com/llama3_1/license), 23 July 2024.
pub static LLAMA3_1: Terms = llama3x!(
    "llama3.1",
    "Llama 3.1 Community License",
    "https://llama.meta.com/llama3_1/license/",
    "Llama 3.1 Acceptable Use Policy",
    "https://llama.meta.com/llama3_1/use-policy",
    &[],
    &[
        "llama31",
        "llama31communitylicense",
        "llama31communitylicenseagreement",
        "metallama31",
        "llama31license"
    ],
    &[
        "llama.meta.com/llama3_1/license",
        "llama.com/llama3_1/license",
        "models/llama3_1/license"
    ],
    "Llama 3.1 Community License Agreement",
    "Llama 3.1 Version Release Date: July 23, 2024",
    "Llama 3.1 is licensed under the Llama 3.1 Community License"
);

/// Llama 3.2 Community License Agreement (llama.com/llama3_2/license), 25 September 2024.
pub static LLAMA3_2: Terms = llama3x!(
    "llama3.2",
    "Llama 3.2 Community License",
    "https://www.llama.com/llama3_2/license/",
    "Llama 3.2 Acceptable Use Policy",
    "https://www.llama.com/llama3_2/use-policy",
    &["Its Acceptable Use Policy withholds the licence for the multimodal Llama 3.2 models from individuals domiciled, and companies with their principal place of business, in the European Union."],
    &["llama32", "llama32communitylicense", "llama32communitylicenseagreement", "metallama32", "llama32license"],
    &["llama.com/llama3_2/license", "llama.meta.com/llama3_2/license", "models/llama3_2/license"],
    "Llama 3.2 Community License Agreement",
    "Llama 3.2 Version Release Date: September 25, 2024",
    "Llama 3.2 is licensed under the Llama 3.2 Community License"
);

/// Llama 3.3 Community License Agreement (llama.com/llama3_3/license), 6 December 2024.
pub static LLAMA3_3: Terms = llama3x!(
    "llama3.3",
    "Llama 3.3 Community License",
    "https://www.llama.com/llama3_3/license/",
    "Llama 3.3 Acceptable Use Policy",
    "https://www.llama.com/llama3_3/use-policy",
    &[],
    &[
        "llama33",
        "llama33communitylicense",
        "llama33communitylicenseagreement",
        "metallama33",
        "llama33license"
    ],
    &[
        "llama.com/llama3_3/license",
        "llama.meta.com/llama3_3/license",
        "models/llama3_3/license"
    ],
    "Llama 3.3 Community License Agreement",
    "Llama 3.3 Version Release Date: December 6, 2024",
    "Llama 3.3 is licensed under the Llama 3.3 Community License"
);

/// Llama 4 Community License Agreement (llama.com/llama4/license), 5 April 2025.
pub static LLAMA4: Terms = llama3x!(
    "llama4",
    "Llama 4 Community License",
    "https://www.llama.com/llama4/license/",
    "Llama 4 Acceptable Use Policy",
    "https://www.llama.com/llama4/use-policy",
    &["Its Acceptable Use Policy withholds the licence for the multimodal Llama 4 models from individuals domiciled, and companies with their principal place of business, in the European Union."],
    &["llama4", "llama4communitylicense", "llama4communitylicenseagreement", "metallama4", "llama4license"],
    &["llama.com/llama4/license", "llama.meta.com/llama4/license", "models/llama4/license"],
    "llama 4 community license agreement",
    "llama 4 version effective date april 5 2025",
    "llama 4 is licensed under the llama 4 community license"
);

/// Gemma Terms of Use (ai.google.dev/gemma/terms), version of 24 March 2025.
pub static GEMMA: Terms = Terms {
    id: "gemma",
    name: "Gemma Terms of Use",
    spdx: None,
    url: "https://ai.google.dev/gemma/terms",
    family: "gemma",
    commercial: Commercial::Yes,
    redistribution: &[
        "put the use restrictions of section 3.2 as an enforceable provision into any agreement governing use or distribution, and tell recipients the model is subject to them",
        "give every third-party recipient a copy of the Gemma Terms of Use",
        "modified files must carry prominent notices that they were modified",
        "distributions other than a hosted service carry a \"Notice\" text file saying \"Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\"",
    ],
    attribution: &[],
    naming: None,
    use_policy: Some(UsePolicy {
        name: "Gemma Prohibited Use Policy",
        url: "https://ai.google.dev/gemma/prohibited_use_policy",
        flow_down: "incorporated by reference: you may not use the model for the prohibited uses, and must bind everyone you distribute it to (including a hosted service's users) to the same restrictions",
    }),
    outputs: Outputs::Conditional(
        "Google claims no rights in outputs, but a model trained on Gemma's outputs (e.g. by distillation or synthetic data) to perform like Gemma is a Model Derivative under these terms",
    ),
    share_alike: false,
    notes: &["Google reserves the right to restrict (remotely or otherwise) usage it reasonably believes violates the terms."],
    clauses: &[
        Clause {
            topic: Topic::UsePolicy,
            key_phrase: "for the restricted uses set forth in the gemma prohibited use policy",
            summary: "the Prohibited Use Policy is incorporated; prohibited uses are a breach",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "must include the use restrictions referenced in",
            summary: "downstream agreements carry the use restrictions",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "must provide all third party recipients of gemma or model derivatives copy of this agreement",
            summary: "recipients get a copy of the terms",
        },
        Clause {
            topic: Topic::Notice,
            key_phrase: "gemma is provided under and subject to the gemma terms of use",
            summary: "a Notice file with the prescribed sentence",
        },
        Clause {
            topic: Topic::Outputs,
            key_phrase: "google claims no rights in outputs",
            summary: "outputs belong to the user",
        },
        Clause {
            topic: Topic::Outputs,
            key_phrase: "generation of synthetic data outputs by gemma for training that model",
            summary: "distilled models are Model Derivatives",
        },
    ],
    aliases: &["gemma", "gemmatermsofuse", "gemmaterms", "gemmalicense"],
    links: &["ai.google.dev/gemma/terms"],
    phrases: &[
        Phrase("gemma terms of use", 3),
        Phrase("by using reproducing modifying distributing performing or displaying any portion or element of gemma model derivatives", 2),
        Phrase("model derivatives means all modifications to gemma works based on gemma", 2),
        Phrase("any other machine learning model which is created by transfer of patterns of the weights parameters operations or output of gemma", 1),
        Phrase("you must provide all third party recipients of gemma or model derivatives copy of this agreement", 1),
        Phrase("Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms", 2),
        Phrase("for the restricted uses set forth in the gemma prohibited use policy", 2),
        Phrase("google claims no rights in outputs you generate using gemma", 1),
        Phrase("google reserves the right to restrict remotely or otherwise usage of any of the gemma services", 1),
    ],
};

/// Qwen License Agreement (Alibaba Cloud; used by some Qwen2/Qwen2.5 checkpoints).
pub static QWEN: Terms = Terms {
    id: "qwen",
    name: "Qwen License Agreement",
    spdx: None,
    url: "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE",
    family: "qwen",
    commercial: Commercial::MauCap {
        cap: 100_000_000,
        holder: "Alibaba Cloud",
    },
    redistribution: &[
        "give a copy of the agreement to third-party recipients",
        "modified files must carry prominent notices that they were changed",
        "keep the attribution notice \"Qwen is licensed under the Qwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights Reserved.\" in a NOTICE file",
    ],
    attribution: &["a distributed model created or improved with the materials or their outputs must prominently display \"Built with Qwen\" or \"Improved using Qwen\" in its documentation"],
    naming: None,
    use_policy: None,
    outputs: Outputs::Conditional("allowed; a distributed model improved with them must display \"Built with Qwen\" or \"Improved using Qwen\""),
    share_alike: false,
    notes: &[],
    clauses: &[
        Clause {
            topic: Topic::Commercial,
            key_phrase: "more than 100 million monthly active users",
            summary: "above 100 million monthly active users a licence must be requested",
        },
        Clause {
            topic: Topic::Attribution,
            key_phrase: "built with qwen",
            summary: "\"Built with Qwen\" / \"Improved using Qwen\" for derived models",
        },
    ],
    aliases: &["qwen", "qwenlicense", "qwenlicenseagreement"],
    links: &[],
    phrases: &[
        Phrase("qwen license agreement", 3),
        Phrase("by clicking to agree or by using or distributing any portion or element of the qwen materials", 2),
        Phrase("qwen is licensed under the qwen license agreement copyright alibaba cloud all rights reserved", 2),
        Phrase("your product or service has more than 100 million monthly active users", 2),
        Phrase("built with qwen or improved using qwen", 2),
    ],
};

/// Tongyi Qianwen License Agreement (Alibaba Cloud; the first Qwen releases, 2023).
pub static TONGYI_QIANWEN: Terms = Terms {
    id: "tongyi-qianwen",
    name: "Tongyi Qianwen License Agreement",
    spdx: None,
    url: "https://github.com/QwenLM/Qwen/blob/main/Tongyi%20Qianwen%20LICENSE%20AGREEMENT",
    family: "qwen",
    commercial: Commercial::MauCap {
        cap: 100_000_000,
        holder: "Alibaba Cloud",
    },
    redistribution: &[
        "give a copy of the agreement to third-party recipients",
        "modified files must carry prominent notices that they were changed",
        "keep the \"Tongyi Qianwen is licensed under the Tongyi Qianwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights Reserved.\" notice in a NOTICE file",
    ],
    attribution: &[],
    naming: None,
    use_policy: None,
    outputs: Outputs::Prohibited("the materials and their outputs may not be used to improve any other large language model (Tongyi Qianwen and its derivatives excepted)"),
    share_alike: false,
    notes: &[],
    clauses: &[
        Clause {
            topic: Topic::Commercial,
            key_phrase: "more than 100 million monthly active users",
            summary: "above 100 million monthly active users a licence must be requested",
        },
        Clause {
            topic: Topic::Outputs,
            key_phrase: "to improve any other large language model",
            summary: "no training of other LLMs",
        },
    ],
    aliases: &["tongyiqianwen", "tongyiqianwenlicense", "tongyiqianwenlicenseagreement", "qianwen"],
    links: &["tongyi%20qianwen%20license", "tongyi qianwen license", "qianwen"],
    phrases: &[
        Phrase("tongyi qianwen license agreement", 3),
        Phrase("by clicking to agree or by using or distributing any portion or element of the tongyi qianwen materials", 2),
        Phrase("tongyi qianwen is licensed under the tongyi qianwen license agreement copyright alibaba cloud all rights reserved", 2),
        Phrase("your product or service has more than 100 million monthly active users", 2),
        Phrase("to improve any other large language model excluding tongyi qianwen", 1),
    ],
};

const CC_ATTRIBUTION: &[&str] = &[
    "credit the creator, keep the copyright, licence and disclaimer notices, link to the licence, and say whether the material was modified",
];

const CC_SHARED_PHRASES: [Phrase; 4] = [
    Phrase("by exercising the licensed rights defined below you accept and agree to be bound by the terms and conditions of this creative commons", 1),
    Phrase("adapted material means material subject to copyright and similar rights that is derived from or based upon the licensed material", 1),
    Phrase("indicate if you modified the licensed material and retain an indication of any previous modifications", 1),
    Phrase("you may not offer or impose any additional or different terms or conditions on or apply any effective technological measures to the licensed material", 1),
];

/// Creative Commons Attribution 4.0 International.
pub static CC_BY_4_0: Terms = Terms {
    id: "cc-by-4.0",
    name: "Creative Commons Attribution 4.0 International",
    spdx: Some("CC-BY-4.0"),
    url: "https://creativecommons.org/licenses/by/4.0/legalcode",
    family: "creative-commons",
    commercial: Commercial::Yes,
    redistribution: &["no additional terms or technical measures that restrict recipients' rights"],
    attribution: CC_ATTRIBUTION,
    naming: None,
    use_policy: None,
    outputs: Outputs::Unrestricted,
    share_alike: false,
    notes: &[],
    clauses: &[Clause {
        topic: Topic::Attribution,
        key_phrase: "if you share the licensed material",
        summary: "attribution when sharing",
    }],
    aliases: &[
        "ccby40",
        "creativecommonsattribution40",
        "creativecommonsattribution40international",
        "ccby",
    ],
    links: &["creativecommons.org/licenses/by/4.0"],
    phrases: &[
        Phrase(
            "Creative Commons Attribution 4.0 International Public License",
            3,
        ),
        CC_SHARED_PHRASES[0],
        CC_SHARED_PHRASES[1],
        CC_SHARED_PHRASES[2],
        CC_SHARED_PHRASES[3],
    ],
};

/// Creative Commons Attribution-ShareAlike 4.0 International.
pub static CC_BY_SA_4_0: Terms = Terms {
    id: "cc-by-sa-4.0",
    name: "Creative Commons Attribution-ShareAlike 4.0 International",
    spdx: Some("CC-BY-SA-4.0"),
    url: "https://creativecommons.org/licenses/by-sa/4.0/legalcode",
    family: "creative-commons",
    commercial: Commercial::Yes,
    redistribution: &[
        "no additional terms or technical measures that restrict recipients' rights",
        "adaptations you share must be under CC BY-SA 4.0 (or later, or a BY-SA compatible licence)",
    ],
    attribution: CC_ATTRIBUTION,
    naming: None,
    use_policy: None,
    outputs: Outputs::Unrestricted,
    share_alike: true,
    notes: &[],
    clauses: &[
        Clause {
            topic: Topic::Attribution,
            key_phrase: "if you share the licensed material",
            summary: "attribution when sharing",
        },
        Clause {
            topic: Topic::ShareAlike,
            key_phrase: "Adapter's License You apply must be a Creative Commons license with the same License Elements",
            summary: "share adaptations alike",
        },
    ],
    aliases: &["ccbysa40", "creativecommonsattributionsharealike40", "creativecommonsattributionsharealike40international", "ccbysa"],
    links: &["creativecommons.org/licenses/by-sa/4.0"],
    phrases: &[
        Phrase("Creative Commons Attribution-ShareAlike 4.0 International Public License", 3),
        CC_SHARED_PHRASES[0],
        CC_SHARED_PHRASES[1],
        CC_SHARED_PHRASES[2],
        CC_SHARED_PHRASES[3],
        Phrase("The Adapter's License You apply must be a Creative Commons license with the same License Elements, this version or later, or a BY-SA Compatible License", 2),
        Phrase("BY-SA Compatible License means a license listed at creativecommons.org/compatiblelicenses", 2),
    ],
};

/// Creative Commons Attribution-NonCommercial 4.0 International.
pub static CC_BY_NC_4_0: Terms = Terms {
    id: "cc-by-nc-4.0",
    name: "Creative Commons Attribution-NonCommercial 4.0 International",
    spdx: Some("CC-BY-NC-4.0"),
    url: "https://creativecommons.org/licenses/by-nc/4.0/legalcode",
    family: "creative-commons",
    commercial: Commercial::No,
    redistribution: &[
        "no additional terms or technical measures that restrict recipients' rights",
        "share only for non-commercial purposes",
    ],
    attribution: CC_ATTRIBUTION,
    naming: None,
    use_policy: None,
    outputs: Outputs::Unrestricted,
    share_alike: false,
    notes: &[],
    clauses: &[
        Clause {
            topic: Topic::Commercial,
            key_phrase: "for noncommercial purposes only",
            summary: "non-commercial use only",
        },
        Clause {
            topic: Topic::Attribution,
            key_phrase: "if you share the licensed material",
            summary: "attribution when sharing",
        },
    ],
    aliases: &["ccbync40", "creativecommonsattributionnoncommercial40", "creativecommonsattributionnoncommercial40international", "ccbync"],
    links: &["creativecommons.org/licenses/by-nc/4.0"],
    phrases: &[
        Phrase("Creative Commons Attribution-NonCommercial 4.0 International Public License", 3),
        CC_SHARED_PHRASES[0],
        CC_SHARED_PHRASES[1],
        CC_SHARED_PHRASES[2],
        CC_SHARED_PHRASES[3],
        Phrase("noncommercial means not primarily intended for or directed towards commercial advantage or monetary compensation", 2),
        Phrase("reproduce and share the licensed material in whole or in part for noncommercial purposes only", 2),
    ],
};

/// The Open RAIL-M family (BigScience Open RAIL-M, CreativeML Open RAIL-M).
pub static OPENRAIL_M: Terms = Terms {
    id: "openrail-m",
    name: "Open RAIL-M License",
    spdx: None,
    url: "https://www.licenses.ai/blog/2022/8/26/bigscience-open-rail-m-license",
    family: "openrail",
    commercial: Commercial::Yes,
    redistribution: &[
        "put the use-based restrictions (Attachment A) as an enforceable provision into any agreement governing use or distribution of the model or its derivatives",
        "give every third-party recipient a copy of the licence",
        "modified files must carry prominent notices that they were changed",
        "keep the copyright, patent, trademark and attribution notices",
    ],
    attribution: &[],
    naming: None,
    use_policy: Some(UsePolicy {
        name: "Open RAIL-M use restrictions (Attachment A)",
        url: "https://www.licenses.ai/blog/2022/8/26/bigscience-open-rail-m-license",
        flow_down: "the use restrictions bind you and must be imposed on everyone you distribute the model or its derivatives to",
    }),
    outputs: Outputs::Conditional("outputs are yours, but may not be used in ways that break the use restrictions"),
    share_alike: false,
    notes: &["The licensor may restrict (remotely or otherwise) usage that violates the licence."],
    clauses: &[
        Clause {
            topic: Topic::UsePolicy,
            key_phrase: "you agree not to use the model or derivatives of the model",
            summary: "the Attachment A use restrictions",
        },
        Clause {
            topic: Topic::Redistribution,
            key_phrase: "as an enforceable provision in any type of legal agreement",
            summary: "downstream agreements carry the use restrictions",
        },
        Clause {
            topic: Topic::Outputs,
            key_phrase: "licensor claims no rights in the output you generate",
            summary: "outputs belong to the user",
        },
    ],
    aliases: &["openrailm", "openrail", "bigscienceopenrailm", "creativemlopenrailm", "bigscienceopenrail", "bigsciencebloomrail10"],
    links: &["openrail", "licenses.ai", "bigscience-openrail-m", "creativeml-openrail-m"],
    phrases: &[
        Phrase("Open RAIL-M License", 2),
        Phrase("responsible ai license", 1),
        Phrase("you agree not to use the model or derivatives of the model", 2),
        Phrase("as an enforceable provision in any type of legal agreement", 2),
        Phrase("licensor claims no rights in the output you generate using the model", 1),
        Phrase("derivatives of the model means all modifications to the model works based on the model", 1),
        Phrase("you shall undertake reasonable efforts to use the latest version of the model", 1),
        Phrase("use-based restrictions referenced in", 1),
    ],
};

/// Mistral AI Research License (MRL).
pub static MRL: Terms = Terms {
    id: "mrl",
    name: "Mistral AI Research License",
    spdx: None,
    url: "https://mistral.ai/licenses/MRL-0.1.md",
    family: "mistral",
    commercial: Commercial::No,
    redistribution: &[
        "give recipients a copy of the licence",
        "derivatives are licensed for research purposes only as well",
        "keep the notice \"Licensed by Mistral AI under the Mistral AI Research License\"",
    ],
    attribution: &[],
    naming: None,
    use_policy: None,
    outputs: Outputs::Prohibited("models, derivatives and outputs may be used for research purposes only"),
    share_alike: false,
    notes: &["Any use beyond research purposes needs a separate licence from Mistral AI."],
    clauses: &[
        Clause {
            topic: Topic::Commercial,
            key_phrase: "research purposes means",
            summary: "research (non-commercial) use only",
        },
        Clause {
            topic: Topic::Commercial,
            key_phrase: "You must request a license from Mistral AI",
            summary: "other uses need a licence from Mistral AI",
        },
    ],
    aliases: &["mrl", "mistralairesearchlicense", "mistralresearchlicense", "mistralairesearchlicence", "mrl01"],
    links: &["mistral.ai/licenses/mrl"],
    phrases: &[
        Phrase("mistral ai research license", 3),
        Phrase("Research Purposes means any use of a Mistral Model, Derivative, or Output that is solely for", 2),
        Phrase("for any purpose that is not expressly authorized under this Agreement, You must request a license from Mistral AI", 2),
        Phrase("licensed by mistral ai under the mistral ai research license", 2),
    ],
};

/// Looks up a licence by a declared name: an id, SPDX identifier or alias, compared with
/// case and punctuation removed (`Apache 2.0`, `apache-2.0` and `APACHE_2_0` are one).
pub fn by_alias(name: &str) -> Option<&'static Terms> {
    let key: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if key.is_empty() {
        return None;
    }
    DATABASE
        .iter()
        .copied()
        .filter(|t| !t.is_unknown())
        .find(|t| {
            let id_key: String = t.id.chars().filter(|c| c.is_alphanumeric()).collect();
            let spdx_key = t.spdx.map(|s| {
                s.chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect::<String>()
            });
            id_key == key
                || spdx_key.as_deref() == Some(key.as_str())
                || t.aliases.contains(&key.as_str())
        })
}

/// Looks up a licence by a link to its text.
pub fn by_link(link: &str) -> Option<&'static Terms> {
    let l = link.trim().to_ascii_lowercase();
    let l = l
        .strip_prefix("https://")
        .or_else(|| l.strip_prefix("http://"))
        .unwrap_or(&l);
    let l = l.strip_prefix("www.").unwrap_or(l);
    // Longest fragment wins, so `llama3_1/license` is not taken for `llama3/license`.
    DATABASE
        .iter()
        .copied()
        .flat_map(|t| t.links.iter().map(move |f| (t, *f)))
        .filter(|(_, f)| l.contains(f))
        .max_by_key(|(_, f)| f.len())
        .map(|(t, _)| t)
}

/// The terms with this id (`unknown` included).
pub fn by_id(id: &str) -> Option<&'static Terms> {
    DATABASE.iter().copied().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_resolvable() {
        for t in DATABASE {
            assert_eq!(by_id(t.id).map(|x| x.id), Some(t.id));
            if !t.is_unknown() {
                assert_eq!(
                    by_alias(t.id).map(|x| x.id),
                    Some(t.id),
                    "alias lookup of {}",
                    t.id
                );
            }
        }
    }

    #[test]
    fn aliases_are_unambiguous() {
        let mut seen = std::collections::BTreeMap::new();
        for t in DATABASE {
            for a in t.aliases {
                assert!(
                    a.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                    "{a}"
                );
                if let Some(prev) = seen.insert(*a, t.id) {
                    panic!("alias {a} used by {prev} and {}", t.id);
                }
            }
        }
    }

    #[test]
    fn declared_names_map() {
        for (name, id) in [
            ("Apache 2.0", "apache-2.0"),
            ("apache-2.0", "apache-2.0"),
            ("MIT", "mit"),
            ("llama3.1", "llama3.1"),
            ("llama3_2", "llama3.2"),
            ("LLAMA 2", "llama2"),
            ("gemma", "gemma"),
            ("cc-by-nc-4.0", "cc-by-nc-4.0"),
            ("CreativeML-OpenRAIL-M", "openrail-m"),
            ("mrl", "mrl"),
            ("tongyi-qianwen", "tongyi-qianwen"),
        ] {
            assert_eq!(by_alias(name).map(|t| t.id), Some(id), "{name}");
        }
        assert!(by_alias("other").is_none());
        assert!(by_alias("").is_none());
        assert!(by_alias("unknown").is_none());
    }

    #[test]
    fn links_prefer_the_most_specific_fragment() {
        assert_eq!(
            by_link("https://llama.meta.com/llama3_1/license/").map(|t| t.id),
            Some("llama3.1")
        );
        assert_eq!(
            by_link("https://llama.meta.com/llama3/license").map(|t| t.id),
            Some("llama3")
        );
        assert_eq!(
            by_link("https://ai.google.dev/gemma/terms").map(|t| t.id),
            Some("gemma")
        );
        assert_eq!(
            by_link("https://creativecommons.org/licenses/by-sa/4.0/").map(|t| t.id),
            Some("cc-by-sa-4.0")
        );
        assert!(by_link("https://example.org/LICENSE").is_none());
    }

    #[test]
    fn restrictiveness_orders_sensibly() {
        assert!(APACHE_2_0.restrictiveness() < GEMMA.restrictiveness());
        assert!(GEMMA.restrictiveness() < LLAMA3_1.restrictiveness());
        assert!(LLAMA3_1.restrictiveness() < CC_BY_NC_4_0.restrictiveness());
        assert!(MRL.restrictiveness() < UNKNOWN.restrictiveness());
        assert_eq!(group_thousands(700_000_000), "700,000,000");
        assert_eq!(group_thousands(12), "12");
    }
}
