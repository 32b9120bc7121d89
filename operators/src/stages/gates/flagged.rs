//! Where in an answer a rejecting gate's finding lies: the sentence that holds the first word,
//! figure, name or claim it flagged. A retry can then keep the answer before that sentence and
//! ask the model to go on from there, rather than write the whole answer again.

use crate::fidelity::sentences::{sentences, word_char};
use crate::stages::gates::{GateConfig, Scores, Verdict, check_style};
use crate::stages::styles::Style;

/// The gates whose findings lie in sentences; the others judge an answer as a whole (length,
/// repetition, copying, meaning, format) or need the embedder (support).
pub const SENTENCE_GATES: [&str; 9] =
    ["numbers", "entities", "leak", "words", "coverage", "figures", "names", "anchors", "polarity"];

/// `style` with only its sentence gates on ([`SENTENCE_GATES`]).
pub fn sentence_gates(style: &Style) -> Style {
    let only: Vec<String> = SENTENCE_GATES.iter().filter(|g| style.gate_on(g)).map(|g| g.to_string()).collect();
    Style { gates: Some(only), ..style.clone() }
}

/// What the gate named by `reason` flagged in `scores` (empty for the other gates).
fn flagged(reason: &str, s: &Scores) -> Vec<String> {
    let g = &s.grounding;
    // "15 (board)": the figure or name, without the neighbours it was read with.
    let bare = |v: &[String]| v.iter().map(|f| f.split(" (").next().unwrap_or(f).to_string()).collect();
    match reason.split(':').next().unwrap_or_default() {
        "number fidelity" => s.invented_numbers.clone(),
        "entity fidelity" => s.new_entities.clone(),
        "example leak" => s.example_leaks.clone(),
        "unsupported" => s.unsupported_sentences.clone(),
        "unknown words" => g.unknown_words.clone(),
        "coverage" => vec![g.weakest_claim.clone()],
        "figures" => bare(&g.unbound_figures),
        "names" => bare(&g.unbound_names),
        "anchors" => g.scattered_anchors.clone(),
        "polarity" => g.flipped_polarity.clone(),
        _ => vec![],
    }
}

/// Lower-case words separated by single spaces, with a space at each end: findings are
/// recorded lower-cased or without punctuation by some gates, and match here as whole words.
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for w in text.split(|c: char| !word_char(c)).filter(|w| !w.is_empty()) {
        out.push_str(&w.to_lowercase());
        out.push(' ');
    }
    out
}

/// The byte offset in `text` where the first sentence that holds a finding of the gate of
/// `reason` begins (a sentence holds a finding when the finding's words are among its own, or
/// its words among a claim's that spans sentences); `None` when the gate judged the answer as a
/// whole or nothing it flagged is found.
pub fn resume_point(text: &str, reason: &str, scores: &Scores) -> Option<usize> {
    let found: Vec<String> = flagged(reason, scores).iter().map(|f| words(f)).filter(|f| f.len() > 1).collect();
    let base = text.as_ptr() as usize;
    sentences(text)
        .into_iter()
        .find(|s| {
            let w = words(s);
            w.len() > 1 && found.iter().any(|f| w.contains(f.as_str()) || f.contains(w.as_str()))
        })
        .map(|s| s.as_ptr() as usize - base)
}

/// Where a retry of `text` (rejected with `reason` and `scores`) may resume: before the sentence
/// of the rejecting gate's first finding, moved back while the part kept still fails one of
/// `style`'s sentence gates, and only past the style's forced `answer_prefix` with a word of
/// the model's own kept. The kept part ends where the sentence begins, spaces trimmed.
pub fn resume_at(
    source: &str,
    text: &str,
    reason: &str,
    scores: &Scores,
    style: &Style,
    gates: &GateConfig,
) -> Option<usize> {
    let forced = style.answer_prefix.len();
    let sentence_gates = sentence_gates(style);
    let mut at = resume_point(text, reason, scores)?;
    loop {
        at = forced + text.get(forced..at)?.trim_end_matches([' ', '\t']).len();
        if !text[forced..at].chars().any(word_char) {
            return None;
        }
        match check_style(source, &text[..at], false, &sentence_gates, gates) {
            Verdict::Accept { .. } => return Some(at),
            Verdict::Reject { reason, scores } => {
                at = resume_point(&text[..at], &reason, &scores).filter(|&a| a < at)?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::gates::Grounding;

    #[test]
    fn a_retry_resumes_at_the_sentence_of_the_first_finding() {
        let text = "The dam opened in 1961. It holds 15 lakes. It cost 3 million.";
        let numbers = Scores { invented_numbers: vec!["15".into(), "3".into()], ..Default::default() };
        assert_eq!(resume_point(text, "number fidelity: 15, 3 not in the source", &numbers), Some(24));
        assert_eq!(&text[24..], "It holds 15 lakes. It cost 3 million.");
        let g = Grounding { unbound_figures: vec!["3 (million)".into()], ..Default::default() };
        let figures = Scores { grounding: g, ..Default::default() };
        assert_eq!(resume_point(text, "figures: 3 (million) stand beside ...", &figures), Some(43));
        assert_eq!(resume_point(text, "copy: 0.9 of 5-grams copied", &numbers), None, "a whole-answer gate");
        let g = Grounding { weakest_claim: "not in the answer".into(), ..Default::default() };
        assert_eq!(resume_point(text, "coverage: 0.2 of ...", &Scores { grounding: g, ..Default::default() }), None);
        // Lower-cased names match whole words only: "will" is not in "Willow" nor "It" in "its".
        let named = "Willow Smith said it. Will Smith sang.";
        let g = Grounding { unbound_names: vec!["will (sang)".into()], ..Default::default() };
        assert_eq!(
            resume_point(named, "names: will (sang) stand beside ...", &Scores { grounding: g, ..Default::default() }),
            Some(22)
        );
    }

    #[test]
    fn the_part_kept_passes_the_styles_sentence_gates_and_keeps_the_forced_prefix() {
        let src = "The dam opened in 1961. It holds four lakes.";
        let style = crate::stages::styles::builtin("easy").unwrap();
        let gates = GateConfig::default();
        let resume = |text: &str, bad: &[&str], style: &Style| {
            let scores = Scores { invented_numbers: bad.iter().map(|b| b.to_string()).collect(), ..Default::default() };
            resume_at(src, text, "number fidelity: ...", &scores, style, &gates)
        };
        let text = "The dam opened in 1961. It holds 15 lakes.";
        assert_eq!(resume(text, &["15"], &style), Some(23), "the kept part ends before the space");
        // A kept part with a finding of another sentence gate goes back further: here nothing stays.
        let text = "The dam opened in 1961 near Paris. It holds 15 lakes.";
        assert_eq!(resume(text, &["15"], &style), None, "Paris is a name the source lacks");
        let lenient = Style { gates: Some(vec!["numbers".into()]), ..style.clone() };
        assert_eq!(resume(text, &["15"], &lenient), Some(34), "unless the style has no entity gate");
        // Nothing of the model's own before the finding: a fresh answer.
        let prefixed = Style { answer_prefix: "Summary. ".into(), ..style };
        assert_eq!(resume("Summary. It holds 15 lakes.", &["15"], &prefixed), None);
    }
}
