//! The merge of all workers' reports into a [`Manifest`].

use std::collections::BTreeMap;
use std::time::Instant;

use wrapflow_operators::ShardInfo;
use wrapflow_operators::state::metrics::MetricSet;

use crate::plan::Plan;
use crate::report::manifest::{self, Counts, Input as InputOut, Manifest, Output, PlanInfo, Rejects, Timings, Tokens};
pub use crate::report::worker::WorkerReport;

pub fn merge(
    plan: &Plan,
    workers: usize,
    mut reports: Vec<WorkerReport>,
    started: String,
    t0: Instant,
) -> anyhow::Result<Manifest> {
    let mut metrics = MetricSet::default();
    for r in &reports {
        metrics.merge(&r.metrics);
    }
    let mixes = crate::report::mixing::merge(reports.iter_mut().flat_map(|r| std::mem::take(&mut r.mix)).collect())?;
    let rephrase = crate::report::rephrase::merge(plan, &metrics, &reports, t0.elapsed().as_secs_f64())?;
    let counts = counts(&reports, &metrics)?;
    debug_assert!(counts.reconciles());
    let mut shards: Vec<ShardInfo> = reports.iter().flat_map(|r| r.shards.clone()).collect();
    shards.sort_by(|a, b| a.path.cmp(&b.path));
    let mut reject_shards: Vec<ShardInfo> = reports.iter().flat_map(|r| r.reject_shards.clone()).collect();
    reject_shards.sort_by(|a, b| a.path.cmp(&b.path));
    let by_reason = metrics.counters_under("rejects.");
    let inputs = inputs(&reports);
    let lengths = lengths(plan, &metrics);
    for m in &mixes {
        let accepted = rephrase.as_ref().map_or(0, |r| r.accepted);
        anyhow::ensure!(
            m.summary.rows_in == counts.chunks + accepted,
            "mixture {}: {} rows offered, expected {} chunks + {accepted} synthetic rows",
            m.summary.name,
            m.summary.rows_in,
            counts.chunks
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    let in_bytes: u64 = inputs.values().flat_map(|i| i.files.iter()).map(|f| f.bytes).sum();
    let chunk_tokens = metrics.counter("chunk.tokens");
    Ok(Manifest {
        wrapflow_version: env!("CARGO_PKG_VERSION").into(),
        plan: PlanInfo {
            file: plan.file.clone(),
            hash: plan.hash.clone(),
            params: plan.shown_params(),
            text: crate::plan::secrets::redact(&plan.source).into_owned(),
            card: plan.sink.0.card.clone(),
        },
        workers,
        inputs: inputs.into_values().collect(),
        tokens: Tokens {
            chunks: chunk_tokens,
            max_per_chunk: metrics.maximum("chunk.max_tokens"),
            mean_per_chunk: if counts.chunks == 0 { 0.0 } else { chunk_tokens as f64 / counts.chunks as f64 },
        },
        chunks: Output {
            format: plan.sink.0.config.format.extension().into(),
            rows: shards.iter().map(|s| s.rows).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        },
        rejects: Rejects {
            format: "jsonl".into(),
            rows: reject_shards.iter().map(|s| s.rows).sum(),
            shards: reject_shards,
            by_reason,
        },
        rephrase,
        mixes,
        lengths,
        timings: Timings {
            started_at: started,
            finished_at: chrono_now(),
            wall_s: wall,
            docs_per_s: counts.read as f64 / wall.max(1e-9),
            input_mb_per_s: in_bytes as f64 / 1e6 / wall.max(1e-9),
        },
        counts,
        versions: manifest::versions(),
        job: None,
    })
}

/// The record counts, which must reconcile: every record read is accounted for once.
fn counts(reports: &[WorkerReport], metrics: &MetricSet) -> anyhow::Result<Counts> {
    let sum = |f: fn(&WorkerReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (read_rows, sql_rows) = (sum(|r| r.read_rows), sum(|r| r.sql_rows));
    anyhow::ensure!(
        sql_rows <= read_rows,
        "the plan's input produced {sql_rows} rows from {read_rows} read: a plan must filter rows, not multiply them (a join?)"
    );
    let duplicates = metrics.counter("dedup.duplicates");
    let (near_duplicates, chunk_rejects) = (metrics.counter("neardup.dropped"), metrics.counter("chunk.rejects"));
    let not_passed = read_rows - sql_rows;
    let filtered = if reports.iter().any(|r| r.limit) { sum(|r| r.where_dropped).min(not_passed) } else { not_passed };
    let kept = sql_rows.checked_sub(duplicates + near_duplicates + chunk_rejects);
    let kept = kept.ok_or_else(|| anyhow::anyhow!("counts do not reconcile: {metrics:?}"))?;
    Ok(Counts {
        read: read_rows + sum(|r| r.read_rejected),
        rejected: sum(|r| r.read_rejected) + chunk_rejects,
        filtered,
        limited: not_passed - filtered,
        duplicates,
        near_duplicates,
        kept,
        chunks: metrics.counter("chunk.chunks"),
        skipped_objects: 0,
    })
}

/// The inputs read, by table, each file once.
fn inputs(reports: &[WorkerReport]) -> BTreeMap<String, InputOut> {
    let mut inputs: BTreeMap<String, InputOut> = BTreeMap::new();
    for i in reports.iter().flat_map(|r| r.inputs.iter()) {
        let e = inputs.entry(i.table.clone()).or_insert_with(|| InputOut {
            files: vec![],
            location: crate::plan::secrets::redact(&i.location).into_owned(),
            ..i.clone()
        });
        e.files.extend(i.files.iter().cloned());
    }
    // A Parquet file split by row group is listed by each worker that read part of it.
    inputs.values_mut().for_each(|i| {
        i.files.sort_by(|a, b| a.path.cmp(&b.path));
        i.files.dedup_by(|a, b| a.path == b.path);
    });
    inputs
}

/// Length histograms of written rows: the real chunks', then each style's.
fn lengths(plan: &Plan, metrics: &MetricSet) -> BTreeMap<String, Vec<u64>> {
    let mut lengths: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    if let Some(h) = metrics.histogram("chunk.length") {
        lengths.insert("real".into(), h.counts.clone());
    }
    for s in &plan.styles {
        if let Some(h) = metrics.histogram(&format!("gates.{}.length", s.name)) {
            lengths.insert(s.name.clone(), h.counts.clone());
        }
    }
    lengths
}

/// UTC time as RFC 3339, to the second.
pub fn chrono_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
