//! Where in an answer a rejecting gate's finding lies: the sentence that holds the first word,
//! figure, name or claim it flagged. A retry can then keep the answer up to that sentence and ask
//! the model to go on from there, rather than write the whole answer again.

use crate::fidelity::sentences::{sentences, word_char};
use crate::stages::gates::Scores;

/// What the gate named by `reason` flagged in `scores` (empty for gates that judge the answer
/// as a whole: length, repetition, copying, meaning, format).
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

/// The byte offset in `text` where the sentence holding the first thing that the gate of
/// `reason` flagged begins; `None` when the gate judged the answer as a whole, when the finding
/// is not found in `text`, or when it lies in the first sentence (nothing to keep).
pub fn resume_point(text: &str, reason: &str, scores: &Scores) -> Option<usize> {
    let first =
        flagged(reason, scores).iter().filter(|f| !f.trim().is_empty()).filter_map(|f| text.find(f.trim())).min()?;
    let base = text.as_ptr() as usize;
    let start = sentences(text).iter().map(|s| s.as_ptr() as usize - base).take_while(|&at| at <= first).last()?;
    text[..start].chars().any(word_char).then_some(start)
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
        let early = Scores { invented_numbers: vec!["1961".into()], ..Default::default() };
        assert_eq!(resume_point(text, "number fidelity: 1961 not in the source", &early), None, "nothing to keep");
        assert_eq!(resume_point(text, "copy: 0.9 of 5-grams copied", &numbers), None, "a whole-answer gate");
        let g = Grounding { weakest_claim: "not in the answer".into(), ..Default::default() };
        assert_eq!(resume_point(text, "coverage: 0.2 of ...", &Scores { grounding: g, ..Default::default() }), None);
    }
}
