//! The gates that read each claim of a kept row with a model of the user's: the `lm` gate (a
//! language model, [`super::lm`]) and the `entailment` gate (a cross-encoder, [`super::entail`]).
//! They run after every other gate has passed the row, so a model reads only rows that could
//! still be kept.

use crate::engine::{Decoder, Entailer};
use crate::stages::gates::entail::{SharedEntailer, entailment_gate};
use crate::stages::gates::lm::{SharedReader, lm_gate};
use crate::stages::gates::{GateConfig, Verdict};
use crate::stages::styles::Style;

/// A worker's claim-reading models, each present when the plan names it. Clones share them.
#[derive(Clone, Default)]
pub struct ClaimCheckers {
    pub reader: Option<SharedReader>,
    pub entailer: Option<SharedEntailer>,
}

impl ClaimCheckers {
    pub fn new(reader: Option<Decoder>, entailer: Option<Entailer>) -> Self {
        use std::{cell::RefCell, rc::Rc};
        ClaimCheckers {
            reader: reader.map(|r| Rc::new(RefCell::new(r))),
            entailer: entailer.map(|e| Rc::new(RefCell::new(e))),
        }
    }
}

impl GateConfig {
    /// The claim-reading gates that `style` keeps on, on an accepted verdict: a reject when a
    /// claim fails one (or its model fails on it), with every claim's reading in its scores.
    pub fn check_claims(&self, checkers: &ClaimCheckers, style: &Style, source: &str, verdict: Verdict) -> Verdict {
        let mut verdict = verdict;
        if let Some(reader) = checkers.reader.as_ref().filter(|_| style.gate_on("lm")) {
            verdict = self.read_with(verdict, "lm grounding", |text, scores| {
                let (claims, failed) = lm_gate(reader, source, text, self.max_unsupported_share)?;
                scores.lm = claims;
                Ok(failed)
            });
        }
        if let Some(entailer) = checkers.entailer.as_ref().filter(|_| style.gate_on("entailment")) {
            verdict = self.read_with(verdict, "entailment", |text, scores| {
                let (claims, failed) = entailment_gate(entailer, source, text, style.qa_format, self.min_entailment)?;
                scores.entailment = claims;
                Ok(failed)
            });
        }
        verdict
    }

    fn read_with(
        &self,
        verdict: Verdict,
        gate: &str,
        read: impl FnOnce(&str, &mut super::Scores) -> anyhow::Result<Option<String>>,
    ) -> Verdict {
        let Verdict::Accept { text, mut scores } = verdict else { return verdict };
        match read(&text, &mut scores) {
            Ok(None) => Verdict::Accept { text, scores },
            Ok(Some(reason)) => Verdict::Reject { reason, scores },
            Err(e) => Verdict::Reject { reason: format!("{gate}: the model failed: {e:#}"), scores },
        }
    }
}
