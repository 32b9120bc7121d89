//! **Rephrase** stage: [`StyleTask`]s in, one [`Rephrased`] per task out (the model's raw
//! answer, gates come next).
//!
//! Each worker owns one model session and one [`Batcher`]: tasks from any document and style
//! join the continuous batch as slots free up. The operator never blocks the worker for longer
//! than `time_slice_ms`: it decodes in slices, re-activating itself while work remains, so other
//! operators (reading, writing shards) keep running and timely's progress tracking keeps
//! moving. Memory is bounded by the caller's backpressure on the source (see `wrapflow::run`):
//! tasks are queued only for the input batches in flight. A task's output is emitted at the
//! time it arrived with; the operator holds one capability per time with outstanding tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::engine::{Batcher, Decoder, Finish, GenerationConfig, Prompt, SessionConfig, SoftStop, chat_prompt};
use crate::fanout::StyleTask;
use crate::styles::Style;

/// Settings of the rephrase stage (`REPHRASE WITH (...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RephraseConfig {
    /// Model directory (see `wrapflow model import`).
    pub model: String,
    pub session: SessionConfig,
    /// Decoding settings; a style's `max_new_tokens` overrides `generation.max_new_tokens`.
    pub generation: GenerationConfig,
    /// Longest the operator decodes before yielding to the other operators of its worker.
    pub time_slice_ms: u64,
}

impl Default for RephraseConfig {
    fn default() -> Self {
        RephraseConfig {
            model: String::new(),
            session: SessionConfig { intra_threads: 1, ..Default::default() },
            generation: GenerationConfig { batch_size: 16, no_repeat_ngram: 4, ..Default::default() },
            time_slice_ms: 100,
        }
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
}

/// The sampling seed of a task: a key of the task itself, so that the same chunk and style get
/// the same output whatever worker, batch or order it lands in.
pub fn task_seed(task: &StyleTask, style: &Style) -> u64 {
    let key = format!("{}\u{0}{}\u{0}{}", task.chunk.doc_id, task.chunk.chunk_index, style.name);
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The prompt text of a task: the style's chat turns in the model's template, then the answer
/// prefix for the model to continue.
pub fn prompt_text(dec: &Decoder, style: &Style, chunk: &str) -> anyhow::Result<String> {
    let mut text = match dec.chat_template {
        Some(_) => chat_prompt(dec, &style.messages(chunk))?,
        None => format!("{}\n\n{}\n\n", style.system, style.user_turn(chunk)),
    };
    text.push_str(&style.answer_prefix);
    Ok(text)
}

/// Extension trait: rephrase style tasks with a model.
pub trait Rephrase<'scope, T: Timestamp + TotalOrder> {
    /// `model` is this worker's session (load one per worker with [`Decoder::load`]).
    fn rephrase(
        self,
        model: Decoder,
        styles: Arc<Vec<Style>>,
        config: &RephraseConfig,
    ) -> StreamVec<'scope, T, Rephrased>;
}

impl<'scope, T: Timestamp + TotalOrder> Rephrase<'scope, T> for StreamVec<'scope, T, StyleTask> {
    fn rephrase(
        self,
        mut dec: Decoder,
        styles: Arc<Vec<Style>>,
        config: &RephraseConfig,
    ) -> StreamVec<'scope, T, Rephrased> {
        let scope = self.scope();
        let slice = Duration::from_millis(config.time_slice_ms.max(1));
        let gen_cfg = config.generation.clone();
        let mut batcher = Batcher::new(gen_cfg.clone());
        self.unary_frontier(Pipeline, "Rephrase", move |_cap, info| {
            let activator = scope.activator_for(info.address);
            // Per time with outstanding tasks: a capability and how many tasks remain.
            let mut held: BTreeMap<T, (Capability<T>, usize)> = BTreeMap::new();
            let mut tasks: HashMap<usize, (T, StyleTask)> = HashMap::new();
            let mut ready: Vec<(T, Rephrased)> = Vec::new();
            move |(input, _frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let time = cap.time().clone();
                    for batch in data {
                        for task in batch.drain(..) {
                            let style = &styles[task.style as usize];
                            let ids = prompt_text(&dec, style, &task.chunk.text).and_then(|p| {
                                dec.tokenizer
                                    .encode(p.as_str(), false)
                                    .map(|e| e.get_ids().to_vec())
                                    .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))
                            });
                            match ids {
                                Ok(ids) => {
                                    let i = batcher.push(Prompt {
                                        id: String::new(),
                                        ids,
                                        max_new_tokens: Some(style.max_new_tokens),
                                        seed: Some(task_seed(&task, style)),
                                        soft_stop: (style.stop_after > 0.0).then(|| SoftStop {
                                            after_tokens: (style.stop_after * task.chunk.n_tokens as f64).ceil()
                                                as usize,
                                            at: style.stop_at.clone(),
                                        }),
                                        min_new_tokens: (style.min_length * task.chunk.n_tokens as f64) as usize,
                                    });
                                    tasks.insert(i, (time.clone(), task));
                                }
                                Err(e) => ready.push((time.clone(), failed(task, &e))),
                            }
                            held.entry(time.clone()).or_insert_with(|| (cap.clone(), 0)).1 += 1;
                        }
                    }
                });
                let t0 = Instant::now();
                while !batcher.is_idle() && t0.elapsed() < slice {
                    let mut done = |c: crate::engine::Completion| {
                        let (time, task) = tasks.remove(&c.index).expect("every completion has its task");
                        let style = &styles[task.style as usize];
                        ready.push((
                            time,
                            Rephrased {
                                text: format!("{}{}", style.answer_prefix, c.text),
                                finish: c.finish,
                                prompt_tokens: c.prompt_tokens as u32,
                                generated_tokens: c.token_ids.len() as u32,
                                error: None,
                                task,
                            },
                        ));
                    };
                    if let Err(e) = batcher.step(&mut dec, &mut done) {
                        // A failed step loses the batch's state: report every queued task.
                        let mut orphans: Vec<usize> = tasks.keys().copied().collect();
                        orphans.sort_unstable();
                        for i in orphans {
                            let (time, task) = tasks.remove(&i).expect("listed above");
                            ready.push((time, failed(task, &e)));
                        }
                        batcher = Batcher::new(gen_cfg.clone());
                    }
                }
                for (time, r) in ready.drain(..) {
                    let entry = held.get_mut(&time).expect("a capability is held for every outstanding task");
                    output.session(&entry.0).give(r);
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        held.remove(&time);
                    }
                }
                if !batcher.is_idle() {
                    activator.activate();
                }
            }
        })
        .container::<Vec<Rephrased>>()
    }
}

fn failed(task: StyleTask, e: &anyhow::Error) -> Rephrased {
    Rephrased {
        task,
        text: String::new(),
        finish: Finish::Length,
        prompt_tokens: 0,
        generated_tokens: 0,
        error: Some(format!("{e:#}")),
    }
}
