//! The `entailment` gate: a user's cross-encoder (an NLI or fact-checking classifier, see
//! [`crate::engine::entail`]) reads each claim of a kept row with the whole source chunk as its
//! evidence, as MiniCheck and AlignScore read a claim against a document chunk; a claim fails
//! below `min_entailment`. A question is read with the answer after it (a question alone states
//! nothing). Off unless `GATES WITH (entailment = '...')` names a model.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::engine::Entailer;
use crate::fidelity::sentences::claims;

/// The worker's cross-encoder for the `entailment` gate.
pub type SharedEntailer = Rc<RefCell<Entailer>>;

/// One claim of a kept text and the probability that its source entails it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClaimEntailment {
    pub claim: String,
    pub entailment: f32,
}

/// The claims of `text` as the entailment gate reads them: each sentence, a question joined to
/// the sentence that answers it.
pub fn entailment_claims(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let mut open_question = false;
    for c in claims(text) {
        match out.last_mut() {
            Some(q) if open_question => {
                q.push(' ');
                q.push_str(c);
            }
            _ => out.push(c.to_string()),
        }
        open_question = c.ends_with('?');
    }
    out
}

/// Each claim of `text` read against `source`, and the reason the row fails the gate (its
/// least entailed claim below `min`), if it does.
pub fn entailment_gate(
    entailer: &SharedEntailer,
    source: &str,
    text: &str,
    min: f64,
) -> anyhow::Result<(Vec<ClaimEntailment>, Option<String>)> {
    let claims = entailment_claims(text);
    let refs: Vec<&str> = claims.iter().map(String::as_str).collect();
    let probs = entailer.borrow_mut().entailment(source, &refs)?;
    let read: Vec<ClaimEntailment> =
        claims.into_iter().zip(probs).map(|(claim, entailment)| ClaimEntailment { claim, entailment }).collect();
    let failed =
        read.iter().filter(|c| (c.entailment as f64) < min).min_by(|a, b| a.entailment.total_cmp(&b.entailment));
    let reason = failed.map(|c| {
        format!("entailment: the source entails \"{}\" with probability {:.2}, below {min:.2}", c.claim, c.entailment)
    });
    Ok((read, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_is_read_with_its_answer_and_labels_are_dropped() {
        let qa = "Question: When did the war start?\nAnswer: In 1967. It ended in 1970.";
        assert_eq!(entailment_claims(qa), ["When did the war start? In 1967.", "It ended in 1970."]);
        assert_eq!(entailment_claims("The dam opened. Is it big?"), ["The dam opened.", "Is it big?"]);
    }
}
