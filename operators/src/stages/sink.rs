//! **Sink** stage: rows in, written as atomic shards under the output (`io::sink`'s formats and
//! settings); one [`ShardInfo`] out per shard stored. Its open shard is checkpointed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use object_store::{ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use tokio::task::JoinHandle;

use crate::io::sink::{ShardInfo, SinkConfig, SinkTarget, encode};
use crate::record::ToBatch;
use crate::stages::context::{StageContext, nothing};
use crate::state::checkpoint::{self, Saved, Stateful};

struct ShardWriter<T, D> {
    target: SinkTarget,
    config: SinkConfig,
    rows: Vec<D>,
    bytes: usize,
    seq: usize,
    /// Uploads with the time of the row that closed their shard: the operator holds that time
    /// until the upload ends, so a probe that has passed a time means its shards are stored.
    inflight: VecDeque<(T, JoinHandle<Result<ShardInfo, String>>)>,
}

/// What a checkpoint keeps of a sink: the open shard's rows and the next shard number.
#[derive(Serialize, Deserialize)]
struct SinkState<D> {
    seq: usize,
    bytes: usize,
    rows: Vec<D>,
}

impl<T, D: Serialize + DeserializeOwned + Clone> Stateful for ShardWriter<T, D> {
    fn save(&mut self, _full: bool) -> anyhow::Result<Saved> {
        anyhow::ensure!(self.inflight.is_empty(), "sink {}: saved with uploads in flight", self.target.dir);
        let state = SinkState { seq: self.seq, bytes: self.bytes, rows: self.rows.clone() };
        Ok(Saved { full: true, bytes: checkpoint::encode(&state)? })
    }

    fn load(&mut self, part: &[u8]) -> anyhow::Result<()> {
        let state: SinkState<D> = checkpoint::decode(part)?;
        (self.seq, self.bytes, self.rows) = (state.seq, state.bytes, state.rows);
        Ok(())
    }
}

impl<T: Clone, D: ToBatch> ShardWriter<T, D> {
    fn push(&mut self, row: D, time: &T, done: &mut Vec<Result<ShardInfo, String>>) {
        self.bytes += row.approx_bytes();
        self.rows.push(row);
        if self.rows.len() >= self.config.shard_rows || self.bytes >= self.config.shard_bytes {
            self.close_shard(time, done);
        }
    }

    fn close_shard(&mut self, time: &T, done: &mut Vec<Result<ShardInfo, String>>) {
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let name = format!(
            "{}/part-{:05}-{:06}.{}",
            self.target.dir,
            self.target.worker,
            self.seq,
            self.config.format.extension()
        );
        self.seq += 1;
        let tokens = rows.iter().map(ToBatch::tokens).sum();
        let n = rows.len() as u64;
        let path = self.target.location.child(&name);
        let store = self.target.location.store.clone();
        let encoded = encode(&rows, self.config.format);
        drop(rows);
        let url = self.target.location.url.clone();
        let upload = self.target.runtime.spawn(async move {
            let data = encoded.map_err(|e| format!("encoding {name}: {e:#}"))?;
            let bytes = data.len() as u64;
            store.put(&path, PutPayload::from(data)).await.map_err(|e| format!("writing {url}/{name}: {e}"))?;
            checkpoint::failpoint("shard");
            Ok(ShardInfo { path: name, rows: n, bytes, tokens })
        });
        self.inflight.push_back((time.clone(), upload));
        while self.inflight.len() > self.config.max_inflight.max(1) {
            self.wait_oldest(done);
        }
    }

    fn wait_oldest(&mut self, done: &mut Vec<Result<ShardInfo, String>>) {
        if let Some((_, h)) = self.inflight.pop_front() {
            let r = self.target.runtime.block_on(h).unwrap_or_else(|e| Err(format!("upload task failed: {e}")));
            done.push(r);
        }
    }

    fn reap_finished(&mut self, done: &mut Vec<Result<ShardInfo, String>>) {
        while self.inflight.front().is_some_and(|h| h.1.is_finished()) {
            self.wait_oldest(done);
        }
    }
}

/// Extension trait: write a stream of rows as shards.
pub trait SinkShards<'scope, T: Timestamp, D> {
    /// Writes the rows under `<ctx.output>/<config.dir>/`; the output carries one [`ShardInfo`]
    /// per shard written. A write that fails after its retries is reported to `ctx.fail` (the
    /// run fails). A time is complete at the output only once every shard closed at that time
    /// is stored. The open shard is registered in `ctx.states` (as `sink/<dir>`) for
    /// checkpoints. Counts `sink.<dir>.rows`.
    fn sink_shards(self, config: &SinkConfig, ctx: &StageContext) -> StreamVec<'scope, T, ShardInfo>;
}

impl<'scope, T, D> SinkShards<'scope, T, D> for StreamVec<'scope, T, D>
where
    T: Timestamp + TotalOrder,
    D: ToBatch + Clone + Serialize + DeserializeOwned + 'static,
{
    fn sink_shards(self, config: &SinkConfig, ctx: &StageContext) -> StreamVec<'scope, T, ShardInfo> {
        let Some(out) = ctx.output_for("sink") else {
            return nothing(self, "NoSink");
        };
        let target = SinkTarget {
            location: out.location,
            dir: config.dir.clone(),
            worker: self.scope().index(),
            runtime: out.runtime,
        };
        sink(self, target, config, ctx)
    }
}

fn sink<'scope, T, D>(
    rows: StreamVec<'scope, T, D>,
    target: SinkTarget,
    config: &SinkConfig,
    ctx: &StageContext,
) -> StreamVec<'scope, T, ShardInfo>
where
    T: Timestamp + TotalOrder,
    D: ToBatch + Clone + Serialize + DeserializeOwned + 'static,
{
    let w = Rc::new(RefCell::new(ShardWriter::<T, D> {
        target,
        config: config.clone(),
        rows: Vec::new(),
        bytes: 0,
        seq: 0,
        inflight: VecDeque::new(),
    }));
    let dir = w.borrow().target.dir.clone();
    ctx.register(&format!("sink/{dir}"), w.clone());
    let (ctx, rows_name) = (ctx.clone(), format!("sink.{dir}.rows"));
    let scope = rows.scope();
    rows.unary_frontier(Pipeline, "Sink", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut done = Vec::new();
        move |(input, frontier), output| {
            // Time in this operator (encoding, and waiting on uploads past the in-flight bound)
            // counts toward `time.sinks_s`; uploads themselves run beside the dataflow.
            let t0 = std::time::Instant::now();
            let mut w = w.borrow_mut();
            input.for_each_stamp(|stamp, data| {
                let Some(stamp) = stamp.retain_least(output.output_index()) else { return };
                for batch in data {
                    for row in batch.drain(..) {
                        w.push(row, stamp.time(), &mut done);
                    }
                }
            });
            w.reap_finished(&mut done);
            if ctx.is_abandoned() {
                // The job stops at its last checkpoint, which holds the open shard.
                w.rows.clear();
            } else if frontier.is_empty()
                && let Some(c) = &cap
            {
                let t = c.time().clone();
                w.close_shard(&t, &mut done);
                while !w.inflight.is_empty() {
                    w.wait_oldest(&mut done);
                }
            }
            if let Some(c) = cap.as_mut() {
                let mut session = output.session(&*c);
                for d in done.drain(..) {
                    match d {
                        Ok(s) => {
                            ctx.metrics.add(&rows_name, s.rows);
                            session.give(s)
                        }
                        Err(e) => ctx.fail_as(crate::fault::Fault::Output, e),
                    }
                }
                drop(session);
                let oldest = w.inflight.front().map(|u| u.0.clone());
                let hold = match (frontier.frontier().first(), oldest) {
                    (Some(f), Some(o)) => Some(if f.less_equal(&o) { f.clone() } else { o }),
                    (f, o) => f.cloned().or(o),
                };
                match hold {
                    None => cap = None,
                    Some(t) if c.time().less_equal(&t) => c.downgrade(&t),
                    Some(_) => {}
                }
            }
            if !w.inflight.is_empty() {
                // Nothing else wakes the operator when an upload ends.
                activator.activate_after(std::time::Duration::from_millis(5));
            }
            let s = t0.elapsed().as_secs_f64();
            ctx.metrics.update(|m| *m.sums.entry("time.sinks_s".into()).or_default() += s);
        }
    })
    .container::<Vec<ShardInfo>>()
}
