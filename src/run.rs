//! Runs a plan: per-worker DataFusion queries feed a timely dataflow
//! `dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks → mix`, with rejects flowing
//! to their own sink.
//!
//! Each worker reads its share of the input through its own session; dedup sends keys to their
//! owner worker, so it is global. Workers keep at most [`IN_FLIGHT`] batches in the
//! dataflow beyond what the sinks have finished, so memory stays bounded whatever the input size.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, anyhow};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt64Type};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concat, Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use tokenizers::Tokenizer;
use wrapflow_operators::chunk::load_tokenizer;
use wrapflow_operators::neardup::NearDedup;
use wrapflow_operators::store::{Location, StoreRegistry};
use wrapflow_operators::{
    ChunkDocs, Chunker, Dedup, DedupConfig, Document, Mix, MixEvent, MixRow, MixTarget, Mixture, Reject, ShardInfo,
    SinkConfig, SinkFormat, SinkShards, SinkTarget,
};

use crate::cluster::ClusterSpec;
use crate::manifest::{self, Counts, Input as InputOut, Manifest, Output, PlanInfo, Rejects, Timings, Tokens};
use crate::plan::{Plan, PlanError};
use crate::progress::{self, Progress};
use crate::session;

/// Batches a worker may have in the dataflow ahead of its sinks.
pub const IN_FLIGHT: u64 = 4;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workers: usize,
    pub progress: progress::Mode,
    /// Stores to use (share one to reach `memory://` data); a fresh registry if `None`.
    pub registry: Option<Arc<StoreRegistry>>,
    /// This process's place in a timely cluster (`workers` threads in each process).
    pub cluster: Option<ClusterSpec>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { workers: 1, progress: progress::Mode::Quiet, registry: None, cluster: None }
    }
}

/// Everything workers share.
struct Shared {
    plan: Plan,
    registry: Arc<StoreRegistry>,
    runtime: tokio::runtime::Handle,
    sql_tokenizer: Option<Arc<Tokenizer>>,
    chunker: Arc<Chunker>,
    output: Location,
    progress: Arc<Progress>,
    mixtures: Vec<Mixture>,
}

/// What one worker did.
#[derive(Default, Serialize, Deserialize)]
struct WorkerReport {
    read_rows: u64,
    read_rejected: u64,
    sql_rows: u64,
    dedup_out: u64,
    near_duplicates: u64,
    chunk_rejects: u64,
    chunks: u64,
    chunk_tokens: u64,
    max_chunk_tokens: u64,
    shards: Vec<ShardInfo>,
    reject_shards: Vec<ShardInfo>,
    by_reason: BTreeMap<String, u64>,
    inputs: Vec<InputOut>,
    wrap: crate::wrap::WrapReport,
    mix: Vec<MixEvent>,
    /// Length histograms of written rows: `real` and each style (see [`crate::html::add_length`]).
    lengths: BTreeMap<String, Vec<u64>>,
}

/// Tokenizers named by the plan: the one for `token_count` and the chunker's (shared when equal).
fn tokenizers(plan: &Plan) -> anyhow::Result<(Option<Arc<Tokenizer>>, Arc<Tokenizer>)> {
    let sql = match &plan.tokenizer {
        Some(p) => Some(Arc::new(load_tokenizer(std::path::Path::new(p))?)),
        None => None,
    };
    let chunk_path = plan.chunk.0.tokenizer.as_deref().expect("plan parsing fills the chunk tokenizer");
    let chunk = match (&sql, &plan.tokenizer) {
        (Some(t), Some(p)) if p == chunk_path => t.clone(),
        _ => Arc::new(load_tokenizer(std::path::Path::new(chunk_path))?),
    };
    Ok((sql, chunk))
}

/// Checks a plan without reading any data: statements, SQL, tokenizers, stage settings.
pub fn check(plan: &Plan) -> anyhow::Result<datafusion::logical_expr::LogicalPlan> {
    let (sql_tok, chunk_tok) = tokenizers(plan).map_err(|e| plan.error_at(plan.chunk.1, format!("{e:#}")))?;
    Chunker::new(&plan.chunk.0, chunk_tok).map_err(|e| plan.error_at(plan.chunk.1, e.to_string()))?;
    plan.mixtures()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let ws = session::build(plan, Arc::new(StoreRegistry::new()), sql_tok, 0, 1).await?;
        let df = session::input(plan, &ws).await?;
        df.into_optimized_plan().map_err(|e| plan.error_at(plan.input.1, e.to_string()).into())
    })
}

/// Runs a plan to completion and returns its manifest (also written next to the output).
pub fn run(plan: &Plan, opts: &RunOptions) -> anyhow::Result<Manifest> {
    let started = chrono_now();
    let t0 = Instant::now();
    let workers = opts.workers.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers.max(2)).enable_all().build()?;
    let (sql_tokenizer, chunk_tok) = tokenizers(plan).map_err(|e| plan.error_at(plan.chunk.1, format!("{e:#}")))?;
    let chunker =
        Arc::new(Chunker::new(&plan.chunk.0, chunk_tok).map_err(|e| plan.error_at(plan.chunk.1, e.to_string()))?);
    let mixtures = plan.mixtures()?;
    let registry = opts.registry.clone().unwrap_or_default();
    let sink = &plan.sink.0;
    let output = registry.resolve(&sink.url, &sink.store).map_err(|e| plan.error_at(plan.sink.1, format!("{e:#}")))?;
    // Fail fast on an unreachable or unauthorised output store, before reading anything.
    runtime
        .block_on(output.store.list_with_delimiter(Some(&output.prefix)))
        .with_context(|| format!("cannot reach output location {}", output.url))?;

    let progress = Arc::new(Progress::default());
    let _reporter = progress::report(progress.clone(), opts.progress);
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        registry,
        runtime: runtime.handle().clone(),
        sql_tokenizer,
        chunker,
        output: output.clone(),
        progress: progress.clone(),
        mixtures,
    });
    let cluster = opts.cluster.as_ref();
    if let Some(c) = cluster {
        let _ = progress.tag.set(format!("{}/{}", c.process, c.hosts.len()));
    }
    let connected = cluster.map(|c| {
        crate::cluster::stop_on_lost_peer(c);
        crate::cluster::connect_watchdog(c)
    });
    let config = crate::cluster::timely_config(workers, cluster);
    let guards = timely::execute(config, move |worker| run_worker(worker, &shared))
        .map_err(|e| anyhow!("cannot start workers: {e}"))?;
    if let Some(c) = connected {
        c.store(true, Ordering::Release);
    }
    // Every worker ends with every worker's report (see `gather`): take the first local one.
    let mut all = None;
    for r in guards.join() {
        let r = r.map_err(|e| anyhow!("worker failed: {e}"))?.map_err(|e| anyhow!(e))?;
        all.get_or_insert(r);
    }
    let reports = all.ok_or_else(|| anyhow!("no worker ran"))?;
    drop(_reporter);
    let processes = cluster.map_or(1, |c| c.hosts.len());
    let manifest = merge(plan, workers * processes, reports, started, t0)?;
    if cluster.is_some_and(|c| c.process != 0) {
        // Process 0 writes the manifest and the report for the whole cluster.
        return Ok(manifest);
    }
    let json = serde_json::to_vec_pretty(&manifest)?;
    runtime
        .block_on(output.store.put(&output.child("manifest.json"), PutPayload::from(json)))
        .with_context(|| format!("writing {}/manifest.json", output.url))?;
    let page = crate::html::page(&manifest);
    runtime
        .block_on(output.store.put(&output.child("report.html"), PutPayload::from(page.into_bytes())))
        .with_context(|| format!("writing {}/report.html", output.url))?;
    Ok(manifest)
}

fn merge(
    plan: &Plan,
    workers: usize,
    mut reports: Vec<WorkerReport>,
    started: String,
    t0: Instant,
) -> anyhow::Result<Manifest> {
    let wraps = reports.iter_mut().map(|r| std::mem::take(&mut r.wrap)).collect();
    let mixes = crate::mixing::merge(reports.iter_mut().flat_map(|r| std::mem::take(&mut r.mix)).collect())?;
    let rephrase = crate::wrap::merge(plan, wraps, t0.elapsed().as_secs_f64())?;
    let sum = |f: fn(&WorkerReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (read_rows, sql_rows) = (sum(|r| r.read_rows), sum(|r| r.sql_rows));
    anyhow::ensure!(
        sql_rows <= read_rows,
        "the plan's input produced {sql_rows} rows from {read_rows} read: a plan must filter rows, not multiply them (a join?)"
    );
    let (dedup_out, chunk_rejects) = (sum(|r| r.dedup_out), sum(|r| r.chunk_rejects));
    let near_duplicates = sum(|r| r.near_duplicates);
    let counts = Counts {
        read: read_rows + sum(|r| r.read_rejected),
        rejected: sum(|r| r.read_rejected) + chunk_rejects,
        filtered: read_rows - sql_rows,
        duplicates: sql_rows - dedup_out,
        near_duplicates,
        kept: dedup_out - near_duplicates - chunk_rejects,
        chunks: sum(|r| r.chunks),
    };
    debug_assert!(counts.reconciles());
    let mut shards: Vec<ShardInfo> = reports.iter().flat_map(|r| r.shards.clone()).collect();
    shards.sort_by(|a, b| a.path.cmp(&b.path));
    let mut reject_shards: Vec<ShardInfo> = reports.iter().flat_map(|r| r.reject_shards.clone()).collect();
    reject_shards.sort_by(|a, b| a.path.cmp(&b.path));
    let mut by_reason = BTreeMap::new();
    for (k, v) in reports.iter().flat_map(|r| r.by_reason.iter()) {
        *by_reason.entry(k.clone()).or_insert(0) += v;
    }
    let mut inputs: BTreeMap<String, InputOut> = BTreeMap::new();
    for i in reports.iter().flat_map(|r| r.inputs.iter()) {
        let e = inputs.entry(i.table.clone()).or_insert_with(|| InputOut { files: vec![], ..i.clone() });
        e.files.extend(i.files.iter().cloned());
    }
    // A Parquet file split by row group is listed by each worker that read part of it.
    inputs.values_mut().for_each(|i| {
        i.files.sort_by(|a, b| a.path.cmp(&b.path));
        i.files.dedup_by(|a, b| a.path == b.path);
    });
    let mut lengths: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, h) in reports.iter().flat_map(|r| r.lengths.iter()) {
        let e = lengths.entry(k.clone()).or_insert_with(|| vec![0; h.len()]);
        e.iter_mut().zip(h).for_each(|(a, b)| *a += b);
    }
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
    let chunk_tokens = sum(|r| r.chunk_tokens);
    Ok(Manifest {
        wrapflow_version: env!("CARGO_PKG_VERSION").into(),
        plan: PlanInfo { file: plan.file.clone(), hash: plan.hash.clone(), params: plan.params.clone() },
        workers,
        inputs: inputs.into_values().collect(),
        tokens: Tokens {
            chunks: chunk_tokens,
            max_per_chunk: reports.iter().map(|r| r.max_chunk_tokens).max().unwrap_or(0),
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
    })
}

/// UTC time as RFC 3339, to the second.
fn chrono_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Converts a batch of the input query into documents.
fn documents(batch: &RecordBatch) -> anyhow::Result<Vec<Document>> {
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
            let dedup_key = match &keys {
                Some(k) if !k.is_null(i) => xxhash_rust::xxh3::xxh3_128(k.value(i).as_bytes()),
                // No key (or a NULL one): unique to the record, so never a duplicate.
                _ => xxhash_rust::xxh3::xxh3_128(format!("\0{file}:{line}").as_bytes()),
            };
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

/// Runs a worker's share, then gathers the reports of all workers (of all processes) on every
/// worker, so that any process can build the manifest and an error anywhere fails everywhere.
fn run_worker(worker: &mut timely::worker::Worker, sh: &Shared) -> Result<Vec<WorkerReport>, String> {
    // The gather dataflow is built first, so it has the same identity on every worker whatever
    // happens in the main one.
    let mut gather_in = InputHandle::new();
    let gathered: Rc<RefCell<Vec<String>>> = Rc::default();
    let gather_probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let g = gathered.clone();
        scope
            .input_from(&mut gather_in)
            .container::<Vec<String>>()
            .broadcast()
            .inspect(move |x: &String| g.borrow_mut().push(x.clone()))
            .probe_with(&gather_probe);
    });
    let index = worker.index();
    // Logs from this thread carry the worker's global index (and so its process).
    let _span = tracing::info_span!("worker", id = index).entered();
    let mine = work(worker, sh);
    // Every worker must send exactly one message, or the others would wait for it forever.
    let json = serde_json::to_string(&(index, &mine)).unwrap_or_else(|e| {
        let err: Result<WorkerReport, String> = Err(format!("encoding the report of worker {index}: {e}"));
        serde_json::to_string(&(index, err)).expect("a string error encodes")
    });
    gather_in.send_batch(&mut vec![json]);
    drop(gather_in);
    while !gather_probe.done() {
        worker.step();
    }
    let mut all: Vec<(usize, Result<WorkerReport, String>)> = gathered
        .borrow()
        .iter()
        .map(|j| serde_json::from_str(j).map_err(|e| format!("decoding a worker report: {e}")))
        .collect::<Result<_, _>>()?;
    all.sort_by_key(|x| x.0);
    all.into_iter().map(|(_, r)| r).collect()
}

/// One worker's part of the run.
fn work(worker: &mut timely::worker::Worker, sh: &Shared) -> Result<WorkerReport, String> {
    let (index, peers) = (worker.index(), worker.peers());
    let plan = &sh.plan;
    let ws = sh
        .runtime
        .block_on(session::build(plan, sh.registry.clone(), sh.sql_tokenizer.clone(), index, peers))
        .map_err(|e: PlanError| e.to_string())?;
    let mut stream = sh
        .runtime
        .block_on(async {
            session::input(plan, &ws)
                .await?
                .execute_stream()
                .await
                .map_err(|e| plan.error_at(plan.input.1, e.to_string()))
        })
        .map_err(|e| e.to_string())?;

    let mut models = crate::wrap::load_models(plan).map_err(|e| format!("worker {index}: {e:#}"))?;
    let wrap_report = Rc::new(RefCell::new(crate::wrap::WrapReport::default()));
    let report = Rc::new(RefCell::new(WorkerReport::default()));
    let mut docs_in = InputHandle::new();
    let mut rejects_in = InputHandle::new();
    let probe = ProbeHandle::new();
    let target = |dir: &str| SinkTarget {
        location: sh.output.clone(),
        dir: dir.into(),
        worker: index,
        runtime: sh.runtime.clone(),
    };
    let reject_cfg = SinkConfig { format: SinkFormat::Jsonl, ..SinkConfig::default() };
    let dedup = plan.dedup.is_some();
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    worker.dataflow::<u64, _, _>(|scope| {
        let docs = scope.input_from(&mut docs_in).container::<Vec<Document>>();
        let docs = if dedup { docs.dedup(&DedupConfig::default()) } else { docs };
        let (r, p) = (report.clone(), sh.progress.clone());
        let docs = docs.inspect(move |_| r.borrow_mut().dedup_out += 1);
        let docs = match &plan.neardup {
            Some((cfg, _)) => {
                let (kept, near) = docs.near_dedup(cfg);
                let r = report.clone();
                near.inspect(move |_| r.borrow_mut().near_duplicates += 1);
                kept
            }
            None => docs,
        };
        let (chunks, chunk_rejects) = docs.chunk_docs(sh.chunker.clone());
        let r = report.clone();
        let chunks = chunks.inspect(move |c| {
            let mut r = r.borrow_mut();
            r.chunks += 1;
            r.chunk_tokens += c.n_tokens as u64;
            r.max_chunk_tokens = r.max_chunk_tokens.max(c.n_tokens as u64);
            crate::html::add_length(r.lengths.entry("real".into()).or_default(), c.n_tokens as u64);
            p.chunks.fetch_add(1, Ordering::Relaxed);
        });
        let r = report.clone();
        let chunk_rejects = chunk_rejects.inspect(move |_| r.borrow_mut().chunk_rejects += 1);
        let mut rejects = scope.input_from(&mut rejects_in).container::<Vec<Reject>>().concat(chunk_rejects);
        let mut mix_rows = chunks.clone().map(MixRow::from);
        if let Some(m) = models.take() {
            let tok = sh.chunker.tokenizer().clone();
            let (synthetic, gate_rejects) =
                crate::wrap::attach(chunks.clone(), m, plan, tok, wrap_report.clone(), sh.progress.clone());
            let r = report.clone();
            let synthetic = synthetic.inspect(move |x| {
                crate::html::add_length(r.borrow_mut().lengths.entry(x.style.clone()).or_default(), x.n_tokens as u64)
            });
            mix_rows = mix_rows.concat(synthetic.clone().map(MixRow::from));
            let (r, e) = (wrap_report.clone(), errors.clone());
            synthetic
                .sink_shards(target("synthetic"), &plan.sink.0.config)
                .inspect(move |s: &Result<ShardInfo, String>| match s {
                    Ok(s) => r.borrow_mut().shards.push(s.clone()),
                    Err(m) => e.borrow_mut().push(m.clone()),
                })
                .probe_with(&probe);
            rejects = rejects.concat(gate_rejects);
        }
        if !sh.mixtures.is_empty() {
            let (r, e) = (report.clone(), errors.clone());
            let target = MixTarget { location: sh.output.clone(), runtime: sh.runtime.clone() };
            mix_rows
                .mix(sh.mixtures.clone(), target)
                .inspect(move |ev: &MixEvent| match ev {
                    MixEvent::Error(m) => e.borrow_mut().push(m.clone()),
                    other => r.borrow_mut().mix.push(other.clone()),
                })
                .probe_with(&probe);
        }
        let r = report.clone();
        let rejects = rejects.inspect(move |x: &Reject| {
            *r.borrow_mut().by_reason.entry(manifest::reason_class(&x.reason)).or_insert(0) += 1
        });
        let (r, e) = (report.clone(), errors.clone());
        chunks
            .sink_shards(target("chunks"), &plan.sink.0.config)
            .inspect(move |s: &Result<ShardInfo, String>| match s {
                Ok(s) => r.borrow_mut().shards.push(s.clone()),
                Err(m) => e.borrow_mut().push(m.clone()),
            })
            .probe_with(&probe);
        let (r, e) = (report.clone(), errors.clone());
        rejects
            .sink_shards(target("rejects"), &reject_cfg)
            .inspect(move |s: &Result<ShardInfo, String>| match s {
                Ok(s) => r.borrow_mut().reject_shards.push(s.clone()),
                Err(m) => e.borrow_mut().push(m.clone()),
            })
            .probe_with(&probe);
    });

    let sources = ws.factory.sources();
    let mut epoch = 0u64;
    let mut seen_bytes = 0u64;
    let mut seen_total = 0u64;
    let mut failure = None;
    loop {
        let next = sh.runtime.block_on(stream.next());
        let batch = match next {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                failure = Some(format!("reading input: {e}"));
                None
            }
        };
        if let Some(b) = &batch {
            match documents(b) {
                Ok(mut docs) => {
                    report.borrow_mut().sql_rows += docs.len() as u64;
                    docs_in.send_batch(&mut docs);
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        for s in &sources {
            let mut rejects = s.stats.take_rejects();
            if !rejects.is_empty() {
                rejects_in.send_batch(&mut rejects);
            }
        }
        let (bytes, total): (u64, u64) = sources
            .iter()
            .map(|s| (s.stats.bytes_read.load(Ordering::Relaxed), s.stats.bytes_total.load(Ordering::Relaxed)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        sh.progress.bytes_read.fetch_add(bytes - seen_bytes, Ordering::Relaxed);
        sh.progress.bytes_total.fetch_add(total - seen_total, Ordering::Relaxed);
        sh.progress.docs.fetch_add(batch.as_ref().map_or(0, |b| b.num_rows() as u64), Ordering::Relaxed);
        (seen_bytes, seen_total) = (bytes, total);
        if batch.is_none() || failure.is_some() {
            break;
        }
        epoch += 1;
        docs_in.advance_to(epoch);
        rejects_in.advance_to(epoch);
        while probe.less_than(&epoch.saturating_sub(IN_FLIGHT)) {
            worker.step();
        }
        worker.step();
    }
    drop(stream);
    drop(docs_in);
    drop(rejects_in);
    while !probe.done() {
        worker.step();
    }
    if let Some(f) = failure {
        return Err(f);
    }
    if let Some(e) = errors.borrow().first() {
        return Err(e.clone());
    }
    let mut report = std::mem::take(&mut *report.borrow_mut());
    report.wrap = std::mem::take(&mut *wrap_report.borrow_mut());
    for s in &sources {
        report.read_rows += s.stats.rows.load(Ordering::Relaxed);
        report.read_rejected += s.stats.rejected.load(Ordering::Relaxed);
        report.inputs.push(InputOut {
            table: s.table.clone(),
            location: s.location.clone(),
            format: format!("{:?}", s.format).to_lowercase(),
            files: s.stats.files.lock().unwrap().iter().cloned().map(Into::into).collect(),
        });
    }
    Ok(report)
}
