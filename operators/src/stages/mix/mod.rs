//! **Mix** stage: real chunks and accepted rephrasings in, training mixtures out.
//!
//! Each [`Mixture`] (a plan's `MIX name WITH (...)`) holds the real:synthetic ratio, the weights of
//! styles and of sources by tokens, a curriculum of ordered stages (any SQL expression over the
//! rows), a seeded shuffle, a shortfall policy and a format (Parquet, JSON Lines, or token shards
//! for training). Several mixtures are written side by side from one pass over the rows.
//!
//! Rows of all workers go to worker 0, which mixes each timestamp once the frontier has passed it,
//! in a canonical order, so the same input, plan and seed give byte-identical shards. A shard is
//! written as soon as its stage has `shard_tokens` tokens admitted (see [`crate::stages::mix::scheduler`]): the
//! mixture streams. Shards are named `mix/<name>/s<stage>-<stagename>-<seq>`, so lexical order
//! is training order.

pub mod config;
pub mod encode;
pub mod row;
pub mod scheduler;
pub mod snapshot;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::io::store::Location;
use crate::stages::context::{StageContext, nothing};
use crate::stages::mix::config::eval_strings;
pub use crate::stages::mix::config::{MixConfig, MixFormat, MixStageConfig, Mixture, TrainTokenizer, compile_expr};
pub use crate::stages::mix::row::{MixItem, MixRow, MixShard};
use crate::stages::mix::scheduler::{ClosedShard, Leaf, LeafStats, Mixer, Unit, UnitRows};
use crate::stages::mix::snapshot::MixerState;
use crate::state::checkpoint::{self, Saved, Stateful};

/// Where mixtures are written: `<location>/mix/<name>/...`.
#[derive(Clone, Debug)]
pub struct MixTarget {
    pub location: Location,
    pub runtime: Handle,
}

/// What a mixture did, once its input is over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MixSummary {
    pub name: String,
    pub config: MixConfig,
    pub stages: Vec<String>,
    /// Target leaves, their outcome (same order), and the achieved share of each.
    pub leaves: Vec<Leaf>,
    pub outcome: Vec<LeafStats>,
    pub achieved: Vec<f64>,
    /// Tokens each leaf lacks to be on target next to the best-served leaf (0 for all when the
    /// ratios hold; what `shortfall = report` leaves short).
    pub shortfall_tokens: Vec<u64>,
    /// Rows offered to this mixture; `rows_in == excluded + Σ offered`.
    pub rows_in: u64,
    /// Rows left out before mixing, by reason (a weight of 0, a stage value not listed, ...).
    pub excluded: BTreeMap<String, u64>,
    pub rows: u64,
    pub tokens: u64,
    pub tokens_by_stage: Vec<u64>,
    pub rows_by_stage: Vec<u64>,
    /// Most rows the mixer held in memory at once.
    pub max_held_rows: u64,
    /// The id written after each document, with a training tokenizer (Megatron's `.idx` does not
    /// record it). Always serialized: the mixer's checkpoint state is bincode.
    #[serde(default)]
    pub eos_id: Option<u32>,
}

/// What the mix operator emits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MixEvent {
    Shard(Box<MixShard>),
    Done(Box<MixSummary>),
}

struct Running {
    mix: Mixture,
    mixer: Mixer<MixItem>,
    leaf_of: BTreeMap<(String, String, String), usize>,
    summary: MixSummary,
}

impl Running {
    fn new(mix: Mixture) -> Self {
        let leaf_of = mix
            .leaves
            .iter()
            .enumerate()
            .map(|(i, l)| ((l.kind.clone(), l.style.clone(), l.source.clone()), i))
            .collect();
        let summary = MixSummary {
            name: mix.name.clone(),
            config: mix.config.clone(),
            stages: mix.stages.clone(),
            leaves: mix.leaves.clone(),
            tokens_by_stage: vec![0; mix.stages.len()],
            rows_by_stage: vec![0; mix.stages.len()],
            eos_id: mix.tokenizer.as_ref().map(|t| t.eos),
            ..Default::default()
        };
        Running { mixer: mix.mixer(), mix, leaf_of, summary }
    }

    /// Offers one timestamp's rows, in canonical order.
    fn offer(&mut self, rows: &[Arc<MixRow>]) -> anyhow::Result<()> {
        // The rows' Arrow form copies every text: build it only for a plan's expressions.
        let batch = match (&self.mix.source, &self.mix.stage) {
            (None, None) => None,
            _ => Some(row::eval_batch(rows)?),
        };
        let eval = |e: &Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>>, default: &str| match (e, &batch) {
            (Some(e), Some(b)) => eval_strings(e, b),
            _ => Ok(vec![Some(default.to_string()); rows.len()]),
        };
        let sources = eval(&self.mix.source, "")?;
        let stages = eval(&self.mix.stage, "all")?;
        let by_source = !self.mix.config.sources.is_empty();
        let mut items = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            self.summary.rows_in += 1;
            let source = sources[i].clone();
            let stage = stages[i].as_deref().and_then(|s| self.mix.stages.iter().position(|x| x == s));
            let key = (
                row.kind.clone(),
                row.style.clone(),
                if by_source { source.clone().unwrap_or_default() } else { String::new() },
            );
            let leaf = self.leaf_of.get(&key).copied().filter(|&l| self.mix.leaves[l].weight > 0.0);
            let reason = match (leaf, stage) {
                (Some(l), Some(s)) => {
                    let ids = match &self.mix.tokenizer {
                        Some(t) => t
                            .tokenizer
                            .encode_fast(row.text.as_str(), false)
                            .map_err(|e| anyhow::anyhow!("tokenizing a row of {}: {e}", row.doc_id))?
                            .get_ids()
                            .to_vec(),
                        None => Vec::new(),
                    };
                    items.push((l, s, MixItem { row: row.clone(), ids, source: source.unwrap_or_default() }));
                    continue;
                }
                (None, _) if by_source && source.is_none() => "source is NULL".to_string(),
                (None, _) if by_source && !self.leaf_of.keys().any(|k| Some(&k.2) == source.as_ref()) => {
                    format!("source `{}` has no weight", source.unwrap_or_default())
                }
                (None, _) if row.kind == "real" => "real rows have no weight".into(),
                (None, _) => format!("style `{}` has no weight", row.style),
                (Some(_), None) => match &stages[i] {
                    None => "stage is NULL".into(),
                    Some(s) => format!("stage `{s}` is not in stages"),
                },
            };
            *self.summary.excluded.entry(reason).or_insert(0) += 1;
        }
        // Units: one row each, or a document's consecutive rows of one leaf and stage.
        let mut units: Vec<(usize, usize, Vec<MixItem>)> = Vec::new();
        for (leaf, stage, item) in items {
            match units.last_mut() {
                Some((l, s, rows))
                    if self.mix.config.unit == Unit::Document
                        && (*l, *s) == (leaf, stage)
                        && rows[0].row.doc_id == item.row.doc_id =>
                {
                    rows.push(item)
                }
                _ => units.push((leaf, stage, vec![item])),
            }
        }
        for (leaf, stage, rows) in units {
            // With a training tokenizer: its ids plus one EOS per unit; else the chunker's count.
            let tokens = match self.mix.tokenizer {
                Some(_) => rows.iter().map(|x| x.ids.len() as u64).sum::<u64>() + 1,
                None => rows.iter().map(|x| x.row.n_tokens as u64).sum(),
            };
            self.mixer.offer(UnitRows { leaf, stage, tokens, rows });
        }
        self.summary.max_held_rows = self.summary.max_held_rows.max(self.mixer.held_rows() as u64);
        Ok(())
    }

    fn finish(&mut self) -> MixSummary {
        let mut s = std::mem::take(&mut self.summary);
        s.outcome = self.mixer.stats().to_vec();
        s.rows = s.outcome.iter().map(|o| o.rows).sum();
        s.tokens = s.outcome.iter().map(|o| o.tokens).sum();
        s.achieved = s.outcome.iter().map(|o| o.tokens as f64 / s.tokens.max(1) as f64).collect();
        let live = || s.leaves.iter().zip(&s.outcome).filter(|(l, _)| l.weight > 0.0);
        let scale = live().map(|(l, o)| o.tokens as f64 / l.weight).fold(0.0, f64::max);
        s.shortfall_tokens = s
            .leaves
            .iter()
            .zip(&s.outcome)
            .map(|(l, o)| (scale * l.weight - o.tokens as f64).max(0.0).round() as u64)
            .collect();
        s
    }
}

/// What a checkpoint keeps of a mixture: its counters and its mixer (buffers, open shards, seq).
#[derive(Serialize, Deserialize)]
struct RunningState {
    summary: MixSummary,
    mixer: MixerState<(MixRow, Vec<u32>, String)>,
}

/// The mixtures of one operator, shared with the checkpoint driver.
struct Mixing<T> {
    running: Vec<Running>,
    /// Shard uploads with the time of the rows that closed them (held until they end).
    inflight: VecDeque<(T, JoinHandle<Result<MixShard, String>>)>,
}

impl<T> Stateful for Mixing<T> {
    fn save(&mut self, _full: bool) -> anyhow::Result<Saved> {
        anyhow::ensure!(self.inflight.is_empty(), "mixtures saved with uploads in flight");
        let states: Vec<RunningState> = self
            .running
            .iter()
            .map(|r| RunningState {
                summary: r.summary.clone(),
                mixer: r.mixer.state().map(|x| ((*x.row).clone(), x.ids, x.source)),
            })
            .collect();
        Ok(Saved { full: true, bytes: checkpoint::encode(&states)? })
    }

    fn load(&mut self, part: &[u8]) -> anyhow::Result<()> {
        let states: Vec<RunningState> = checkpoint::decode(part)?;
        anyhow::ensure!(states.len() == self.running.len(), "the checkpoint has {} mixtures", states.len());
        for (r, s) in self.running.iter_mut().zip(states) {
            anyhow::ensure!(r.summary.name == s.summary.name, "mixture {} is not {}", s.summary.name, r.summary.name);
            r.summary = s.summary;
            r.mixer.restore(s.mixer.map(|(row, ids, source)| MixItem { row: Arc::new(row), ids, source }))?;
        }
        Ok(())
    }
}

/// Sort key that puts one timestamp's rows in a canonical order: by seeded hash of the document
/// when shuffling (a document-level shuffle), else by input position.
fn canonical(rows: &mut [Arc<MixRow>], shuffle: bool, seed: u64) {
    let key = |r: &MixRow| {
        let h = if shuffle { xxhash_rust::xxh3::xxh3_64_with_seed(r.doc_id.as_bytes(), seed) } else { 0 };
        (h, r.source_file.clone(), r.source_line, r.doc_id.clone(), r.kind.clone(), r.style.clone(), r.chunk_index)
    };
    rows.sort_by_cached_key(|r| key(r));
}

/// Extension trait: mix a stream of rows into shards.
pub trait Mix<'scope, T: Timestamp> {
    /// Mixes the rows into every mixture under `<ctx.output>/mix/`; the output carries a
    /// [`MixEvent::Shard`] per shard written and, at the end, a [`MixEvent::Done`] per mixture.
    /// A mixture that fails (a row its expressions cannot evaluate, a failed write) is reported
    /// to `ctx.fail`. The mixtures' state is registered in `ctx.states` (as `mix`) for
    /// checkpoints.
    fn mix(self, config: &MixStageConfig, ctx: &StageContext) -> StreamVec<'scope, T, MixEvent>;
}

impl<'scope, T: Timestamp + TotalOrder> Mix<'scope, T> for StreamVec<'scope, T, MixRow> {
    fn mix(self, config: &MixStageConfig, ctx: &StageContext) -> StreamVec<'scope, T, MixEvent> {
        let compiled = config.compile().map_err(|e| ctx.fail(format!("{e:#}")));
        let (Some(out), Ok(mixtures)) = (ctx.output_for("mix"), compiled) else {
            return nothing(self, "NoMix");
        };
        mix_rows(self, mixtures, MixTarget { location: out.location, runtime: out.runtime }, ctx)
    }
}

fn mix_rows<'scope, T: Timestamp + TotalOrder>(
    rows: StreamVec<'scope, T, MixRow>,
    mixtures: Vec<Mixture>,
    target: MixTarget,
    ctx: &StageContext,
) -> StreamVec<'scope, T, MixEvent> {
    // Every row goes to worker 0: only it mixes and reports.
    let mixing = rows.scope().index() == 0;
    let running: Vec<Running> = mixtures.into_iter().map(Running::new).collect();
    let max_inflight = running.iter().map(|r| r.mix.config.max_inflight).max().unwrap_or(2).max(1);
    let state = Rc::new(RefCell::new(Mixing { running, inflight: VecDeque::new() }));
    ctx.register("mix", state.clone());
    let mut stash: BTreeMap<T, Vec<Arc<MixRow>>> = BTreeMap::new();
    let mut events = Vec::new();
    let mut failed = false;
    let mut finished = false;
    let ctx = ctx.clone();
    let scope = rows.scope();
    rows.unary_frontier(Exchange::new(|_: &MixRow| 0u64), "Mix", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        move |(input, frontier), output| {
            let mut st = state.borrow_mut();
            let Mixing { running, inflight } = &mut *st;
            input.for_each_stamp(|cap, data| {
                let Some(cap) = cap.retain_least(output.output_index()) else { return };
                let e = stash.entry(cap.time().clone()).or_default();
                for batch in data {
                    e.extend(batch.drain(..).map(Arc::new));
                }
            });
            let ready: Vec<T> = stash.keys().filter(|t| !frontier.less_equal(t)).cloned().collect();
            let mut closed = Vec::new();
            for t in ready {
                let rows = stash.remove(&t).unwrap_or_default();
                for (m, r) in running.iter_mut().enumerate() {
                    if failed {
                        break;
                    }
                    let mut rows = rows.clone();
                    canonical(&mut rows, r.mix.config.shuffle, r.mix.config.seed);
                    match r.offer(&rows) {
                        Ok(()) => closed.extend(r.mixer.admit().into_iter().map(|s| (t.clone(), m, s))),
                        Err(e) => {
                            ctx.fail(format!("mixture {}: {e:#}", r.mix.name));
                            failed = true;
                        }
                    }
                }
            }
            if finished {
                return;
            }
            let end = frontier.is_empty() && stash.is_empty();
            finished = end;
            // An abandoned job stops at its last checkpoint: the mixtures are not finished.
            let keep_open = ctx.is_abandoned();
            if end && !failed && mixing && !keep_open {
                let t = cap.as_ref().map(|c| c.time().clone()).unwrap_or_else(T::minimum);
                for (m, r) in running.iter_mut().enumerate() {
                    closed.extend(r.mixer.finish().into_iter().map(|s| (t.clone(), m, s)));
                }
            }
            for (t, m, shard) in closed {
                let r = &mut running[m];
                r.summary.tokens_by_stage[shard.stage] += shard.tokens();
                r.summary.rows_by_stage[shard.stage] +=
                    shard.units.iter().map(|u| u.unit.rows.len() as u64).sum::<u64>();
                inflight.push_back((t, spawn_write(&target, &r.mix, shard)));
                while inflight.len() > max_inflight {
                    events.extend(wait(&target.runtime, inflight.pop_front().expect("non-empty").1, &ctx));
                }
            }
            while inflight.front().is_some_and(|h| h.1.is_finished()) {
                events.extend(wait(&target.runtime, inflight.pop_front().expect("non-empty").1, &ctx));
            }
            if end {
                while let Some(h) = inflight.pop_front() {
                    events.extend(wait(&target.runtime, h.1, &ctx));
                }
                if !failed && mixing && !keep_open {
                    events.extend(running.iter_mut().map(|r| MixEvent::Done(Box::new(r.finish()))));
                }
            }
            if let Some(c) = cap.as_mut() {
                if !events.is_empty() {
                    output.session(&*c).give_iterator(events.drain(..));
                }
                // Hold the time of the oldest upload: a probe past it means its shard is stored.
                let oldest = inflight.front().map(|u| u.0.clone());
                let hold = match (frontier.frontier().first(), oldest) {
                    (Some(f), Some(o)) => Some(if f.less_equal(&o) { f.clone() } else { o }),
                    (f, o) => f.cloned().or(o),
                };
                match hold {
                    None if end => cap = None,
                    Some(t) if c.time().less_equal(&t) => c.downgrade(&t),
                    _ => {}
                }
            }
            if !inflight.is_empty() {
                activator.activate_after(std::time::Duration::from_millis(5));
            }
        }
    })
    .container::<Vec<MixEvent>>()
}

/// Waits for an upload: its shard, or a failure reported to the context.
fn wait(rt: &Handle, h: JoinHandle<Result<MixShard, String>>, ctx: &StageContext) -> Option<MixEvent> {
    match rt.block_on(h) {
        Ok(Ok(s)) => Some(MixEvent::Shard(Box::new(s))),
        Ok(Err(e)) => {
            ctx.fail_as(crate::fault::Fault::Output, e);
            None
        }
        Err(e) => {
            ctx.fail_as(crate::fault::Fault::Output, format!("shard upload task failed: {e}"));
            None
        }
    }
}

/// Encodes a closed shard and writes its files, the one that completes it last (the `.idx` of
/// token shards), each with a single atomic put.
fn spawn_write(target: &MixTarget, mix: &Mixture, shard: ClosedShard<MixItem>) -> JoinHandle<Result<MixShard, String>> {
    let stage_name = &mix.stages[shard.stage];
    let base = format!("mix/{}/s{:03}-{}-{:06}", mix.name, shard.stage + 1, encode::file_part(stage_name), shard.seq);
    let info = encode::shard_info(mix, &shard, &base);
    let files = encode::encode(mix, &shard, &base);
    let location = target.location.clone();
    target.runtime.spawn(async move {
        let files = files.map_err(|e| format!("encoding {base}: {e:#}"))?;
        let mut info = info;
        for (name, data) in files {
            info.bytes += data.len() as u64;
            let path = location.child(&name);
            location
                .store
                .put(&path, PutPayload::from(data))
                .await
                .map_err(|e| format!("writing {}/{name}: {e}", location.url))?;
            checkpoint::failpoint("shard");
        }
        Ok(info)
    })
}
