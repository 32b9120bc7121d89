//! **Gate** stage: [`Rephrased`] answers in; accepted [`Synthetic`] rows and [`Reject`]s (stage
//! `gate`, with reason, scores and the whole output) out. The checks themselves are pure
//! functions ([`checks`]); the stage adds the meaning gate (cosine of sentence embeddings from
//! the context's embedder), the lineage, and the per-style counts.

mod chatter;
mod checks;
pub mod claims;
pub mod entail;
mod faith;
pub mod flagged;
mod grounding;
mod judge;
pub mod lm;
mod qa;

pub use chatter::{is_refusal, only_chatter, strip_chatter};
pub use checks::*;
pub use faith::{NOT_NAMES, QA_LABELS, copy_share, format_words, new_entities, sentences, support};
pub use grounding::{Grounding, claims, grounding};
pub use qa::{pair_prefixes, qa_pairs, qa_repetition};

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;
use tokenizers::Tokenizer;

use crate::engine::{Embedder, Finish, cosine};
use crate::record::{Reject, Synthetic};
use crate::sql::heuristics::flesch_kincaid_grade;
use crate::stages::chunk::{LENGTH_BINS, LENGTH_HI};
use crate::stages::context::{SharedEmbedder, StageContext};
use crate::stages::fanout::Rephrased;
use crate::stages::gates::claims::ClaimCheckers;
use crate::stages::styles::Style;
use crate::state::metrics::{Histogram, MetricSet};

/// Cosine histograms (`gates.<style>.cosine`, `.cosine_all`): 200 bins over [0, 1].
pub const COSINE_BINS: usize = 200;

/// Settings of the gate stage: the gates, the styles that tasks index into, and the lineage
/// recorded with every row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateStageConfig {
    pub gates: GateConfig,
    pub styles: Vec<Style>,
    pub model: String,
    pub weights_hash: String,
    /// Decoding settings as JSON.
    pub generation: String,
}

impl GateStageConfig {
    /// Gates one rephrasing whose cosine to its source is `cosine` (NaN when unknown).
    pub fn judge(
        &self,
        tokenizer: &Tokenizer,
        r: Rephrased,
        cosine: f64,
        embedder: Option<&SharedEmbedder>,
        checkers: &ClaimCheckers,
    ) -> Result<Synthetic, Reject> {
        let style = &self.styles[r.task.style as usize];
        let src = &r.task.chunk.text;
        let (verdict, cosine) = match &r.error {
            Some(e) => (Verdict::Reject { reason: format!("model error: {e}"), scores: Scores::default() }, cosine),
            None => self.gates.judge_text(src, &r.text, r.finish == Finish::Length, cosine, style, embedder),
        };
        let verdict = self.gates.check_claims(checkers, style, src, verdict);
        let c = &r.task.chunk;
        match verdict {
            Verdict::Accept { text, mut scores } => {
                scores.cosine = cosine.is_finite().then_some(cosine);
                let n_tokens = tokenizer.encode(text.as_str(), false).map(|e| e.len()).unwrap_or(0) as u32;
                Ok(Synthetic {
                    n_tokens,
                    style: style.name.clone(),
                    doc_id: c.doc_id.clone(),
                    chunk_index: c.chunk_index,
                    byte_start: c.byte_start,
                    byte_end: c.byte_end,
                    source_file: c.source_file.clone(),
                    source_line: c.source_line,
                    model: self.model.clone(),
                    weights_hash: self.weights_hash.clone(),
                    template_hash: style.template_hash(),
                    generation: self.generation.clone(),
                    cosine,
                    length_ratio: scores.length_ratio,
                    repetition: scores.repetition,
                    qa_pairs: scores.qa_pairs as u32,
                    chatter_stripped: scores.chatter_stripped,
                    invented_numbers: scores.invented_numbers.len() as u32,
                    attempts: r.attempts,
                    numbers_guarded: r.guarded,
                    names_guarded: r.names_guarded,
                    copy_share: scores.copy_share,
                    new_entities: scores.new_entities.len() as u32,
                    unsupported_sentences: scores.unsupported_sentences.len() as u32,
                    trimmed: scores.trimmed_sentence.is_some(),
                    coverage: scores.grounding.coverage,
                    unknown_words: scores.grounding.unknown_words.len() as u32,
                    unbound_figures: scores.grounding.unbound_figures.len() as u32,
                    unbound_names: scores.grounding.unbound_names.len() as u32,
                    scattered_anchors: scores.grounding.scattered_anchors.len() as u32,
                    flipped_polarity: scores.grounding.flipped_polarity.len() as u32,
                    entailment: scores.entailment.iter().map(|c| c.entailment as f64).reduce(f64::min),
                    lm_unsupported: scores.lm.iter().map(|c| c.unsupported_share as f64).reduce(f64::max),
                    text,
                })
            }
            Verdict::Reject { reason, mut scores } => {
                scores.cosine = cosine.is_finite().then_some(cosine);
                Err(Reject {
                    source_file: c.source_file.clone(),
                    source_line: c.source_line,
                    stage: "gate".into(),
                    reason,
                    snippet: r.text,
                    doc_id: c.doc_id.clone(),
                    chunk_index: c.chunk_index,
                    style: style.name.clone(),
                    scores: serde_json::to_string(
                        &serde_json::json!({"attempts": r.attempts, "numbers_guarded": r.guarded, "names_guarded": r.names_guarded, "gates": scores}),
                    )
                    .unwrap_or_default(),
                })
            }
        }
    }
}

/// Rows embedded per call: one (its source and its rewrite), so that a row's cosine depends on
/// that row alone and not on which rows arrived with it (padding to a neighbour's length moves
/// the last bits of the float). Output is then the same whatever the batching, also after a job
/// resumes with part of its rephrasings taken from the journal.
const EMBED_BATCH: usize = 1;

/// Cosines of each rephrasing to its source (NaN without an embedder or on an embedder error,
/// which then leaves the meaning gate out for those rows rather than dropping them). A row that
/// already carries its cosine (from the rephrase stage) is not embedded again.
pub fn cosines(embedder: Option<&mut Embedder>, rows: &[Rephrased]) -> Vec<f64> {
    let mut out: Vec<f64> = rows.iter().map(|r| r.cosine.unwrap_or(f64::NAN)).collect();
    let Some(e) = embedder else { return out };
    let idx: Vec<usize> =
        (0..rows.len()).filter(|&i| rows[i].cosine.is_none() && !rows[i].text.trim().is_empty()).collect();
    for part in idx.chunks(EMBED_BATCH) {
        let mut texts: Vec<&str> = part.iter().map(|&i| rows[i].task.chunk.text.as_str()).collect();
        let cleaned: Vec<String> = part.iter().map(|&i| strip_chatter(&rows[i].text).0).collect();
        texts.extend(cleaned.iter().map(String::as_str));
        match e.embed(&texts) {
            Ok(v) => {
                for (k, &i) in part.iter().enumerate() {
                    out[i] = cosine(&v[k], &v[k + part.len()]) as f64;
                }
            }
            Err(err) => tracing::warn!("embedder failed, meaning gate skipped for {} rows: {err:#}", part.len()),
        }
    }
    out
}

/// Extension trait: the **gate** stage (see the module docs).
pub trait Gate<'scope, T: Timestamp> {
    /// Gates every answer; the context's tokenizer counts row tokens, its embedder (if any)
    /// scores meaning and sentence support. Counts per style, under `gates.<style>.`: `accepted`,
    /// `tokens`, `invented_numbers`, the accepted rows `with_new_entities`, `with_unsupported`
    /// (sentences) and `trimmed`, the sum `fk_grade`, the histograms `cosine` (accepted rows),
    /// `cosine_all` (every answer), `copy_share` and `length`, and `rejected.<class>`; and
    /// `rejects.<class>`.
    fn gate(
        self,
        config: &GateStageConfig,
        ctx: &StageContext,
    ) -> (StreamVec<'scope, T, Synthetic>, StreamVec<'scope, T, Reject>);
}

impl<'scope, T: Timestamp> Gate<'scope, T> for StreamVec<'scope, T, Rephrased> {
    fn gate(
        self,
        config: &GateStageConfig,
        ctx: &StageContext,
    ) -> (StreamVec<'scope, T, Synthetic>, StreamVec<'scope, T, Reject>) {
        let tokenizer = ctx.tokenizer_for("gate");
        let (cfg, ctx) = (config.clone(), ctx.clone());
        let judged = self
            .unary(Pipeline, "Gate", move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        // Without a tokenizer the run has failed (see `ctx.fail`): drop the input.
                        let Some(tok) = &tokenizer else { return };
                        for batch in data {
                            let t0 = std::time::Instant::now();
                            let rows: Vec<Rephrased> = std::mem::take(batch);
                            let emb = ctx.embedder.as_ref();
                            let cos = cosines(emb.map(|e| e.borrow_mut()).as_deref_mut(), &rows);
                            for (r, c) in rows.into_iter().zip(cos) {
                                let judged = cfg.judge(tok, r, c, ctx.embedder.as_ref(), &ctx.checkers);
                                ctx.metrics.update(|m| count(m, &judged, c));
                                if let Err(r) = &judged {
                                    ctx.count_reject(r);
                                }
                                session.give(judged);
                            }
                            let s = t0.elapsed().as_secs_f64();
                            ctx.metrics.update(|m| *m.sums.entry("time.gates_s".into()).or_default() += s);
                        }
                    });
                }
            })
            .container::<Vec<Result<Synthetic, Reject>>>();
        judged.ok_err(|r| r)
    }
}

fn hist(m: &mut MetricSet, name: String, hi: f64, bins: usize) -> &mut Histogram {
    m.histograms.entry(name).or_insert_with(|| Histogram::new(hi, bins))
}

/// A gated row's counts under `gates.<style>.`.
fn count(m: &mut MetricSet, judged: &Result<Synthetic, Reject>, cos: f64) {
    let style = match judged {
        Ok(s) => &s.style,
        Err(r) => &r.style,
    };
    let p = format!("gates.{style}.");
    hist(m, format!("{p}cosine_all"), 1.0, COSINE_BINS).add(cos);
    match judged {
        Ok(s) => {
            for (name, n) in
                [("accepted", 1), ("tokens", s.n_tokens as u64), ("invented_numbers", s.invented_numbers as u64)]
            {
                *m.counters.entry(format!("{p}{name}")).or_default() += n;
            }
            *m.counters.entry("gates.accepted_tokens".into()).or_default() += s.n_tokens as u64;
            *m.sums.entry(format!("{p}fk_grade")).or_default() += flesch_kincaid_grade(&s.text);
            let flags = [("with_new_entities", s.new_entities > 0), ("with_unsupported", s.unsupported_sentences > 0)];
            for (name, _) in flags.iter().chain(&[("trimmed", s.trimmed)]).filter(|f| f.1) {
                *m.counters.entry(format!("{p}{name}")).or_default() += 1;
            }
            hist(m, format!("{p}copy_share"), 1.0, COSINE_BINS).add(s.copy_share);
            hist(m, format!("{p}coverage"), 1.0, COSINE_BINS).add(s.coverage);
            if let Some(e) = s.entailment {
                hist(m, format!("{p}entailment"), 1.0, COSINE_BINS).add(e);
            }
            if let Some(u) = s.lm_unsupported {
                hist(m, format!("{p}lm_unsupported"), 1.0, COSINE_BINS).add(u);
            }
            hist(m, format!("{p}cosine"), 1.0, COSINE_BINS).add(s.cosine);
            hist(m, format!("{p}length"), LENGTH_HI, LENGTH_BINS).add(s.n_tokens as f64);
        }
        Err(r) => *m.counters.entry(format!("{p}rejected.{}", r.class())).or_default() += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Chunk;
    use crate::stages::fanout::StyleTask;
    use crate::stages::styles::builtin;

    const SRC: &str = "The city council met on Tuesday to discuss the budget for schools and roads. Members \
                       said the plan would cost 12 million pounds over three years. Local businesses welcomed \
                       the news and said the roads had been in a poor state for a long time.";
    const PAIRS: &str = "Question: When did the city council meet?\nAnswer: It met on Tuesday.\n\n\
                         Question: What would the plan cost?\nAnswer: It would cost 12 million pounds over three years.\n\n\
                         Question: How did local businesses react?\nAnswer: They welcomed the news about the roads.";

    fn judge(cfg: &GateStageConfig, text: &str, finish: Finish) -> Result<Synthetic, Reject> {
        let chunk = Chunk {
            doc_id: "d".into(),
            chunk_index: 0,
            text: SRC.into(),
            n_tokens: 0,
            byte_start: 0,
            byte_end: 0,
            source_file: "f".into(),
            source_line: 1,
        };
        let r = Rephrased {
            task: StyleTask { chunk, style: 0 },
            text: text.into(),
            finish,
            prompt_tokens: 0,
            generated_tokens: 0,
            error: None,
            attempts: 1,
            spent_tokens: 0,
            queued: 0,
            cosine: None,
            guarded: 0,
            names_guarded: 0,
        };
        cfg.judge(&crate::testkit::tiny_tokenizer(), r, f64::NAN, None, &Default::default())
    }

    #[test]
    fn a_qa_keeps_its_leading_pairs_when_its_last_pair_fails_a_gate() {
        let cfg = GateStageConfig { styles: vec![builtin("qa").unwrap()], ..Default::default() };
        assert!(judge(&cfg, PAIRS, Finish::Eos).is_ok_and(|s| !s.trimmed && s.qa_pairs == 3));
        // A fourth pair with a name the source lacks, cut off at the token limit.
        let bad = format!("{PAIRS}\n\nQuestion: Who paid for it?\nAnswer: Mayor Watson paid for the whole");
        let s = judge(&cfg, &bad, Finish::Length).unwrap();
        assert_eq!((s.text.as_str(), s.trimmed, s.qa_pairs), (PAIRS, true, 3));
        // A last question without its answer is dropped too.
        let s = judge(&cfg, &format!("{PAIRS}\n\nQuestion: Who paid?"), Finish::Eos).unwrap();
        assert_eq!((s.text.as_str(), s.trimmed), (PAIRS, true));
        // Fewer than `min_qa_pairs` good pairs, or trimming off: the whole answer is rejected.
        let two = PAIRS.split("\n\nQuestion: How").next().unwrap().replace("12 million", "15 million");
        assert!(judge(&cfg, &two, Finish::Eos).unwrap_err().reason.starts_with("number fidelity"));
        let off = GateStageConfig { gates: GateConfig { trim_qa_pairs: false, ..Default::default() }, ..cfg };
        assert!(judge(&off, &bad, Finish::Length).unwrap_err().reason.starts_with("truncated"));
    }
}
