//! The whole verdict on one answer: the model-free checks, then meaning and sentence support
//! with the embedder, and for a rejected Q&A the leading pairs that pass. Shared by the gate
//! stage and the rephrase stage's choice among a task's answers.

use crate::engine::{Embedder, cosine};
use crate::stages::context::SharedEmbedder;
use crate::stages::styles::Style;

use super::{GateConfig, Scores, Verdict, check_style, pair_prefixes, qa_pairs, strip_chatter, support};

impl GateConfig {
    /// Every gate on one answer whose cosine to its source is `cosine` (NaN when unknown), as the
    /// gate stage judges it: a rejected Q&A is cut to its longest run of leading pairs that
    /// passes (with `trim_qa_pairs`). Returns the verdict and the kept text's cosine. The
    /// rephrase stage ranks a task's answers by this same verdict.
    pub fn judge_text(
        &self,
        src: &str,
        text: &str,
        truncated: bool,
        cosine: f64,
        style: &Style,
        embedder: Option<&SharedEmbedder>,
    ) -> (Verdict, f64) {
        let checked = check_style(src, text, truncated, style, self);
        match self.model_gates(src, checked, cosine, style, embedder) {
            v @ Verdict::Reject { .. } if style.qa_format && self.trim_qa_pairs => {
                self.leading_pairs(src, text, style, embedder).unwrap_or((v, cosine))
            }
            v => (v, cosine),
        }
    }

    /// The gates that need the embedder (meaning, sentence support) on the model-free gates'
    /// verdict.
    fn model_gates(
        &self,
        src: &str,
        verdict: Verdict,
        cosine: f64,
        style: &Style,
        embedder: Option<&SharedEmbedder>,
    ) -> Verdict {
        let min_cos = style.min_cosine.unwrap_or(self.min_cosine);
        let verdict = match verdict {
            Verdict::Accept { scores, .. } if style.gate_on("meaning") && cosine.is_finite() && cosine < min_cos => {
                Verdict::Reject { reason: format!("meaning: cosine {cosine:.3} below {min_cos}"), scores }
            }
            v => v,
        };
        match (verdict, embedder) {
            (Verdict::Accept { text, scores }, Some(e)) if style.gate_on("support") => {
                self.supported(src, text, scores, style, &mut e.borrow_mut())
            }
            (v, _) => v,
        }
    }

    /// A rejected Q&A's longest run of leading pairs that passes every gate, with its own
    /// cosine; the dropped pairs are recorded as trimmed.
    fn leading_pairs(
        &self,
        src: &str,
        text: &str,
        style: &Style,
        embedder: Option<&SharedEmbedder>,
    ) -> Option<(Verdict, f64)> {
        for kept in pair_prefixes(text).into_iter().filter(|k| qa_pairs(k) >= self.min_qa_pairs) {
            // The model-free gates first: only a text that passes them is worth embedding.
            let checked = check_style(src, kept, false, style, self);
            if !matches!(checked, Verdict::Accept { .. }) {
                continue;
            }
            // Embedded as `cosines` embeds a whole answer.
            let cos = match embedder.map(|e| e.borrow_mut().embed(&[src, &strip_chatter(kept).0])) {
                Some(Ok(v)) => cosine(&v[0], &v[1]) as f64,
                _ => f64::NAN,
            };
            if let Verdict::Accept { text: t, mut scores } = self.model_gates(src, checked, cos, style, embedder) {
                scores.trimmed_sentence = Some(text[kept.len()..].trim().to_string());
                return Some((Verdict::Accept { text: t, scores }, cos));
            }
        }
        None
    }

    /// The support gate on an accepted text: every sentence needs a source sentence at the
    /// style's threshold; a trailing sentence without one is dropped when what is left passes
    /// every gate, else the text is rejected with the sentence in the reason.
    fn supported(&self, src: &str, text: String, mut scores: Scores, style: &Style, e: &mut Embedder) -> Verdict {
        let min = self.min_sentence_support;
        let measured = match support(e, src, &text) {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!("embedder failed, support gate skipped for one row: {err:#}");
                return Verdict::Accept { text, scores };
            }
        };
        let weak: Vec<&(String, f64)> = measured.iter().filter(|(_, c)| *c < min).collect();
        let Some((first, cos)) = weak.first().map(|w| (w.0.clone(), w.1)) else {
            return Verdict::Accept { text, scores };
        };
        let last = measured.last().map(|l| l.0.as_str());
        if let ([only], Some(last)) = (weak.as_slice(), last)
            && measured.len() > 1
            && only.0 == last
            && let Some(at) = text.rfind(last)
        {
            let kept = text[..at].trim_end();
            if let Verdict::Accept { text: kept, scores: mut s } = check_style(src, kept, false, style, self) {
                s.trimmed_sentence = Some(last.to_string());
                return Verdict::Accept { text: kept, scores: s };
            }
        }
        scores.unsupported_sentences = weak.iter().map(|w| w.0.clone()).collect();
        Verdict::Reject {
            reason: format!("unsupported: \"{first}\" (best source cosine {cos:.2} below {min})"),
            scores,
        }
    }
}
