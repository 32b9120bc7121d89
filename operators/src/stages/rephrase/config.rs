//! The rephrase stage's settings.

use serde::{Deserialize, Serialize};

use crate::stages::gates::GateConfig;
use crate::stages::styles::Style;

/// Settings of the rephrase stage: only what the stage reads (the backend it drives is built
/// from its own configuration and passed in).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RephraseConfig {
    /// Longest the operator decodes before yielding to the other operators of its worker.
    pub time_slice_ms: u64,
    /// New answers for a task whose answer a gate rejects (`retry_gates`, and meaning with an
    /// embedder) or that misses its style's reading level or cosine aim; the best answer goes on
    /// to the gate stage either way. Retries sample at `retry_temperature`. A style's own
    /// `retries` overrides this for its tasks.
    pub retries: u32,
    pub retry_temperature: f32,
    pub retry_gates: GateConfig,
    /// Constrained decoding: the model may only write numbers of its chunk (see
    /// [`crate::engine::NumberGuard`]), for styles whose number-fidelity gate is on.
    pub constrain_numbers: bool,
    /// Constrained decoding: mid-sentence, the model may only write capitalised words of its
    /// chunk (see [`crate::engine::NameGuard`]), for styles whose entity gate is on.
    pub constrain_names: bool,
    /// Constrained decoding: with the name guard, every word the model starts must begin a word
    /// of its chunk (any inflection sharing the stem's spelling), a function word or a format
    /// word (see [`crate::engine::NameGuard::with_vocabulary`]). Off by default: measured on the
    /// yardstick (`benchmarks/RESULTS.md`).
    pub constrain_vocabulary: bool,
    /// Constrained decoding: the model may not copy token n-grams of the style's worked examples
    /// that its chunk lacks (see [`crate::engine::LeakGuard`]), for styles whose leak gate is on.
    pub constrain_leaks: bool,
    /// Constrained decoding: a Q&A style's question lines are followed by `Answer:` and its
    /// answer lines by `Question:` (see [`crate::engine::guards::qa::QaFormat`]).
    pub constrain_format: bool,
    /// With `constrain_format`, a Q&A may not end (the model's end of sequence, the soft stop)
    /// before it has answered the gates' `min_qa_pairs` questions. Off: on held-out text it
    /// turned most Q&A format rejections into accepted rows, nearly none of them read as
    /// faithful (`benchmarks/RESULTS.md`); for a model that keeps to its source.
    pub hold_qa_pairs: bool,
    /// A retry keeps the best answer up to the sentence its gate flagged and continues from
    /// there (not for Q&A styles, whose trimming keeps their leading pairs instead).
    pub resume_retries: bool,
    /// In process, an answer stops at its first sentence that one of its style's sentence gates
    /// rejects ([`crate::stages::gates::flagged::SENTENCE_GATES`]: each judges a sentence on its
    /// own, so what would follow cannot save the answer): no tokens are spent after it, and with
    /// `resume_retries` the retry writes that sentence again. A Q&A that stops so keeps at most
    /// the pairs before that sentence (trimming), which is all that more text could have kept.
    pub stop_early: bool,
    /// Context-aware decoding (in process): every step weighs the model's logits against its
    /// logits for the same prompt without the chunk, `(1 + w)·with − w·without`, favouring what
    /// the chunk says over what the model would write anyway (see
    /// [`crate::engine::decode::contrast`]). 0: off. It decodes each prompt twice.
    pub context_weight: f32,
    /// The styles that tasks index into (the plan's `STYLE` statements, not an option).
    #[serde(skip)]
    pub styles: Vec<Style>,
}

impl Default for RephraseConfig {
    fn default() -> Self {
        RephraseConfig {
            time_slice_ms: 100,
            retries: 0,
            retry_temperature: 0.7,
            retry_gates: GateConfig::default(),
            constrain_numbers: true,
            constrain_names: true,
            constrain_vocabulary: false,
            constrain_leaks: true,
            constrain_format: true,
            hold_qa_pairs: false,
            resume_retries: true,
            stop_early: true,
            context_weight: 0.0,
            styles: Vec::new(),
        }
    }
}
