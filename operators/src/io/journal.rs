//! **Journal** of an expensive stage: its results go to object storage in small batches as they
//! are produced, so that a job that dies between two checkpoints answers the same inputs from the
//! journal after it resumes instead of computing them again (rephrasings are the expensive part
//! of a WRAP job).
//!
//! [`Journaled::journal`] passes results through and writes them, per input segment, under
//! `<dir>/s<segment>/w<worker>-<run>-<n>.bin` every `rows` results or `interval_s` seconds;
//! [`load`] reads a segment's entries back and [`Memo::answered_by`] splits inputs into those the
//! journal answers and the rest. A checkpoint makes a segment's entries useless (its results are
//! committed output), so the driver deletes them then. Writes are not waited for: a lost journal
//! file only costs recomputation, never correctness, because a journaled result is what the
//! stage computes for that input (its sampling is seeded by the input).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::io::store::Location;
use crate::state::checkpoint::{decode, encode};
use crate::state::metrics::Metrics;

/// How often a journal is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Write once this many results wait...
    pub rows: usize,
    /// ...or once the oldest has waited this long.
    pub interval_s: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { rows: 64, interval_s: 10 }
    }
}

/// Where one worker journals.
#[derive(Clone, Debug)]
pub struct JournalTarget {
    pub location: Location,
    pub dir: String,
    pub worker: usize,
    /// Tells this process's files from those of earlier attempts at the same segment.
    pub run: String,
    pub runtime: Handle,
}

/// Entries of segment `segment` from every worker and attempt, by key.
pub async fn load<T: DeserializeOwned>(
    location: &Location,
    dir: &str,
    segment: u64,
) -> anyhow::Result<HashMap<String, T>> {
    let prefix = location.child(&format!("{dir}/s{segment:08}"));
    let metas: Vec<_> = location.store.list(Some(&prefix)).try_collect().await?;
    let mut out = HashMap::new();
    for m in metas {
        let bytes = location.store.get(&m.location).await?.bytes().await?;
        // A journal only saves work: a damaged one can go, and its tasks are asked again (they
        // are seeded, so they get the same answers).
        let entries: Vec<(String, T)> = decode(&bytes).with_context(|| {
            format!(
                "reading the rephrase journal {}/{}: it is damaged; delete it and run again \
                 (its tasks are then rephrased again, with the same answers)",
                location.url,
                location.relative(&m.location)
            )
        })?;
        out.extend(entries);
    }
    Ok(out)
}

/// Extension trait: journal a stream of results.
pub trait Journaled<'scope, T: Timestamp, D> {
    /// Passes `self` through, writing each result under `key(result)`; `segment` maps a time to
    /// its input segment.
    fn journal(
        self,
        target: JournalTarget,
        config: &JournalConfig,
        key: impl Fn(&D) -> String + 'static,
        segment: impl Fn(&T) -> u64 + 'static,
    ) -> StreamVec<'scope, T, D>;
}

impl<'scope, T: Timestamp + TotalOrder, D: Clone + Serialize + 'static> Journaled<'scope, T, D>
    for StreamVec<'scope, T, D>
{
    fn journal(
        self,
        target: JournalTarget,
        config: &JournalConfig,
        key: impl Fn(&D) -> String + 'static,
        segment: impl Fn(&T) -> u64 + 'static,
    ) -> StreamVec<'scope, T, D> {
        let scope = self.scope();
        let (rows, interval) = (config.rows.max(1), Duration::from_secs(config.interval_s));
        let mut pending: BTreeMap<u64, Vec<(String, D)>> = BTreeMap::new();
        let mut waiting = 0usize;
        let mut oldest: Option<Instant> = None;
        let mut uploads: Vec<JoinHandle<()>> = Vec::new();
        let mut n = 0u64;
        self.unary(Pipeline, "Journal", move |_, info| {
            let activator = scope.activator_for(info.address);
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let seg = segment(cap.time());
                    let mut session = output.session(&cap);
                    for batch in data {
                        for d in batch.drain(..) {
                            pending.entry(seg).or_default().push((key(&d), d.clone()));
                            waiting += 1;
                            oldest.get_or_insert_with(Instant::now);
                            session.give(d);
                        }
                    }
                });
                let due = oldest.is_some_and(|t| t.elapsed() >= interval);
                if waiting >= rows || (waiting > 0 && due) {
                    uploads.retain(|u| !u.is_finished());
                    for (seg, entries) in std::mem::take(&mut pending) {
                        let name = format!("{}/s{seg:08}/w{:05}-{}-{n:06}.bin", target.dir, target.worker, target.run);
                        n += 1;
                        let (store, path) = (target.location.store.clone(), target.location.child(&name));
                        match encode(&entries) {
                            Ok(bytes) => uploads.push(target.runtime.spawn(async move {
                                if let Err(e) = store.put(&path, PutPayload::from(bytes)).await {
                                    tracing::warn!(%name, "journal write failed (only costs recomputation): {e}");
                                }
                            })),
                            Err(e) => tracing::warn!(%name, "journal encoding failed: {e:#}"),
                        }
                    }
                    (waiting, oldest) = (0, None);
                }
                if waiting > 0 {
                    // The interval must pass even when no more input arrives.
                    activator.activate_after(interval);
                }
            }
        })
        .container::<Vec<D>>()
    }
}

/// Extension trait: answer inputs from a journal.
pub trait Memo<'scope, T: Timestamp, I> {
    /// Splits `self` into the journaled results of inputs found in `memo` (each used once) and
    /// the inputs that still need computing.
    /// Counts `journal.reused` in `metrics`.
    fn answered_by<R: Clone + 'static>(
        self,
        memo: Rc<RefCell<HashMap<String, R>>>,
        key: impl Fn(&I) -> String + 'static,
        metrics: &Metrics,
    ) -> (StreamVec<'scope, T, R>, StreamVec<'scope, T, I>);
}

impl<'scope, T: Timestamp + TotalOrder, I: Clone + 'static> Memo<'scope, T, I> for StreamVec<'scope, T, I> {
    fn answered_by<R: Clone + 'static>(
        self,
        memo: Rc<RefCell<HashMap<String, R>>>,
        key: impl Fn(&I) -> String + 'static,
        metrics: &Metrics,
    ) -> (StreamVec<'scope, T, R>, StreamVec<'scope, T, I>) {
        let metrics = metrics.clone();
        self.unary(Pipeline, "Memo", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let mut session = output.session(&cap);
                    let mut memo = memo.borrow_mut();
                    for batch in data {
                        for i in batch.drain(..) {
                            let found = if memo.is_empty() { None } else { memo.remove(&key(&i)) };
                            if found.is_some() {
                                metrics.add("journal.reused", 1);
                            }
                            session.give(found.ok_or(i));
                        }
                    }
                });
            }
        })
        .container::<Vec<Result<R, I>>>()
        .ok_err(|r| r)
    }
}
