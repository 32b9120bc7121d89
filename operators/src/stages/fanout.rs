//! **Fan-out** stage: [`Chunk`]s in, one [`StyleTask`] per chunk and style out.
//!
//! A style with `rate < 1` takes a share of the chunks chosen by a hash of the seed, the
//! document id, the chunk index and the style name: the same chunks whatever the worker count,
//! order or run.

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;

use crate::engine::Finish;
use crate::record::Chunk;
use crate::sql::heuristics::flesch_kincaid_grade;
use crate::stages::context::StageContext;
use crate::stages::styles::Style;

/// Settings of the fan-out stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    pub styles: Vec<Style>,
    pub seed: u64,
}

/// A chunk to rephrase in one style.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StyleTask {
    pub chunk: Chunk,
    /// Index into the fan-out's styles.
    pub style: u32,
}

/// True if `chunk` gets a style of rate `rate` under `seed`.
pub fn selected(seed: u64, chunk: &Chunk, style: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let key = format!("{seed}\u{0}{}\u{0}{}\u{0}{style}", chunk.doc_id, chunk.chunk_index);
    let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    (h as f64 / u64::MAX as f64) < rate
}

/// Extension trait: fan chunks out to styles.
pub trait FanOut<'scope, T: Timestamp> {
    /// One task per chunk and selected style. Counts `fanout.chunks`, `fanout.tasks` and the
    /// sum `fanout.source_fk_grade` (the chunks' Flesch-Kincaid grade, to compare the styles'
    /// readability with).
    fn fan_out(self, config: &FanoutConfig, ctx: &StageContext) -> StreamVec<'scope, T, StyleTask>;
}

impl<'scope, T: Timestamp> FanOut<'scope, T> for StreamVec<'scope, T, Chunk> {
    fn fan_out(self, config: &FanoutConfig, ctx: &StageContext) -> StreamVec<'scope, T, StyleTask> {
        let cfg = config.clone();
        let metrics = ctx.metrics.clone();
        self.unary(Pipeline, "FanOut", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        for chunk in batch.drain(..) {
                            let mut tasks = 0;
                            for (i, s) in cfg.styles.iter().enumerate() {
                                if selected(cfg.seed, &chunk, &s.name, s.rate) {
                                    session.give(StyleTask { chunk: chunk.clone(), style: i as u32 });
                                    tasks += 1;
                                }
                            }
                            let fk = flesch_kincaid_grade(&chunk.text);
                            metrics.update(|m| {
                                *m.counters.entry("fanout.chunks".into()).or_default() += 1;
                                *m.counters.entry("fanout.tasks".into()).or_default() += tasks;
                                *m.sums.entry("fanout.source_fk_grade".into()).or_default() += fk;
                            });
                        }
                    }
                });
            }
        })
        .container::<Vec<StyleTask>>()
    }
}

/// A model's answer to one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rephrased {
    pub task: StyleTask,
    /// The answer, starting with the style's answer prefix when it has one.
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// Why the model could not answer (the gates turn it into a reject).
    pub error: Option<String>,
    /// Answers generated for the task, this one included, and their tokens.
    pub attempts: u32,
    pub spent_tokens: u32,
    /// Prompts queued in this worker's operator when this answer was done: what backpressure
    /// bounds.
    pub queued: u32,
    /// Cosine to the source when the operator computed it to choose among attempts (the gate
    /// stage reuses it instead of embedding the answer again).
    pub cosine: Option<f64>,
    /// Tokens at which the number guard overrode the model's first choice in this answer.
    #[serde(default)]
    pub guarded: u32,
    /// Tokens at which the name guard overrode the model's first choice in this answer.
    #[serde(default)]
    pub names_guarded: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::styles::builtin;
    use timely::dataflow::operators::{Capture, Exchange, ToStream, capture::Extract};

    fn chunk(doc: usize, idx: u32) -> Chunk {
        Chunk {
            doc_id: format!("d{doc}"),
            chunk_index: idx,
            text: "t".into(),
            n_tokens: 1,
            byte_start: 0,
            byte_end: 1,
            source_file: "f".into(),
            source_line: doc as u64,
        }
    }

    fn run(workers: usize, seed: u64) -> Vec<(String, u32, u32)> {
        let mut hard = builtin("hard").unwrap();
        hard.rate = 0.3;
        let cfg = FanoutConfig { styles: vec![builtin("easy").unwrap(), hard], seed };
        let (send, recv) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let send = send.lock().unwrap().clone();
            let cfg = cfg.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                let chunks: Vec<Chunk> =
                    (0..500).filter(|d| d % peers == index).flat_map(|d| [chunk(d, 0), chunk(d, 1)]).collect();
                chunks
                    .to_stream(scope)
                    .container::<Vec<_>>()
                    .exchange(|c: &Chunk| c.source_line)
                    .fan_out(&cfg, &crate::stages::context::StageContext::default())
                    .capture_into(send);
            });
        })
        .unwrap();
        let mut got: Vec<(String, u32, u32)> = recv
            .extract()
            .into_iter()
            .flat_map(|(_, v)| v)
            .map(|t| (t.chunk.doc_id, t.chunk.chunk_index, t.style))
            .collect();
        got.sort();
        got
    }

    #[test]
    fn every_chunk_gets_full_rate_styles_and_a_seeded_share_of_the_others() {
        let one = run(1, 7);
        let easy = one.iter().filter(|t| t.2 == 0).count();
        let hard = one.iter().filter(|t| t.2 == 1).count();
        assert_eq!(easy, 1000);
        assert!((250..=350).contains(&hard), "about 30% of 1000 chunks get `hard`: {hard}");
        assert_eq!(run(2, 7), one, "the same tasks with 2 workers");
        assert_ne!(run(1, 8), one, "another seed picks other chunks");
    }
}
