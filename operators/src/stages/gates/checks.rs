//! The gates' checks: pure functions of an output against its source chunk, each with a score,
//! so that a rejected row carries its reason and numbers. The stage ([`super::Gate`]) adds the
//! meaning gate (cosine of sentence embeddings) and the lineage.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub use crate::fidelity::numbers::invented_numbers;
use crate::stages::gates::chatter::{is_refusal, strip_chatter};
use crate::stages::gates::faith::{copy_share, format_words, new_entities, ngrams};
use crate::stages::gates::grounding::{Grounding, grounding, grounding_reason};
use crate::stages::gates::qa::{qa_pairs, qa_repetition, unanswered};
use crate::stages::styles::{Example, Style};

/// Gate settings; each gate can be switched off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Output characters over source characters must lie in this range.
    pub min_length_ratio: f64,
    pub max_length_ratio: f64,
    /// Share of word n-grams that repeat an earlier one, at most.
    pub max_repetition: f64,
    pub repetition_n: usize,
    /// Remove a leading "Here is a paraphrase:"-style line and trailing sign-offs.
    pub strip_chatter: bool,
    /// Every number in the output must appear in the source.
    pub number_fidelity: bool,
    /// Question/Answer pairs required when the style asks for them.
    pub min_qa_pairs: usize,
    /// Sentence embedder directory for the meaning gate (empty: no meaning gate).
    pub embedder: String,
    /// Least cosine between source and output embeddings (a style may set its own).
    pub min_cosine: f64,
    /// Every name in the output (a capitalised word not at a sentence start, an acronym) must
    /// appear in the source.
    pub entity_fidelity: bool,
    /// Share of the output's word `copy_n`-grams copied verbatim from the source, at most (a
    /// style may set its own; 1 turns the gate off).
    pub max_copy_share: f64,
    pub copy_n: usize,
    /// Every sentence of the output must have a source sentence at this embedding cosine or
    /// above (with the embedder; a style may set its own; 0 turns the gate off).
    pub min_sentence_support: f64,
    /// Words of the output that are neither the source's (any inflection) nor English, at most
    /// (the `words` gate; see [`super::grounding`]).
    pub max_unknown_words: usize,
    /// Least share of each claim's content words that its best source evidence holds (the
    /// `coverage` gate; 0 turns it off).
    pub min_coverage: f64,
    /// The words next to each figure (`figures`) and each name (`names`) must stand beside it
    /// in a source sentence; a claim's names and figures must meet in one (`anchors`).
    pub bind_figures: bool,
    pub bind_names: bool,
    pub bind_anchors: bool,
    /// A claim negates exactly when its evidence does (the `polarity` gate).
    pub polarity: bool,
    /// A Q&A that fails a gate keeps its longest run of leading pairs that passes every gate
    /// (still at least `min_qa_pairs`; the row is marked `trimmed`); false rejects it whole.
    pub trim_qa_pairs: bool,
    /// A language model directory for the `lm` gate (empty: off; see [`super::lm`]), and the
    /// largest share of a claim's tokens it may find unsupported by the source.
    pub grounding_model: String,
    pub max_unsupported_share: f64,
    /// A cross-encoder directory for the `entailment` gate (empty: off; see [`super::entail`]),
    /// and the least probability of entailment each claim needs.
    pub entailment: String,
    pub min_entailment: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_length_ratio: 0.3,
            max_length_ratio: 3.0,
            max_repetition: 0.2,
            repetition_n: 3,
            strip_chatter: true,
            number_fidelity: true,
            min_qa_pairs: 2,
            embedder: String::new(),
            min_cosine: 0.7,
            entity_fidelity: true,
            max_copy_share: 0.5,
            copy_n: 5,
            min_sentence_support: 0.5,
            max_unknown_words: 0,
            min_coverage: 0.6,
            bind_figures: true,
            bind_names: false,
            bind_anchors: true,
            polarity: true,
            trim_qa_pairs: true,
            grounding_model: String::new(),
            max_unsupported_share: 0.0,
            entailment: String::new(),
            min_entailment: 0.5,
        }
    }
}

/// What the gates measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub length_ratio: f64,
    pub repetition: f64,
    pub qa_pairs: usize,
    /// Numbers in the output that the source does not contain.
    pub invented_numbers: Vec<String>,
    pub chatter_stripped: bool,
    /// Source/output embedding cosine, when there is an embedder.
    #[serde(default)]
    pub cosine: Option<f64>,
    /// Word 5-grams of the output that come from the style's worked examples, not the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example_leaks: Vec<String>,
    /// Names in the output that the source lacks.
    #[serde(default)]
    pub new_entities: Vec<String>,
    /// Share of the output's word n-grams copied verbatim from the source.
    #[serde(default)]
    pub copy_share: f64,
    /// Sentences of the output without a source sentence at the support threshold (measured
    /// with the embedder), and a trailing one that was dropped for that reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_sentences: Vec<String>,
    /// The grounding checks' measures (see [`super::grounding`]).
    #[serde(default)]
    pub grounding: Grounding,
    /// What was cut off an accepted text: its unsupported last sentence, or a Q&A's last pairs
    /// that failed a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trimmed_sentence: Option<String>,
    /// Each claim of the kept text as the `lm` gate's model read it (with that gate only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lm: Vec<crate::engine::decode::score::ClaimScore>,
    /// Each claim of the kept text as the `entailment` gate's model read it (with that gate only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entailment: Vec<super::entail::ClaimEntailment>,
}

/// The outcome for one output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// The (cleaned) text passes every gate.
    Accept {
        text: String,
        scores: Scores,
    },
    Reject {
        reason: String,
        scores: Scores,
    },
}

/// Share of word n-grams that repeat an earlier n-gram of the same text.
pub fn repetition(text: &str, n: usize) -> f64 {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    if n == 0 || words.len() < n {
        return 0.0;
    }
    let mut seen = HashSet::new();
    let total = words.len() - n + 1;
    let repeats = words.windows(n).filter(|w| !seen.insert(*w)).count();
    repeats as f64 / total as f64
}

/// Names of the gates, for a style's `gates` list (`empty` always applies).
pub const GATES: [&str; 20] = [
    "empty",
    "truncated",
    "refusal",
    "length",
    "repetition",
    "format",
    "numbers",
    "entities",
    "copy",
    "leak",
    "meaning",
    "support",
    "words",
    "coverage",
    "figures",
    "names",
    "anchors",
    "polarity",
    "lm",
    "entailment",
];

/// Words of an example that an output may share with it before it counts as copying.
const LEAK_N: usize = 5;

fn word_ngrams(text: &str, n: usize) -> HashSet<String> {
    ngrams(text, n).into_iter().collect()
}

/// Word 5-grams of `output` that occur in `examples` (a style's worked examples) and not in
/// `source`: a small model sometimes copies its example instead of rewriting its task. The
/// format's own words ("Question", "Answer") are structure, not content, and do not count.
pub fn example_leaks(source: &str, output: &str, examples: &[Example]) -> Vec<String> {
    if examples.is_empty() {
        return vec![];
    }
    let from_examples: HashSet<String> = examples
        .iter()
        .flat_map(|e| word_ngrams(&e.chunk, LEAK_N).into_iter().chain(word_ngrams(&e.answer, LEAK_N)))
        .filter(|g| !g.split(' ').any(|w| w == "question" || w == "answer"))
        .collect();
    let own = word_ngrams(source, LEAK_N);
    let mut leaks: Vec<String> =
        word_ngrams(output, LEAK_N).into_iter().filter(|g| from_examples.contains(g) && !own.contains(g)).collect();
    leaks.sort();
    leaks
}

/// The gates of `style` on one output: [`check_only`] with the style's format and gate list,
/// then the `leak` gate against its worked examples.
pub fn check_style(source: &str, output: &str, truncated: bool, style: &Style, cfg: &GateConfig) -> Verdict {
    let cfg = &GateConfig { max_copy_share: style.max_copy_share.unwrap_or(cfg.max_copy_share), ..cfg.clone() };
    match check_only(source, output, truncated, style.qa_format, cfg, style.gates.as_deref()) {
        Verdict::Accept { text, mut scores } => {
            scores.example_leaks = example_leaks(source, &text, &style.examples);
            match scores.example_leaks.first() {
                Some(g) if style.gate_on("leak") => Verdict::Reject {
                    reason: format!("example leak: \"{g}\" comes from the style's worked example, not the source"),
                    scores,
                },
                _ => Verdict::Accept { text, scores },
            }
        }
        reject => reject,
    }
}

/// Runs the gates on one output. `truncated` is true when generation hit its token limit;
/// `qa` when the style asks for Question/Answer pairs.
pub fn check(source: &str, output: &str, truncated: bool, qa: bool, cfg: &GateConfig) -> Verdict {
    check_only(source, output, truncated, qa, cfg, None)
}

/// [`check`] with only the gates named in `only` (all when `None`); the meaning gate is the
/// operator's, as it needs embeddings.
pub fn check_only(
    source: &str,
    output: &str,
    truncated: bool,
    qa: bool,
    cfg: &GateConfig,
    only: Option<&[String]>,
) -> Verdict {
    let on = |g: &str| only.is_none_or(|o| o.iter().any(|x| x == g));
    let (text, chatter_stripped) =
        if cfg.strip_chatter { strip_chatter(output) } else { (output.trim().to_string(), false) };
    let scores = Scores {
        length_ratio: text.chars().count() as f64 / source.chars().count().max(1) as f64,
        repetition: if qa { qa_repetition(&text, cfg.repetition_n) } else { repetition(&text, cfg.repetition_n) },
        qa_pairs: qa_pairs(&text),
        invented_numbers: invented_numbers(source, &text),
        chatter_stripped,
        cosine: None,
        example_leaks: vec![],
        new_entities: new_entities(source, &text, format_words(qa)),
        copy_share: copy_share(source, &text, cfg.copy_n),
        unsupported_sentences: vec![],
        grounding: grounding(source, &text, qa),
        trimmed_sentence: None,
        lm: vec![],
        entailment: vec![],
    };
    let reason = if text.is_empty() {
        Some("empty output".to_string())
    } else if truncated && on("truncated") {
        Some("truncated: hit the token limit".to_string())
    } else if on("refusal") && is_refusal(&text) {
        Some("refusal or chatter".to_string())
    } else if on("length") && (scores.length_ratio < cfg.min_length_ratio || scores.length_ratio > cfg.max_length_ratio)
    {
        Some(format!(
            "length ratio: {:.2} outside [{}, {}]",
            scores.length_ratio, cfg.min_length_ratio, cfg.max_length_ratio
        ))
    } else if on("repetition") && scores.repetition > cfg.max_repetition {
        Some(format!(
            "repetition: {:.2} of {}-grams repeat (max {})",
            scores.repetition, cfg.repetition_n, cfg.max_repetition
        ))
    } else if on("format") && qa && scores.qa_pairs < cfg.min_qa_pairs {
        Some(format!("format: {} Question/Answer pairs (need {})", scores.qa_pairs, cfg.min_qa_pairs))
    } else if on("format") && qa && unanswered(&text) {
        Some("format: the last question has no answer".to_string())
    } else if cfg.number_fidelity && on("numbers") && !scores.invented_numbers.is_empty() {
        Some(format!("number fidelity: {} not in the source", scores.invented_numbers.join(", ")))
    } else if cfg.entity_fidelity && on("entities") && !scores.new_entities.is_empty() {
        Some(format!("entity fidelity: {} not in the source", scores.new_entities.join(", ")))
    } else if on("copy") && scores.copy_share > cfg.max_copy_share {
        Some(format!(
            "copy: {:.2} of {}-grams copied verbatim from the source (max {})",
            scores.copy_share, cfg.copy_n, cfg.max_copy_share
        ))
    } else {
        grounding_reason(&scores.grounding, cfg, &on)
    };
    match reason {
        None => Verdict::Accept { text, scores },
        Some(reason) => Verdict::Reject { reason, scores },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "The council will spend 12 million pounds on 2,000 new homes by 2027.";

    fn reason(v: Verdict) -> String {
        match v {
            Verdict::Reject { reason, .. } => reason,
            Verdict::Accept { text, .. } => panic!("accepted: {text:?}"),
        }
    }

    #[test]
    fn a_faithful_rewrite_passes_with_chatter_stripped() {
        let out = "Here is a simpler version:\nThe council plans to build 2000 homes by 2027, costing 12 million pounds.\nI hope this helps!";
        match check(SRC, out, false, false, &GateConfig::default()) {
            Verdict::Accept { text, scores } => {
                assert_eq!(text, "The council plans to build 2000 homes by 2027, costing 12 million pounds.");
                assert!(scores.chatter_stripped);
                assert!(scores.invented_numbers.is_empty(), "2000 is 2,000");
            }
            v => panic!("{v:?}"),
        }
        let echoed = format!("<text>\n{SRC}\n</text>\nThe text above was rewritten.");
        assert_eq!(strip_chatter(&echoed), (SRC.to_string(), true));
    }

    #[test]
    fn each_gate_rejects_its_failure() {
        let cfg = GateConfig::default();
        assert_eq!(reason(check(SRC, "  ", false, false, &cfg)), "empty output");
        assert!(reason(check(SRC, SRC, true, false, &cfg)).starts_with("truncated"));
        assert!(
            reason(check(SRC, "As an AI, I cannot rephrase this text for you today.", false, false, &cfg))
                .starts_with("refusal")
        );
        assert!(reason(check(SRC, "Homes.", false, false, &cfg)).starts_with("length ratio"));
        let looped = "the council will spend the council will spend the council will spend money";
        assert!(reason(check(SRC, looped, false, false, &cfg)).starts_with("repetition"));
        let one_pair = "Question: What will the council build?\nAnswer: 2,000 new homes by 2027.";
        assert!(reason(check(SRC, one_pair, false, true, &cfg)).starts_with("format: 1"));
        let invented = "The council will spend 15 million pounds on 2,000 new homes by 2027.";
        assert_eq!(reason(check(SRC, invented, false, false, &cfg)), "number fidelity: 15 not in the source");
    }

    #[test]
    fn a_new_name_or_a_near_copy_is_rejected_and_a_faithful_paraphrase_passes() {
        let cfg = GateConfig::default();
        let src = "Mayor Anne Hidalgo said Paris will spend 12 million euros on 2,000 new homes by 2027. \
                   The plan, backed by the EU, also adds bike lanes across the city.";
        let named = "Mayor Anne Hidalgo and President Macron said Paris will build 2,000 homes by 2027.";
        assert_eq!(
            reason(check(src, named, false, false, &cfg)),
            "entity fidelity: President, Macron not in the source"
        );
        let acronym = "Paris will spend 12 million euros, the NATO report said, on 2,000 homes by 2027.";
        assert_eq!(reason(check(src, acronym, false, false, &cfg)), "entity fidelity: NATO not in the source");
        let copy = src.replace("bike lanes", "cycle lanes");
        assert!(
            reason(check(src, &copy, false, false, &cfg)).starts_with("copy: 0.8"),
            "{}",
            reason(check(src, &copy, false, false, &cfg))
        );
        let faithful = "By 2027 Paris intends to build 2,000 new homes at a cost of 12 million euros, Hidalgo's \
                        office said. Backed by EU funds, the mayors' plan adds bike lanes too.";
        match check(src, faithful, false, false, &cfg) {
            Verdict::Accept { scores, .. } => {
                assert!(scores.new_entities.is_empty() && scores.copy_share < 0.2, "{scores:?}");
            }
            v => panic!("{v:?}"),
        }
        // A Q&A may quote its source more than a rewrite may.
        let qa = crate::stages::styles::builtin("qa").unwrap();
        let quoting = format!(
            "Question: What did Hidalgo say?\nAnswer: {}\n\nQuestion: What else?\nAnswer: Bike lanes.",
            &src[..85]
        );
        assert!(matches!(check_style(src, &quoting, false, &qa, &cfg), Verdict::Accept { .. }));
        let off = GateConfig { entity_fidelity: false, max_copy_share: 1.0, ..cfg };
        assert!(
            matches!(check(src, named, false, false, &off), Verdict::Accept { .. }),
            "both gates can be turned off"
        );
    }

    #[test]
    fn copying_the_worked_example_is_a_leak() {
        // The coverage gate rejects a leaked sentence first (its words are not the source's);
        // off, the leak gate's own reason shows.
        let cfg = GateConfig { min_coverage: 0.0, ..GateConfig::default() };
        let leaked = "The council will spend 12 million pounds. The project is expected to cost approximately four million pounds.";
        assert!(
            reason(check(&format!("{SRC} Four firms bid."), leaked, false, false, &GateConfig::default()))
                .starts_with("coverage: 0.43")
        );
        let medium = crate::stages::styles::builtin("medium").unwrap();
        let faithful = "The town council intends to build 2,000 new homes by 2027, at a cost of 12 million pounds.";
        assert!(matches!(check_style(SRC, faithful, false, &medium, &cfg), Verdict::Accept { .. }));
        let copied = format!("{faithful} The project is expected to cost approximately four million pounds.");
        // (A source with a four in it: the number gate would otherwise reject first.)
        let four = format!("{SRC} Four firms bid.");
        match check_style(&four, &copied, false, &medium, &cfg) {
            Verdict::Reject { reason, scores } => {
                assert!(reason.starts_with("example leak: \""), "{reason}");
                assert!(scores.example_leaks.contains(&"expected to cost approximately four".to_string()));
            }
            v => panic!("{v:?}"),
        }
        // Words the source itself has are not a leak, nor is a style without examples.
        let source = format!("{SRC} The project is expected to cost approximately four million pounds.");
        assert!(matches!(check_style(&source, &copied, false, &medium, &cfg), Verdict::Accept { .. }));
        let bare = Style { examples: vec![], ..medium.clone() };
        assert!(matches!(check_style(&four, &copied, false, &bare, &cfg), Verdict::Accept { .. }));
        let qa = crate::stages::styles::builtin("qa").unwrap();
        let asks = "Question: How much will the council spend?\nAnswer: 12 million pounds.\n\nQuestion: What will it build?\nAnswer: 2,000 new homes by 2027.";
        assert!(matches!(check_style(SRC, asks, false, &qa, &cfg), Verdict::Accept { .. }), "the format is not a leak");
        let off = Style { gates: Some(vec!["length".into()]), ..medium };
        assert!(matches!(check_style(SRC, &copied, false, &off, &cfg), Verdict::Accept { .. }), "gate not listed");
    }

    #[test]
    fn qa_pairs_and_numbers_are_parsed() {
        let qa = "Question: Who?\nAnswer: The council.\n**Question 2:** How much?\n**Answer 2:** 12 million pounds.";
        assert_eq!(qa_pairs(qa), 2);
        assert_eq!(
            check(SRC, qa, false, true, &GateConfig::default()),
            check(SRC, qa, false, true, &GateConfig::default())
        );
        assert_eq!(invented_numbers("3.5 and 1,200", "1200, 3.5 and 7."), vec!["7".to_string()]);
        let numbered = "Question 1: How much?\nAnswer 1: 12 million pounds.\n2. By 2031.";
        assert_eq!(invented_numbers(SRC, numbered), vec!["2031".to_string()], "enumerations are not facts");
        // Numbers in words: a figure the source lacks in any form is invented; "6" and "six",
        // "2,000" and "two thousand", "7m" and "seven million" are one number.
        let src = "The play is banned. About 2,000 people and six actors signed; it cost £7m.";
        let said = "Six actors, some two thousand people, seven million pounds: 6 of them";
        assert!(invented_numbers(src, said).is_empty(), "{:?}", invented_numbers(src, said));
        assert_eq!(invented_numbers(src, "It is banned for three months."), vec!["three".to_string()]);
        assert_eq!(invented_numbers(src, "One of the twenty-five actors"), vec!["twenty-five".to_string()]);
        assert!((repetition("a b c a b c", 3) - 1.0 / 4.0).abs() < 1e-12);
        assert!(!is_refusal("The report says the council is sorry for the delay."));
    }
}
