//! Feeding a segment's input into a worker's dataflow: the input query's batches become
//! documents, each input object's at its own timestamps in input order (so that "earlier" in
//! dedup means earlier in the input, on any number of workers), at most an [`InFlight`] budget
//! ahead of the sinks; and what the query's filters and `LIMIT` did, from DataFusion's metrics.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use anyhow::anyhow;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt64Type};
use futures::StreamExt;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::{InputHandle, ProbeHandle};
use wrapflow_operators::sql::source::SourceHandle;
use wrapflow_operators::state::checkpoint::failpoint;
use wrapflow_operators::{Document, Reject};

use crate::job::progress::Progress;
use crate::job::segment::input_time;
use crate::report::manifest::FileStamp;
use crate::report::merge::WorkerReport;
use wrapflow_operators::StageContext;

/// Batches a worker may have in the dataflow ahead of its sinks.
pub const IN_FLIGHT: u64 = 4;

/// How far a worker's input may run ahead of its sinks: [`IN_FLIGHT`] batches, and beyond that
/// more while their text stays under `bytes`.
///
/// Dedup lets a document through only once every worker's input has passed its time (an earlier
/// duplicate may still come), so a worker whose objects come later in input order waits for the
/// others' objects to finish. Four batches of 1,024 documents kept each worker waiting on the
/// other for ~20% of a 100 MB run; with room for tens of MB of text it reads and filters on.
#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    pub bytes: u64,
}

impl InFlight {
    /// Plans with a model stage: each document costs model time, so few wait in the dataflow.
    pub const MODEL: InFlight = InFlight { bytes: 0 };
    /// Plans without one: 64 MiB of text per worker.
    pub const CORPUS: InFlight = InFlight { bytes: 64 << 20 };
}

/// The times a worker has sent and not yet waited for, oldest first, with their text bytes.
#[derive(Default)]
struct Window {
    times: std::collections::VecDeque<(u64, u64)>,
    bytes: u64,
}

impl Window {
    fn sent(&mut self, t: u64, bytes: u64) {
        if self.times.back().map(|(b, _)| *b) != Some(t) {
            self.times.push_back((t, 0));
        }
        self.times.back_mut().expect("pushed").1 += bytes;
        self.bytes += bytes;
    }

    /// While more than [`IN_FLIGHT`] times are in the window and their text is over the
    /// budget, the oldest time, taken out: the caller waits until the sinks have passed it.
    fn over(&mut self, budget: InFlight) -> Option<u64> {
        if self.times.len() <= IN_FLIGHT as usize || self.bytes <= budget.bytes {
            return None;
        }
        let (t, bytes) = self.times.pop_front()?;
        self.bytes -= bytes;
        Some(t)
    }
}

/// Converts a batch of the input query into documents.
pub fn documents(batch: &RecordBatch) -> anyhow::Result<Vec<Document>> {
    let col = |name: &str| batch.column_by_name(name).ok_or_else(|| anyhow!("input query lost column {name}"));
    let ids = arrow::compute::cast(col("id")?, &DataType::Utf8)?;
    let texts = arrow::compute::cast(col("text")?, &DataType::Utf8)?;
    let files = arrow::compute::cast(col("source_file")?, &DataType::Utf8)?;
    let lines = arrow::compute::cast(col("source_line")?, &DataType::UInt64)?;
    let keys = match batch.column_by_name("__wrapflow_dedup_key") {
        Some(k) => Some(arrow::compute::cast(k, &DataType::Utf8)?.as_string::<i32>().clone()),
        None => None,
    };
    let (ids, texts, files) = (ids.as_string::<i32>(), texts.as_string::<i32>(), files.as_string::<i32>());
    let lines = lines.as_primitive::<UInt64Type>();
    Ok((0..batch.num_rows())
        .map(|i| {
            let (file, line) = (files.value(i), lines.value(i));
            let value = keys.as_ref().filter(|k| !k.is_null(i)).map(|k| k.value(i));
            let dedup_key = wrapflow_operators::stages::dedup::exact::dedup_key(value, file, line);
            Document {
                id: ids.value(i).to_string(),
                text: texts.value(i).to_string(),
                source_file: file.to_string(),
                source_line: line,
                dedup_key,
            }
        })
        .collect())
}

/// Each object of a segment's position in input order (sources in plan order, then listing
/// order), by the name records give it (`source_file`).
pub(crate) fn object_ranks(
    sources: &[std::sync::Arc<SourceHandle>],
    files: &BTreeMap<String, Vec<FileStamp>>,
) -> HashMap<String, u64> {
    let mut ranks = HashMap::new();
    // A stamp's path is the name records give the object.
    let stamps = sources.iter().flat_map(|s| files.get(&s.table).into_iter().flatten());
    for (rank, f) in stamps.enumerate() {
        ranks.entry(f.path.clone()).or_insert(rank as u64);
    }
    ranks
}

/// A worker's two dataflow inputs, and the stage context whose metrics count reader rejects.
pub(crate) struct Inputs<'a> {
    pub docs: &'a mut InputHandle<u64, CapacityContainerBuilder<Vec<Document>>>,
    pub rejects: &'a mut InputHandle<u64, CapacityContainerBuilder<Vec<Reject>>>,
    pub ctx: &'a StageContext,
    pub budget: InFlight,
    /// Where a failed peer is heard of while this worker waits.
    pub failure: &'a crate::job::context::Failure,
}

impl Inputs<'_> {
    /// Moves both inputs to `t` (never back).
    pub fn advance(&mut self, t: u64) {
        if t > *self.docs.time() {
            self.docs.advance_to(t);
            self.rejects.advance_to(t);
        }
    }
}

/// Sends one segment's query output into the dataflow, each input object's documents at its own
/// times ([`input_time`]); at most the inputs' [`InFlight`] budget ahead of the sinks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn feed(
    worker: &mut timely::worker::Worker,
    (runtime, progress): (&tokio::runtime::Handle, &Progress),
    mut stream: datafusion::execution::SendableRecordBatchStream,
    sources: &[std::sync::Arc<SourceHandle>],
    report: &Rc<RefCell<WorkerReport>>,
    mut inputs: Inputs<'_>,
    probe: &ProbeHandle<u64>,
    (seg, ranks): (u64, &HashMap<String, u64>),
) -> Result<(), String> {
    let mut seen_bytes = totals(sources);
    // Batches sent per object rank, and the times in flight, for backpressure.
    let mut sent: HashMap<u64, u64> = HashMap::new();
    let mut window = Window::default();
    loop {
        let batch = match runtime.block_on(stream.next()) {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                let e = format!("reading input: {e}");
                inputs.failure.set_as(Some(crate::job::Fault::Input), &e);
                return Err(e);
            }
        };
        if let Some(b) = &batch {
            let mut rest = documents(b).map_err(|e| e.to_string())?;
            report.borrow_mut().sql_rows += rest.len() as u64;
            // A batch may span objects: each run of one object's documents goes at its time
            // (split off, not copied).
            while let Some(first) = rest.first() {
                let rank = ranks.get(&first.source_file).copied().unwrap_or(0);
                let len = rest.iter().take_while(|d| d.source_file == first.source_file).count();
                let tail = rest.split_off(len);
                let n = sent.entry(rank).or_default();
                inputs.advance(input_time(seg, rank, *n));
                *n += 1;
                window.sent(*inputs.docs.time(), rest.iter().map(|d| d.text.len() as u64).sum());
                inputs.docs.send_batch(&mut rest);
                rest = tail;
            }
            failpoint("batch");
        }
        for s in sources {
            let mut rejects = s.stats.take_rejects();
            if !rejects.is_empty() {
                rejects.iter().for_each(|r| inputs.ctx.count_reject(r));
                inputs.rejects.send_batch(&mut rejects);
            }
        }
        // (The total is the coordinator's: every object listed, whichever worker reads it.)
        let bytes = totals(sources);
        progress.bytes_read.fetch_add(bytes.saturating_sub(seen_bytes), Ordering::Relaxed);
        progress.docs.fetch_add(batch.as_ref().map_or(0, |b| b.num_rows() as u64), Ordering::Relaxed);
        seen_bytes = bytes;
        if batch.is_none() {
            return Ok(());
        }
        // Flush what was sent; wait while the window is over the budget.
        let now = *inputs.docs.time();
        inputs.advance(now + 1);
        while let Some(oldest) = window.over(inputs.budget) {
            while probe.less_equal(&oldest) {
                inputs.failure.step(worker)?;
            }
        }
        inputs.failure.step(worker)?;
    }
}

/// Input bytes this worker's sources have read.
fn totals(sources: &[std::sync::Arc<SourceHandle>]) -> u64 {
    sources.iter().map(|s| s.stats.bytes_read.load(Ordering::Relaxed)).sum()
}

/// Rows the query's filters dropped (what entered each `FilterExec` less what left it), and
/// whether a limit cut the query short somewhere (a `LIMIT` node, or a limit pushed into a node).
pub(crate) fn where_metrics(plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> (u64, bool) {
    use datafusion::physical_plan::metrics::MetricValue;
    let mut dropped = 0;
    let mut limit = plan.fetch().is_some() || plan.name().contains("Limit");
    // A filter's selectivity is rows passed (part) of rows evaluated (total).
    for m in plan.metrics().iter().flat_map(|m| m.iter().cloned().collect::<Vec<_>>()) {
        if let MetricValue::Ratio { name, ratio_metrics } = m.value()
            && name == "selectivity"
            && plan.name() == "FilterExec"
        {
            dropped += ratio_metrics.total().saturating_sub(ratio_metrics.part()) as u64;
        }
    }
    for c in plan.children() {
        let (d, l) = where_metrics(c);
        dropped += d;
        limit |= l;
    }
    (dropped, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_waits_past_four_times_only_over_the_byte_budget() {
        // A model plan: the fifth time makes the oldest one wait, whatever its size.
        let mut w = Window::default();
        for t in 0..5 {
            w.sent(t, 10);
        }
        assert_eq!(w.over(InFlight::MODEL), Some(0));
        assert_eq!(w.over(InFlight::MODEL), None, "four left");
        // A corpus plan: many small batches go on; over 64 MiB the oldest wait until it is under.
        let mut w = Window::default();
        for t in 0..100 {
            w.sent(t, 1 << 20);
        }
        assert_eq!(w.over(InFlight::CORPUS), Some(0), "100 MiB in flight");
        let mut waited = 1;
        while w.over(InFlight::CORPUS).is_some() {
            waited += 1;
        }
        assert_eq!((waited, w.bytes, w.times.len()), (36, 64 << 20, 64));
        // Documents sent at the same time (one object's run split by a batch) are one entry.
        let mut w = Window::default();
        w.sent(7, 5);
        w.sent(7, 6);
        assert_eq!((w.times.len(), w.bytes), (1, 11));
    }
}
