//! The `entailment` gate: a user's cross-encoder (an NLI or fact-checking classifier, see
//! [`crate::engine::encoders::entail`]) reads each claim of a kept row with the whole source chunk as its
//! evidence, as MiniCheck and AlignScore read a claim against a document chunk; a claim fails
//! below `min_entailment` (or when the model gives no number). Claims are the grounding gates'
//! ([`super::grounding::claims`]): sentences, and in a Q&A each question with its answer (a
//! question alone states nothing). Off unless `GATES WITH (entailment = '...')` names a model.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::engine::Entailer;
use crate::stages::gates::grounding::claims;

/// The worker's cross-encoder for the `entailment` gate.
pub type SharedEntailer = Rc<RefCell<Entailer>>;

/// One claim of a kept text and the probability that its source entails it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClaimEntailment {
    pub claim: String,
    pub entailment: f32,
}

/// Each claim of `text` (a Q&A when `qa`) read against `source`, and the reason the row fails
/// the gate (its least entailed claim below `min`, or one without a finite probability), if it does.
pub fn entailment_gate(
    entailer: &SharedEntailer,
    source: &str,
    text: &str,
    qa: bool,
    min: f64,
) -> anyhow::Result<(Vec<ClaimEntailment>, Option<String>)> {
    let claims = claims(text, qa);
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
