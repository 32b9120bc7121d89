//! Runs a plan: per-worker DataFusion queries feed a timely dataflow
//! `dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks → mix`, with rejects flowing
//! to their own sink.
//!
//! Each worker reads its share of the input through its own session; dedup sends keys to their
//! owner worker, so it is global. Workers keep at most a budget of batches ([`crate::job::feed::InFlight`]) in the
//! dataflow beyond what the sinks have finished, so memory stays bounded whatever the input size.
//! The input is read in segments with a checkpoint after each ([`crate::job::worker`]); a run on an
//! output that holds a checkpoint resumes from it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use object_store::{ObjectStoreExt, PutPayload};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use tokenizers::Tokenizer;
use wrapflow_operators::io::store::{Location, StoreRegistry};
use wrapflow_operators::stages::chunk::load_tokenizer;
use wrapflow_operators::state::checkpoint::StateRegistry;
use wrapflow_operators::{Chunker, MixStageConfig};

pub use crate::job::context::STOP;
use crate::job::context::{Resume, Shared};
pub use crate::job::options::RunOptions;
use crate::job::progress::{self, Progress};
use crate::job::session;
use crate::job::worker::Ended;
use crate::job::{Fault, checkpoint};
use crate::plan::{Plan, PlanError};
use crate::report::manifest::Manifest;
use crate::report::merge::{WorkerReport, chrono_now, merge};

/// Where a signal stopped the run that wrote `m` ("at checkpoint 3", "before its first
/// checkpoint"); `None` when it ran to its end.
pub fn stopped_at(m: &Manifest) -> Option<String> {
    let stopped = STOP.load(Ordering::SeqCst) && m.job.as_ref().is_none_or(|j| j.status != "finished");
    stopped.then(|| {
        m.job.as_ref().map_or("before its first checkpoint".into(), |j| format!("at checkpoint {}", j.checkpoint))
    })
}

/// Makes the first SIGINT or SIGTERM stop the job at its next checkpoint (a second one ends the
/// process at once).
pub fn stop_on_signal() {
    extern "C" fn on_signal(_: libc::c_int) {
        if STOP.swap(true, Ordering::SeqCst) {
            // SAFETY: `_exit` is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
        const MSG: &[u8] =
            b"\nwrapflow: stopping at the next checkpoint (signal again to quit now; the lease then expires)\n";
        // SAFETY: `write` is async-signal-safe; the message is a static buffer.
        unsafe { libc::write(2, MSG.as_ptr().cast(), MSG.len()) };
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic (and `_exit`), which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
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
    check_models(plan)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let ws = session::build(plan, Arc::new(StoreRegistry::new()), sql_tok, 0, 1).await?;
        let df = session::input(plan, &ws).await?;
        df.into_optimized_plan().map_err(|e| plan.error_at(plan.input.1, e.to_string()).into())
    })
}

/// The plan's model directories exist and hold a model, its provider is built in, and the gates
/// its styles name have what they need.
pub fn check_models(plan: &Plan) -> Result<(), PlanError> {
    let dir = |path: &str, what: &str| -> Result<(), String> {
        let p = std::path::Path::new(path);
        if !p.is_dir() {
            return Err(format!("{what} {path:?} is not a directory (import one with `wrapflow model import`)"));
        }
        let onnx = std::fs::read_dir(p)
            .map_err(|e| format!("{what} {path:?}: {e}"))?
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "onnx"));
        if !onnx || !p.join("tokenizer.json").is_file() {
            return Err(format!(
                "{what} {path:?} holds no .onnx model and tokenizer.json (import one with `wrapflow model import`)"
            ));
        }
        Ok(())
    };
    for (r, at) in &plan.rephrase {
        if r.endpoint.is_empty() {
            dir(&r.model, "REPHRASE model").map_err(|m| plan.error_at(*at, m))?;
        }
        if r.provider == wrapflow_operators::engine::Provider::Cuda && !cfg!(feature = "cuda") {
            return Err(plan.error_at(*at, "provider = 'cuda' needs a wrapflow built with `--features cuda`"));
        }
    }
    // The gates' models, checked at the first REPHRASE.
    if let Some((_, at)) = plan.rephrase.first() {
        if !plan.gates.grounding_model.is_empty() {
            dir(&plan.gates.grounding_model, "GATES grounding model").map_err(|m| plan.error_at(*at, m))?;
        }
        if !plan.gates.entailment.is_empty() {
            dir(&plan.gates.entailment, "GATES entailment model").map_err(|m| plan.error_at(*at, m))?;
        }
        if !plan.gates.embedder.is_empty() {
            dir(&plan.gates.embedder, "GATES embedder").map_err(|m| plan.error_at(*at, m))?;
        } else if let Some(st) = plan.styles.iter().find(|s| s.gate_on("meaning") || s.gate_on("support")) {
            // Without an embedder these gates would pass every row unmeasured.
            return Err(plan.error_at(
                *at,
                format!(
                    "style `{}` has the meaning and support gates, which need an embedder: give one \
                     (GATES WITH (embedder = 'models/...')), or list the style's gates without them \
                     (STYLE {} WITH (gates = '...'))",
                    st.name, st.name
                ),
            ));
        }
    }
    Ok(())
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
    plan.mixtures()?;
    let mix = plan.mix_stage();
    check_models(plan)?;
    let registry = opts.registry.clone().unwrap_or_default();
    let sink = &plan.sink.0;
    let output = registry.resolve(&sink.url, &sink.store).map_err(|e| plan.error_at(plan.sink.1, format!("{e:#}")))?;
    // Fail fast on an unreachable or unauthorised output store, before reading anything.
    runtime
        .block_on(output.store.list_with_delimiter(Some(&output.prefix)))
        .with_context(|| format!("cannot reach output location {}", output.url))
        .map_err(|e| crate::job::tag(Fault::Output, e))?;
    let inputs = runtime
        .block_on(input_locations(plan, &registry, sql_tokenizer.clone()))
        .map_err(|e| crate::job::tag(Fault::Input, e))?;
    crate::job::output::check_location(&output, &inputs).map_err(|e| plan.error_at(plan.sink.1, format!("{e:#}")))?;
    let cluster = opts.cluster.as_ref();
    let first_process = cluster.is_none_or(|c| c.process == 0);
    // Process 0 takes the output (marker and lease) for the whole cluster.
    let claim = if first_process {
        let claim = crate::job::output::claim(plan, &output, opts.claim, runtime.handle(), &STOP);
        Some(runtime.block_on(claim).map_err(|e| crate::job::tag(Fault::Output, e))?)
    } else {
        None
    };
    let owner = claim.as_ref().map(|c| c.marker.clone());
    let result = run_claimed(plan, opts, &runtime, output, registry, owner, (sql_tokenizer, chunker, mix), started, t0);
    if let Some(c) = claim {
        runtime.block_on(c.lease.release());
    }
    result
}

/// Where the plan's sources read, to keep the output away from them.
async fn input_locations(
    plan: &Plan,
    registry: &Arc<StoreRegistry>,
    tokenizer: Option<Arc<Tokenizer>>,
) -> anyhow::Result<Vec<Location>> {
    let ws = session::build(plan, registry.clone(), tokenizer, 0, 1).await?;
    Ok(ws.factory.sources().iter().map(|s| s.store.clone()).collect())
}

/// [`run`] once the output is this job's.
#[allow(clippy::too_many_arguments)]
fn run_claimed(
    plan: &Plan,
    opts: &RunOptions,
    runtime: &tokio::runtime::Runtime,
    output: Location,
    registry: Arc<StoreRegistry>,
    owner: Option<crate::job::output::Marker>,
    (sql_tokenizer, chunker, mix): (Option<Arc<Tokenizer>>, Arc<Chunker>, MixStageConfig),
    started: String,
    t0: Instant,
) -> anyhow::Result<Manifest> {
    let workers = opts.workers.max(1);
    let cluster = opts.cluster.as_ref();
    let processes = cluster.map_or(1, |c| c.hosts.len());
    let first_process = cluster.is_none_or(|c| c.process == 0);
    let resume = runtime.block_on(resume(plan, &output, workers * processes, owner.as_ref()))?;
    if let Some(r) = &resume
        && r.commit.finished
    {
        anyhow::ensure!(
            opts.follow.is_none(),
            "{} holds a finished run of this plan: follow into a new output location",
            output.url
        );
        tracing::info!(checkpoint = r.commit.id, "the output holds a finished run of this plan: nothing to do");
        return committed_manifest(runtime, &output)?.ok_or_else(|| anyhow!("{}/manifest.json is missing", output.url));
    }

    let progress = Arc::new(Progress::default());
    if let Some(r) = &resume {
        progress.checkpoints.store(r.commit.id, Ordering::Relaxed);
        // The age shown is the resumed checkpoint's own.
        let at = humantime::parse_rfc3339(&r.commit.committed_at).unwrap_or_else(|_| std::time::SystemTime::now());
        let unix = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        progress.checkpoint_unix.store(unix, Ordering::Relaxed);
        progress.resume_counts(&r.indexes, cluster.map_or(0, |c| c.process), workers);
    }
    let _reporter = progress::report(progress.clone(), opts.progress);
    let _metrics = match &opts.metrics {
        Some(addr) => Some(crate::job::watch::MetricsServer::start(addr, progress.clone(), runtime)?),
        None => None,
    };
    // Process 0 writes the manifest and the card (`--force` refuses an output holding a README.md).
    let card = owner.is_some();
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        registry,
        runtime: runtime.handle().clone(),
        sql_tokenizer,
        chunker,
        output: output.clone(),
        progress: progress.clone(),
        mix,
        resume,
        follow: opts.follow,
        limits: opts.limits,
        started: started.clone(),
        t0,
        run_id: format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ),
        workers: opts.workers,
        failure: Default::default(),
        changed_at_stop: Default::default(),
        card,
    });
    let (finished, reports) = execute(shared.clone(), opts)?;
    drop(_reporter);
    let committed = if first_process { committed_manifest(runtime, &output)? } else { None };
    let Some(mut manifest) = committed else {
        // Another process of a cluster, or a job stopped before its first checkpoint.
        return merge(plan, workers * processes, reports, started, t0);
    };
    if !finished && let Some(j) = manifest.job.as_mut() {
        j.status = "stopped".into();
        // Changes seen since the last checkpoint (a resume would find them again).
        let seen = std::mem::take(&mut *shared.changed_at_stop.lock().unwrap_or_else(|e| e.into_inner()));
        for c in seen {
            if !j.changed_inputs.iter().any(|k| k.table == c.table && k.now.path == c.now.path) {
                j.changed_inputs.push(c);
            }
        }
        runtime
            .block_on(checkpoint::put_manifest(&output, &manifest, card))
            .map_err(|e| crate::job::tag(Fault::Output, e))?;
    }
    let samples = runtime.block_on(crate::report::samples::collect(&output, &manifest)).unwrap_or_else(|e| {
        tracing::warn!("report.html without samples: {e:#}");
        vec![]
    });
    let page = crate::report::html::page(&manifest, &samples);
    runtime
        .block_on(output.store.put(&output.child("report.html"), PutPayload::from(page.into_bytes())))
        .with_context(|| format!("writing {}/report.html", output.url))
        .map_err(|e| crate::job::tag(Fault::Output, e))?;
    Ok(manifest)
}

/// Runs the workers of this process (connected to the other processes of a cluster); returns
/// whether the job finished, and every worker's report.
fn execute(shared: Arc<Shared>, opts: &RunOptions) -> anyhow::Result<(bool, Vec<WorkerReport>)> {
    let (cluster, progress) = (opts.cluster.as_ref(), shared.progress.clone());
    if let Some(c) = cluster {
        let _ = progress.tag.set(format!("{}/{}", c.process, c.hosts.len()));
    }
    let connected = cluster.map(|c| {
        crate::job::cluster::stop_on_lost_peer(c);
        crate::job::cluster::connect_watchdog(c)
    });
    let config = crate::job::cluster::timely_config(opts.workers.max(1), cluster);
    let failure = shared.failure.clone();
    let guards = timely::execute(config, move |worker| run_worker(worker, &shared))
        .map_err(|e| anyhow!("cannot start workers: {e}"))?;
    if let Some(c) = connected {
        c.store(true, Ordering::Release);
    }
    // Every worker ends with every worker's report (see `gather`): take the first local one.
    let mut all = None;
    for r in guards.join() {
        // The first failure is the cause: the workers it stopped report it too, or their own
        // consequence of it.
        let r = r.map_err(|e| anyhow!("worker failed: {e}"))?.map_err(|e| {
            let e = failure.get().map_or(e, str::to_string);
            // Not read from the store: the error may be that the store is gone.
            let hint = match progress.checkpoints.load(Ordering::Relaxed) {
                0 => String::new(),
                id => format!("\nthe job stopped at checkpoint {id}: run the same command again to resume from it"),
            };
            let e = anyhow!("{e}{hint}");
            match failure.fault() {
                Some(f) => f.tag(e),
                None => e,
            }
        })?;
        all.get_or_insert(r);
    }
    all.ok_or_else(|| anyhow!("no worker ran"))
}

/// The manifest of the last checkpoint, if one was committed.
fn committed_manifest(rt: &tokio::runtime::Runtime, output: &Location) -> anyhow::Result<Option<Manifest>> {
    match rt.block_on(output.store.get(&output.child("manifest.json"))) {
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(anyhow!("reading {}/manifest.json: {e}", output.url)),
        Ok(got) => {
            let bytes = rt.block_on(got.bytes())?;
            let m = crate::report::manifest::from_json(&bytes);
            Ok(Some(m.with_context(|| format!("decoding {}/manifest.json", output.url))?))
        }
    }
}

/// The checkpoint to resume from, after checks; the first process (the one that holds the
/// output's marker) also removes what the job wrote after it (uncommitted shards and state).
async fn resume(
    plan: &Plan,
    output: &Location,
    workers: usize,
    owner: Option<&crate::job::output::Marker>,
) -> anyhow::Result<Option<Resume>> {
    let Some(commit) = checkpoint::latest(output).await? else {
        let has_manifest = output.store.head(&output.child("manifest.json")).await.is_ok();
        anyhow::ensure!(
            !has_manifest,
            "{} holds the output of a run without checkpoints: write to a new output location",
            output.url
        );
        if let Some(owner) = owner {
            checkpoint::clean_uncommitted(output, None, &[], owner).await?;
        }
        return Ok(None);
    };
    anyhow::ensure!(
        commit.plan_hash == plan.hash,
        "{} holds checkpoint {} of another plan (hash {}, this plan {}): resume with the same plan and parameters, or write to a new output location",
        output.url,
        commit.id,
        commit.plan_hash,
        plan.hash
    );
    anyhow::ensure!(
        commit.workers == workers,
        "checkpoint {} was written by {} workers; resume with as many (this run has {workers})",
        commit.id,
        commit.workers
    );
    let indexes = checkpoint::indexes(output, &commit).await?;
    if let Some(owner) = owner
        && !commit.finished
    {
        let reports: Vec<_> = indexes.iter().map(|i| i.report.clone()).collect();
        let removed = checkpoint::clean_uncommitted(output, Some(&commit), &reports, owner).await?;
        tracing::info!(checkpoint = commit.id, removed, "resuming from checkpoint");
    }
    Ok(Some(Resume { commit, indexes }))
}

/// A worker's result: finished (or stopped at a checkpoint) and its report, or its error.
type Outcome = Result<(bool, WorkerReport), String>;

/// Runs a worker's share, then gathers the reports of all workers (of all processes) on every
/// worker, so that any process can build the manifest and an error anywhere fails everywhere.
fn run_worker(worker: &mut timely::worker::Worker, sh: &Shared) -> Result<(bool, Vec<WorkerReport>), String> {
    // The gather dataflow is built first, so it has the same identity on every worker whatever
    // happens in the main one.
    let mut gather_in = InputHandle::new();
    let gathered: Rc<RefCell<Vec<String>>> = Rc::default();
    let gather_probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let (g, failure) = (gathered.clone(), sh.failure.clone());
        scope
            .input_from(&mut gather_in)
            .container::<Vec<String>>()
            .broadcast()
            .inspect(move |x: &String| {
                // A failed worker's report, from any process, stops this process's workers.
                if let Ok((_, Err(e))) = serde_json::from_str::<(usize, Outcome)>(x) {
                    failure.set(&e);
                }
                g.borrow_mut().push(x.clone())
            })
            .probe_with(&gather_probe);
    });
    let index = worker.index();
    // Logs from this thread carry the worker's global index (and so its process).
    let _span = tracing::info_span!("worker", id = index).entered();
    let states = StateRegistry::default();
    // A panic is this worker's failure like any other: the peers must hear of it.
    let worked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::job::worker::work(worker, sh, &states)));
    let mine = worked
        .unwrap_or_else(|p| {
            let why = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            let e = format!("worker {index} panicked: {}", why.unwrap_or_default());
            sh.failure.set(&e);
            Err(e)
        })
        .map(|e| match e {
            Ended::Finished(r) => (true, r),
            Ended::Stopped(r) => (false, r),
        });
    // Every worker must send exactly one message, or the others would wait for it forever.
    let json = serde_json::to_string(&(index, &mine)).unwrap_or_else(|e| {
        let err: Outcome = Err(format!("encoding the report of worker {index}: {e}"));
        serde_json::to_string(&(index, err)).expect("a string error encodes")
    });
    gather_in.send_batch(&mut vec![json]);
    drop(gather_in);
    // Once the job has failed, a peer that cannot report (its thread died) must not hold the
    // others here: they wait a while for the reports, then fail with the first error.
    let mut failed_at: Option<Instant> = None;
    while !gather_probe.done() {
        worker.step_or_park(Some(Duration::from_millis(20)));
        if let Some(e) = sh.failure.get()
            && failed_at.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(10)
        {
            return Err(e.to_string());
        }
    }
    let mut all: Vec<(usize, Outcome)> = gathered
        .borrow()
        .iter()
        .map(|j| serde_json::from_str(j).map_err(|e| format!("decoding a worker report: {e}")))
        .collect::<Result<_, _>>()?;
    all.sort_by_key(|x| x.0);
    let all: Vec<(bool, WorkerReport)> = all.into_iter().map(|(_, r)| r).collect::<Result<_, _>>()?;
    let finished = all.iter().all(|r| r.0);
    Ok((finished, all.into_iter().map(|r| r.1).collect()))
}
