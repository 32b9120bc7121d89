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
use timely::dataflow::{InputHandle, ProbeHandle};
use wrapflow_operators::MixEvent;
use wrapflow_operators::sql::source::SourceHandle;
use wrapflow_operators::state::checkpoint::{StateRegistry, failpoint};

use crate::job::checkpoint::{self, Commit, WorkerIndex};
use crate::job::context::{STOP, Shared};
use crate::job::dataflow::Pipeline;
use crate::job::feed::{InFlight, Inputs, feed, object_ranks, where_metrics};
use crate::job::follow::{Control, Coordinator, Source};
use crate::job::segment::SEGMENT_SHIFT;
use crate::job::session;
use crate::plan::PlanError;
use crate::report::manifest::{self, Input as InputOut, JobState};
use crate::report::merge::WorkerReport;
use wrapflow_operators::state::metrics::Metrics;

/// How a worker's part ended.
pub enum Ended {
    /// Input over, stages flushed, final checkpoint committed.
    Finished(WorkerReport),
    /// Stopped at the last checkpoint (a signal, or a lost coordinator).
    Stopped(WorkerReport),
}

/// Runs this worker's part; `states` is marked abandoned when it returns early, so that stages do
/// not flush state that the last checkpoint holds. A failure is recorded in `sh.failure` before
/// this worker's dataflow inputs close, so that the peers it stops name its error, not their own.
pub(crate) fn work(worker: &mut timely::worker::Worker, sh: &Shared, states: &StateRegistry) -> Result<Ended, String> {
    let mut part = Part::start(worker, sh, states).inspect_err(|e| sh.failure.set(e))?;
    let ended = part.drive(worker);
    if let Err(e) = &ended {
        states.abandon();
        sh.failure.set(e);
    }
    ended
}

/// A worker's part of a job as it runs: its dataflows, its SQL input, and where it stands.
struct Part<'a> {
    sh: &'a Shared,
    states: &'a StateRegistry,
    index: usize,
    peers: usize,
    pipe: Pipeline,
    ctl_in: ControlInput,
    ctl_msgs: Rc<RefCell<BTreeMap<u64, Control>>>,
    ctl_probe: ProbeHandle<u64>,
    ctx: datafusion::prelude::SessionContext,
    df: datafusion::prelude::DataFrame,
    sources: Vec<std::sync::Arc<SourceHandle>>,
    /// Each state's chain of saved parts.
    chains: BTreeMap<String, Vec<String>>,
    /// The inputs a resumed job had read before (the live counters add to them).
    base_inputs: Vec<InputOut>,
    coordinator: Option<Coordinator>,
    last_commit: Option<Commit>,
    seg: u64,
}

type ControlInput = InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<String>>>;

impl<'a> Part<'a> {
    /// Builds the SQL session and the dataflows, and loads the checkpoint a job resumes from.
    fn start(worker: &mut timely::worker::Worker, sh: &'a Shared, states: &'a StateRegistry) -> Result<Self, String> {
        let (index, peers, plan) = (worker.index(), worker.peers(), &sh.plan);
        let ws = sh
            .runtime
            .block_on(session::build(plan, sh.registry.clone(), sh.sql_tokenizer.clone(), index, peers))
            .map_err(|e: PlanError| e.to_string())?;
        let df = sh.runtime.block_on(session::input(plan, &ws)).map_err(|e| e.to_string())?;
        let (ctl_in, ctl_msgs, ctl_probe) = crate::job::dataflow::control(worker);
        // Failures past this point are recorded while `ctl_in` is still open (see `work`).
        let (pipe, chains) = Self::build(worker, sh, states).inspect_err(|e| sh.failure.set(e))?;
        let sources = ws.factory.sources();
        let base_inputs = std::mem::take(&mut pipe.report.borrow_mut().inputs);
        let coordinator = (index == 0).then(|| {
            let srcs = sources
                .iter()
                .map(|s| Source { table: s.table.clone(), location: s.store.clone(), format: s.format })
                .collect();
            Coordinator::new(srcs, sh.resume.as_ref().map(|r| &r.commit), sh.follow, sh.limits)
        });
        let last_commit = sh.resume.as_ref().map(|r| r.commit.clone());
        let seg = last_commit.as_ref().map_or(0, |c| c.next_segment);
        let mut part = Part {
            sh,
            states,
            index,
            peers,
            pipe,
            ctl_in,
            ctl_msgs,
            ctl_probe,
            ctx: ws.ctx,
            df,
            sources,
            chains,
            base_inputs,
            coordinator,
            last_commit,
            seg,
        };
        part.pipe.docs_in.advance_to(seg << SEGMENT_SHIFT);
        part.pipe.rejects_in.advance_to(seg << SEGMENT_SHIFT);
        part.ctl_in.advance_to(seg);
        Ok(part)
    }

    /// The pipeline dataflow, with the states and report of the checkpoint a job resumes from.
    fn build(
        worker: &mut timely::worker::Worker,
        sh: &Shared,
        states: &StateRegistry,
    ) -> Result<(Pipeline, BTreeMap<String, Vec<String>>), String> {
        let (index, plan) = (worker.index(), &sh.plan);
        let metrics = Metrics::default();
        let models = crate::job::wrap::load_models(plan, &sh.runtime, &metrics, sh.workers).map_err(|e| {
            let e = format!("worker {index}: {e:#}");
            sh.failure.set_as(Some(crate::job::Fault::Model), &e);
            e
        })?;
        let pipe = crate::job::dataflow::pipeline(worker, sh, states, models, metrics)?;
        let mut chains = BTreeMap::new();
        if let Some(res) = &sh.resume {
            let idx =
                res.indexes.get(index).ok_or_else(|| format!("the checkpoint has no state for worker {index}"))?;
            // The models loaded now answer from here on: their hashes, not the checkpoint's
            // (which a checkpoint of an earlier version lacks).
            let hashes = std::mem::take(&mut pipe.report.borrow_mut().weights_hashes);
            *pipe.report.borrow_mut() =
                crate::report::worker::WorkerReport { weights_hashes: hashes, ..idx.report.clone() };
            pipe.ctx.metrics.restore(std::mem::take(&mut pipe.report.borrow_mut().metrics));
            chains = idx.chains.clone();
            sh.runtime.block_on(load_states(sh, states, &chains)).map_err(|e| format!("worker {index}: {e:#}"))?;
        }
        Ok((pipe, chains))
    }

    /// Runs segments until the input is over or the job stops.
    fn drive(&mut self, worker: &mut timely::worker::Worker) -> Result<Ended, String> {
        loop {
            match self.next_segment(worker)? {
                Some(Control::Segment { files, .. }) => {
                    self.run_segment(worker, &files)?;
                    self.end_segment(worker)?;
                }
                Some(Control::Stop { finish: true, .. }) => return self.finish(worker),
                Some(Control::Stop { finish: false, .. }) | None => {
                    self.states.abandon();
                    return Ok(Ended::Stopped(self.snapshot()));
                }
            }
        }
    }

    /// This worker's report so far: what its stages counted and what it read.
    fn snapshot(&self) -> WorkerReport {
        let mut r = self.pipe.report.borrow().clone();
        r.metrics = self.pipe.ctx.metrics.snapshot();
        r.inputs = self.base_inputs.clone();
        for s in &self.sources {
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
    }

    /// Worker 0 says what the next segment is; every worker waits to hear it (`None`: the control
    /// dataflow ended, as when worker 0 stopped).
    fn next_segment(&mut self, worker: &mut timely::worker::Worker) -> Result<Option<Control>, String> {
        if let Some(c) = self.coordinator.as_mut() {
            // The coordinator waits for input in short slices, stepping in between to hear of
            // failed peers.
            // The lag shown live: what is listed and not yet committed, after each listing too.
            let show_lag = |c: &crate::job::follow::Coordinator, progress: &crate::job::progress::Progress| {
                let (files, bytes) = c.pending();
                progress.pending_files.store(files, Ordering::Relaxed);
                progress.pending_bytes.store(bytes, Ordering::Relaxed);
                progress.bytes_total.store(c.listed_bytes(), Ordering::Relaxed);
            };
            let next = loop {
                if let Some(n) = self.sh.runtime.block_on(c.next(self.seg, &STOP)).map_err(|e| format!("{e:#}"))? {
                    break n;
                }
                show_lag(c, &self.sh.progress);
                self.sh.failure.step(worker)?;
            };
            if let Control::Stop { finish: false, .. } = next {
                *self.sh.changed_at_stop.lock().unwrap_or_else(|e| e.into_inner()) = c.changed.clone();
            }
            show_lag(c, &self.sh.progress);
            self.ctl_in.send(serde_json::to_string(&next).expect("control messages encode"));
            // An input buffers what it is given until told to flush (or advanced).
            self.ctl_in.flush();
        }
        loop {
            if let Some(m) = self.ctl_msgs.borrow_mut().remove(&self.seg) {
                return Ok(Some(m));
            }
            if self.ctl_probe.done() {
                return Ok(None);
            }
            worker.step_or_park(Some(std::time::Duration::from_millis(20)));
            self.sh.failure.check()?;
        }
    }

    /// Reads this worker's share of the segment's `files` through the plan's SQL into the
    /// dataflow, and steps until every stage has finished the segment.
    fn run_segment(
        &mut self,
        worker: &mut timely::worker::Worker,
        files: &BTreeMap<String, Vec<manifest::FileStamp>>,
    ) -> Result<(), String> {
        for s in &self.sources {
            let stamps = files.get(&s.table).map(Vec::as_slice).unwrap_or_default();
            let metas = self.sh.runtime.block_on(async {
                let mut metas = Vec::with_capacity(stamps.len());
                for f in stamps {
                    metas.push(meta(checkpoint::object_path(&s.store, &f.path).await, f));
                }
                metas
            });
            *s.segment.lock().unwrap() = Some(metas);
        }
        let rt = &self.sh.runtime;
        let physical = rt.block_on(self.df.clone().create_physical_plan()).map_err(|e| e.to_string())?;
        let stream = {
            let _rt = rt.enter();
            datafusion::physical_plan::execute_stream(physical.clone(), self.ctx.task_ctx())
                .map_err(|e| e.to_string())?
        };
        let ranks = object_ranks(&self.sources, files);
        let pipe = &mut self.pipe;
        let budget = if !self.sh.plan.rephrase.is_empty() { InFlight::MODEL } else { InFlight::CORPUS };
        let failure = &self.sh.failure;
        let inputs = Inputs { docs: &mut pipe.docs_in, rejects: &mut pipe.rejects_in, ctx: &pipe.ctx, budget, failure };
        let progress = (rt, &*self.sh.progress);
        feed(worker, progress, stream, &self.sources, &pipe.report, inputs, &pipe.probe, (self.seg, &ranks))?;
        let (dropped, limit) = where_metrics(&physical);
        let mut r = pipe.report.borrow_mut();
        r.where_dropped += dropped;
        r.limit |= limit;
        drop(r);
        let end = (self.seg + 1) << SEGMENT_SHIFT;
        pipe.docs_in.advance_to(end);
        pipe.rejects_in.advance_to(end);
        while pipe.probe.less_than(&end) {
            failure.step(worker)?;
        }
        stage_failure(&pipe.ctx, failure)
    }

    /// Saves this worker's checkpoint after the segment; worker 0 commits it once all have.
    fn end_segment(&mut self, worker: &mut timely::worker::Worker) -> Result<(), String> {
        self.seg += 1;
        let seg = self.seg;
        let report = self.snapshot();
        checkpoint(self.sh, self.states, &mut self.chains, report, seg, self.index)
            .map_err(|e| format!("saving checkpoint {seg}: {e:#}"))?;
        self.ctl_in.advance_to(seg);
        if let Some(c) = self.coordinator.as_mut() {
            while self.ctl_probe.less_than(&seg) {
                self.sh.failure.step(worker)?;
            }
            self.sh.failure.check()?;
            c.committed_segment();
            let committed =
                self.sh.runtime.block_on(commit(self.sh, c, seg, seg, false, self.peers, self.last_commit.as_ref()));
            self.last_commit = Some(committed.map_err(|e| format!("committing checkpoint {seg}: {e:#}"))?);
        }
        Ok(())
    }

    /// The input is over: closes it, lets every stage flush, and commits that as the last
    /// checkpoint.
    fn finish(&mut self, worker: &mut timely::worker::Worker) -> Result<Ended, String> {
        // Dropping an input handle closes it (the fresh ones are attached to nothing).
        drop(std::mem::replace(&mut self.pipe.docs_in, InputHandle::new()));
        drop(std::mem::replace(&mut self.pipe.rejects_in, InputHandle::new()));
        while !self.pipe.probe.done() {
            self.sh.failure.step(worker)?;
        }
        stage_failure(&self.pipe.ctx, &self.sh.failure)?;
        let (sh, id, seg) = (self.sh, self.seg + 1, self.seg);
        let last = self.snapshot();
        checkpoint(sh, self.states, &mut self.chains, last.clone(), id, self.index)
            .map_err(|e| format!("saving the last checkpoint: {e:#}"))?;
        self.ctl_in.advance_to(id);
        if let Some(c) = self.coordinator.as_mut() {
            while self.ctl_probe.less_than(&id) {
                self.sh.failure.step(worker)?;
            }
            self.sh.failure.check()?;
            sh.runtime
                .block_on(commit(sh, c, id, seg, true, self.peers, self.last_commit.as_ref()))
                .map_err(|e| format!("committing the last checkpoint: {e:#}"))?;
        }
        Ok(Ended::Finished(last))
    }
}

/// An `ObjectMeta` for a listed object (readers need only its path and size).
fn meta(location: object_store::path::Path, s: &manifest::FileStamp) -> ObjectMeta {
    ObjectMeta { location, last_modified: Default::default(), size: s.size, e_tag: s.e_tag.clone(), version: None }
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
    checkpoint::put_manifest(&sh.output, &manifest, sh.card).await?;
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

/// The first failure a stage reported, recorded with its kind (the job's error is then of that
/// kind), as this worker's error.
fn stage_failure(ctx: &wrapflow_operators::StageContext, failure: &crate::job::context::Failure) -> Result<(), String> {
    match ctx.first_failure() {
        Some((fault, e)) => {
            failure.set_as(fault, &e);
            Err(e)
        }
        None => Ok(()),
    }
}
