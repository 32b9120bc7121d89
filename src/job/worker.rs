//! One worker's part of a job: the dataflow `dedup → neardup → chunk → [fan-out → rephrase →
//! gates] → sinks → mix`, fed segment by segment, with a checkpoint after each segment.
//!
//! Per segment: worker 0's coordinator ([`crate::job::follow`]) names the input objects and every
//! worker reads its share at timestamps `segment << 32 | batch`; once the probe passes the
//! segment every stage is quiescent (sinks hold their time until uploads end), each worker saves
//! its states and report, and worker 0 commits ([`crate::job::checkpoint`]) before it names the next
//! segment, so no worker sends new input before all have saved.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use object_store::ObjectMeta;
use wrapflow_operators::MixEvent;
use wrapflow_operators::state::checkpoint::{StateRegistry, failpoint};

use crate::job::checkpoint::{self, Commit, WorkerIndex};
use crate::job::context::{STOP, Shared};
use crate::job::dataflow::Pipeline;
use crate::job::feed::{Inputs, feed, object_ranks, where_metrics};
use crate::job::follow::{Control, Coordinator, Source};
use crate::job::segment::SEGMENT_SHIFT;
use crate::job::session;
use crate::plan::PlanError;
use crate::report::manifest::{self, Input as InputOut, JobState};
use crate::report::merge::WorkerReport;

/// How a worker's part ended.
pub enum Ended {
    /// Input over, stages flushed, final checkpoint committed.
    Finished(WorkerReport),
    /// Stopped at the last checkpoint (a signal, or a lost coordinator).
    Stopped(WorkerReport),
}

/// Runs this worker's part; `states` is marked abandoned when it returns early, so that stages do
/// not flush state that the last checkpoint holds.
pub(crate) fn work(worker: &mut timely::worker::Worker, sh: &Shared, states: &StateRegistry) -> Result<Ended, String> {
    let (index, peers) = (worker.index(), worker.peers());
    let plan = &sh.plan;
    let ws = sh
        .runtime
        .block_on(session::build(plan, sh.registry.clone(), sh.sql_tokenizer.clone(), index, peers))
        .map_err(|e: PlanError| e.to_string())?;
    let df = sh.runtime.block_on(session::input(plan, &ws)).map_err(|e| e.to_string())?;

    let (mut ctl_in, ctl_msgs, ctl_probe) = crate::job::dataflow::control(worker);

    let mut models = crate::job::wrap::load_models(plan).map_err(|e| format!("worker {index}: {e:#}"))?;
    let Pipeline { mut docs_in, mut rejects_in, probe, report, ctx } =
        crate::job::dataflow::pipeline(worker, sh, states, models.take())?;

    let sources = ws.factory.sources();
    // What this process had counted before it resumed: the live counters add to it.
    let mut chains = BTreeMap::new();
    if let Some(res) = &sh.resume {
        let idx = res.indexes.get(index).ok_or_else(|| format!("the checkpoint has no state for worker {index}"))?;
        *report.borrow_mut() = idx.report.clone();
        ctx.metrics.restore(std::mem::take(&mut report.borrow_mut().metrics));
        chains = idx.chains.clone();
        sh.runtime.block_on(load_states(sh, states, &chains)).map_err(|e| format!("worker {index}: {e:#}"))?;
    }
    let base_inputs = std::mem::take(&mut report.borrow_mut().inputs);
    let snapshot = |report: &Rc<RefCell<WorkerReport>>| {
        let mut r = report.borrow().clone();
        r.metrics = ctx.metrics.snapshot();
        r.inputs = base_inputs.clone();
        for s in &sources {
            r.read_rows += s.stats.rows.load(Ordering::Relaxed);
            r.read_rejected += s.stats.rejected.load(Ordering::Relaxed);
            let files: Vec<manifest::InputFileOut> =
                s.stats.files.lock().unwrap().iter().cloned().map(Into::into).collect();
            match r.inputs.iter_mut().find(|i| i.table == s.table) {
                Some(i) => i.files.extend(files),
                None => r.inputs.push(InputOut {
                    table: s.table.clone(),
                    location: s.location.clone(),
                    format: format!("{:?}", s.format).to_lowercase(),
                    files,
                    skipped: vec![],
                }),
            }
        }
        r
    };

    let mut coordinator = (index == 0).then(|| {
        let srcs = sources
            .iter()
            .map(|s| Source { table: s.table.clone(), location: s.store.clone(), format: s.format })
            .collect();
        Coordinator::new(srcs, sh.resume.as_ref().map(|r| &r.commit), sh.follow, sh.limits)
    });
    let mut last_commit: Option<Commit> = sh.resume.as_ref().map(|r| r.commit.clone());
    let mut seg = last_commit.as_ref().map_or(0, |c| c.next_segment);
    docs_in.advance_to(seg << SEGMENT_SHIFT);
    rejects_in.advance_to(seg << SEGMENT_SHIFT);
    ctl_in.advance_to(seg);
    let abandon = |why: String| {
        states.abandon();
        why
    };
    let finish = loop {
        if let Some(c) = coordinator.as_mut() {
            let next = sh.runtime.block_on(c.next(seg, &STOP)).map_err(|e| abandon(format!("{e:#}")))?;
            let (files, bytes) = c.pending();
            sh.progress.pending_files.store(files, Ordering::Relaxed);
            sh.progress.pending_bytes.store(bytes, Ordering::Relaxed);
            sh.progress.bytes_total.store(c.listed_bytes(), Ordering::Relaxed);
            ctl_in.send(serde_json::to_string(&next).expect("control messages encode"));
            // An input buffers what it is given until told to flush (or advanced).
            ctl_in.flush();
        }
        let ctl = loop {
            if let Some(m) = ctl_msgs.borrow_mut().remove(&seg) {
                break Some(m);
            }
            if ctl_probe.done() {
                break None;
            }
            worker.step_or_park(Some(std::time::Duration::from_millis(20)));
        };
        let files = match ctl {
            Some(Control::Segment { files, .. }) => files,
            Some(Control::Stop { finish: true, .. }) => break true,
            Some(Control::Stop { finish: false, .. }) | None => break false,
        };
        for s in &sources {
            let metas = files.get(&s.table).map(|v| v.iter().map(meta).collect()).unwrap_or_default();
            *s.segment.lock().unwrap() = Some(metas);
        }
        let physical = sh.runtime.block_on(df.clone().create_physical_plan()).map_err(|e| abandon(e.to_string()))?;
        let stream = {
            let _rt = sh.runtime.enter();
            datafusion::physical_plan::execute_stream(physical.clone(), ws.ctx.task_ctx())
                .map_err(|e| abandon(e.to_string()))?
        };
        let ranks = object_ranks(&sources, &files);
        let inputs = Inputs { docs: &mut docs_in, rejects: &mut rejects_in, ctx: &ctx };
        feed(worker, (&sh.runtime, &sh.progress), stream, &sources, &report, inputs, &probe, (seg, &ranks))
            .map_err(abandon)?;
        let (dropped, limit) = where_metrics(&physical);
        let mut r = report.borrow_mut();
        r.where_dropped += dropped;
        r.limit |= limit;
        drop(r);
        let end = (seg + 1) << SEGMENT_SHIFT;
        docs_in.advance_to(end);
        rejects_in.advance_to(end);
        while probe.less_than(&end) {
            worker.step();
        }
        if let Some(e) = ctx.first_error() {
            return Err(abandon(e));
        }
        seg += 1;
        checkpoint(sh, states, &mut chains, snapshot(&report), seg, index)
            .map_err(|e| abandon(format!("saving checkpoint {seg}: {e:#}")))?;
        ctl_in.advance_to(seg);
        if let Some(c) = coordinator.as_mut() {
            while ctl_probe.less_than(&seg) {
                worker.step();
            }
            c.committed_segment();
            let commit = sh
                .runtime
                .block_on(commit(sh, c, seg, seg, false, peers, last_commit.as_ref()))
                .map_err(|e| abandon(format!("committing checkpoint {seg}: {e:#}")))?;
            last_commit = Some(commit);
        }
    };
    if !finish {
        states.abandon();
        return Ok(Ended::Stopped(snapshot(&report)));
    }
    // The input is over: close it, let every stage flush, and commit that as the last checkpoint.
    drop(docs_in);
    drop(rejects_in);
    while !probe.done() {
        worker.step();
    }
    if let Some(e) = ctx.first_error() {
        return Err(abandon(e));
    }
    let id = seg + 1;
    let last = snapshot(&report);
    checkpoint(sh, states, &mut chains, last.clone(), id, index)
        .map_err(|e| format!("saving the last checkpoint: {e:#}"))?;
    ctl_in.advance_to(id);
    if let Some(c) = coordinator.as_mut() {
        while ctl_probe.less_than(&id) {
            worker.step();
        }
        sh.runtime
            .block_on(commit(sh, c, id, seg, true, peers, last_commit.as_ref()))
            .map_err(|e| format!("committing the last checkpoint: {e:#}"))?;
    }
    Ok(Ended::Finished(last))
}

/// An `ObjectMeta` for a listed object (readers need only its path and size).
fn meta(s: &manifest::FileStamp) -> ObjectMeta {
    ObjectMeta {
        location: checkpoint::stamp_path(s),
        last_modified: Default::default(),
        size: s.size,
        e_tag: s.e_tag.clone(),
        version: None,
    }
}

/// Loads every registered state from its chain of parts.
async fn load_states(
    sh: &Shared,
    states: &StateRegistry,
    chains: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<()> {
    for (name, state) in states.entries() {
        let chain = chains.get(&name).ok_or_else(|| {
            anyhow::anyhow!("the checkpoint has no state `{name}`: was it written by another version of the plan?")
        })?;
        for part in chain {
            let bytes = checkpoint::get(&sh.output, part).await?;
            state.borrow_mut().load(&bytes).map_err(|e| anyhow::anyhow!("loading {part}: {e:#}"))?;
        }
    }
    Ok(())
}

/// Saves this worker's states and report for checkpoint `id`.
fn checkpoint(
    sh: &Shared,
    states: &StateRegistry,
    chains: &mut BTreeMap<String, Vec<String>>,
    report: WorkerReport,
    id: u64,
    worker: usize,
) -> anyhow::Result<()> {
    let dir = checkpoint::state_dir(id, worker);
    sh.runtime.block_on(async {
        for (name, state) in states.entries() {
            let chain = chains.entry(name.clone()).or_default();
            let saved = state.borrow_mut().save(chain.is_empty() || chain.len() >= checkpoint::MAX_CHAIN)?;
            let path = format!("{dir}/{}.bin", checkpoint::part_name(&name));
            checkpoint::put(&sh.output, &path, saved.bytes).await?;
            if saved.full {
                chain.clear();
            }
            chain.push(path);
        }
        failpoint("state");
        let index = WorkerIndex { report, chains: chains.clone() };
        checkpoint::put(&sh.output, &format!("{dir}/index.json"), serde_json::to_vec(&index)?).await
    })
}

/// Worker 0: writes checkpoint `id` (the commit), then the manifest of what it covers.
async fn commit(
    sh: &Shared,
    c: &Coordinator,
    id: u64,
    next_segment: u64,
    finished: bool,
    workers: usize,
    previous: Option<&Commit>,
) -> anyhow::Result<Commit> {
    let indexes: Vec<String> = (0..workers).map(|w| format!("{}/index.json", checkpoint::state_dir(id, w))).collect();
    let mut reports = Vec::new();
    let mut state_files = indexes.clone();
    for p in &indexes {
        let idx: WorkerIndex = serde_json::from_slice(&checkpoint::get(&sh.output, p).await?)?;
        state_files.extend(idx.chains.values().flatten().cloned());
        reports.push(idx.report);
    }
    let commit = Commit {
        id,
        plan_hash: sh.plan.hash.clone(),
        workers,
        next_segment,
        finished,
        committed_at: crate::report::merge::chrono_now(),
        seen: c.committed.clone(),
        changed: c.changed.clone(),
        skipped: c.skipped_list(),
        indexes,
        state_files,
    };
    checkpoint::put(&sh.output, &checkpoint::commit_path(id), serde_json::to_vec_pretty(&commit)?).await?;
    failpoint("commit");
    sh.progress.checkpoints.store(id, Ordering::Relaxed);
    sh.progress.checkpoint_unix.store(crate::job::output::unix_now(), Ordering::Relaxed);
    let mut manifest = job_manifest(sh, &commit, reports, c.pending())?;
    if finished {
        manifest.job.as_mut().expect("set").status = "finished".into();
    }
    checkpoint::put(&sh.output, "manifest.json", serde_json::to_vec_pretty(&manifest)?).await?;
    let kept: Vec<&Commit> = std::iter::once(&commit).chain(previous).collect();
    checkpoint::prune(&sh.output, &kept).await?;
    checkpoint::prune_journal(&sh.output, &crate::job::wrap::journal_dir(&sh.plan), next_segment).await?;
    tracing::info!(checkpoint = id, segments = next_segment, finished, "checkpoint committed");
    Ok(commit)
}

/// The manifest of what a commit covers, with the job's state.
pub(crate) fn job_manifest(
    sh: &Shared,
    commit: &Commit,
    reports: Vec<WorkerReport>,
    pending: (u64, u64),
) -> anyhow::Result<manifest::Manifest> {
    let done: std::collections::BTreeSet<String> = reports
        .iter()
        .flat_map(|r| r.mix.iter())
        .filter_map(|e| if let MixEvent::Done(s) = e { Some(s.name.clone()) } else { None })
        .collect();
    let open_mix_shards = reports
        .iter()
        .flat_map(|r| r.mix.iter())
        .filter_map(|e| match e {
            MixEvent::Shard(s) if !done.contains(&s.mixture) => Some((**s).clone()),
            _ => None,
        })
        .collect();
    let mut m = crate::report::merge::merge(&sh.plan, commit.workers, reports, sh.started.clone(), sh.t0)?;
    for i in m.inputs.iter_mut() {
        i.skipped = commit.skipped.get(&i.table).cloned().unwrap_or_default();
    }
    m.counts.skipped_objects = commit.skipped.values().map(|v| v.len() as u64).sum();
    m.job = Some(JobState {
        status: if commit.finished { "finished" } else { "running" }.into(),
        checkpoint: commit.id,
        committed_at: commit.committed_at.clone(),
        segments: commit.next_segment,
        input_files: commit.seen.values().map(|v| v.len() as u64).sum(),
        pending_files: pending.0,
        pending_bytes: pending.1,
        changed_inputs: commit.changed.clone(),
        open_mix_shards,
    });
    Ok(m)
}
