//! A worker's two dataflows: the control dataflow that says what each segment is, and the main
//! one, `dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks → mix`, whose stages
//! count into the worker's report.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concat, Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use wrapflow_operators::io::journal::JournalTarget;
use wrapflow_operators::stages::dedup::near::NearDedup;
use wrapflow_operators::stages::rephrase::Rephrased;
use wrapflow_operators::state::checkpoint::StateRegistry;
use wrapflow_operators::{
    ChunkDocs, Dedup, DedupConfig, Document, Mix, MixEvent, MixRow, MixTarget, Reject, ShardInfo, SinkConfig,
    SinkFormat, SinkShards, SinkTarget,
};

use crate::job::context::Shared;
use crate::job::follow::Control;
use crate::report::merge::WorkerReport;

pub(crate) type Errors = Rc<RefCell<Vec<String>>>;

fn ok_or_push<T: Clone + 'static>(
    r: &Rc<RefCell<WorkerReport>>,
    e: &Errors,
    pick: fn(&mut WorkerReport) -> &mut Vec<T>,
) -> impl Fn(&Result<T, String>) + 'static {
    let (r, e) = (r.clone(), e.clone());
    move |s: &Result<T, String>| match s {
        Ok(s) => pick(&mut r.borrow_mut()).push(s.clone()),
        Err(m) => e.borrow_mut().push(m.clone()),
    }
}

/// The control dataflow: worker 0 says what each segment is; all workers' inputs at time `s`
/// close once they have saved the checkpoint after segment `s - 1`.
#[allow(clippy::type_complexity)]
pub(crate) fn control(
    worker: &mut timely::worker::Worker,
) -> (
    InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<String>>>,
    Rc<RefCell<BTreeMap<u64, Control>>>,
    ProbeHandle<u64>,
) {
    let mut ctl_in = InputHandle::new();
    let ctl_msgs: Rc<RefCell<BTreeMap<u64, Control>>> = Rc::default();
    let ctl_probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let m = ctl_msgs.clone();
        scope
            .input_from(&mut ctl_in)
            .container::<Vec<String>>()
            .broadcast()
            .inspect(move |x: &String| {
                let c: Control = serde_json::from_str(x).expect("control messages are ours");
                let seq = match &c {
                    Control::Segment { seq, .. } | Control::Stop { seq, .. } => *seq,
                };
                m.borrow_mut().insert(seq, c);
            })
            .probe_with(&ctl_probe);
    });

    (ctl_in, ctl_msgs, ctl_probe)
}

/// One worker's handles on its main dataflow.
pub(crate) struct Pipeline {
    pub docs_in: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Document>>>,
    pub rejects_in: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Reject>>>,
    /// Passed by a time once every sink has finished it.
    pub probe: ProbeHandle<u64>,
    pub report: Rc<RefCell<WorkerReport>>,
    pub wrap_report: Rc<RefCell<crate::job::wrap::WrapReport>>,
    /// Errors the sinks and mixtures reported.
    pub errors: Errors,
}

/// Builds the main dataflow `dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks →
/// mix`, its stages counting into the worker's report; the rephrase stages when `models` is set.
pub(crate) fn pipeline(
    worker: &mut timely::worker::Worker,
    sh: &Shared,
    states: &StateRegistry,
    mut models: Option<crate::job::wrap::Models>,
) -> Result<Pipeline, String> {
    let (index, plan) = (worker.index(), &sh.plan);
    let wrap_report = Rc::new(RefCell::new(crate::job::wrap::WrapReport::default()));
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
    let errors: Errors = Rc::default();
    // Rephrasings an earlier attempt at the segment we resume with already generated.
    let journaled: Rc<RefCell<HashMap<String, Rephrased>>> = Rc::default();
    // (Also without a checkpoint: the job may have died in its first segment.)
    let journal_dir = crate::job::wrap::journal_dir(plan);
    if models.is_some() {
        let seg = sh.resume.as_ref().map_or(0, |r| r.commit.next_segment);
        let found = sh
            .runtime
            .block_on(wrapflow_operators::io::journal::load(&sh.output, &journal_dir, seg))
            .map_err(|e| format!("reading the rephrase journal: {e:#}"))?;
        *journaled.borrow_mut() = found;
    }
    worker.dataflow::<u64, _, _>(|scope| {
        let docs = scope.input_from(&mut docs_in).container::<Vec<Document>>();
        let docs = if plan.dedup.is_some() { docs.dedup_checkpointed(&DedupConfig::default(), states) } else { docs };
        let (r, p) = (report.clone(), sh.progress.clone());
        let docs = docs.inspect(move |_| r.borrow_mut().dedup_out += 1);
        let docs = match &plan.neardup {
            Some((cfg, _)) => {
                let (kept, near) = docs.near_dedup_checkpointed(cfg, states);
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
            crate::report::html::add_length(r.lengths.entry("real".into()).or_default(), c.n_tokens as u64);
            p.chunks.fetch_add(1, Ordering::Relaxed);
        });
        let r = report.clone();
        let chunk_rejects = chunk_rejects.inspect(move |_| r.borrow_mut().chunk_rejects += 1);
        let mut rejects = scope.input_from(&mut rejects_in).container::<Vec<Reject>>().concat(chunk_rejects);
        let mut mix_rows = chunks.clone().map(MixRow::from);
        if let Some(m) = models.take() {
            let tok = sh.chunker.tokenizer().clone();
            let journal = crate::job::wrap::Journal {
                target: JournalTarget {
                    location: sh.output.clone(),
                    dir: journal_dir.clone(),
                    worker: index,
                    run: sh.run_id.clone(),
                    runtime: sh.runtime.clone(),
                },
                memo: journaled.clone(),
            };
            let (synthetic, gate_rejects) = crate::job::wrap::attach(
                chunks.clone(),
                m,
                plan,
                tok,
                wrap_report.clone(),
                sh.progress.clone(),
                Some(journal),
            );
            let r = report.clone();
            let synthetic = synthetic.inspect(move |x| {
                crate::report::html::add_length(
                    r.borrow_mut().lengths.entry(x.style.clone()).or_default(),
                    x.n_tokens as u64,
                )
            });
            mix_rows = mix_rows.concat(synthetic.clone().map(MixRow::from));
            let (w, e) = (wrap_report.clone(), errors.clone());
            synthetic
                .sink_shards_checkpointed(target("synthetic"), &plan.sink.0.config, states)
                .inspect(move |s: &Result<ShardInfo, String>| match s {
                    Ok(s) => w.borrow_mut().shards.push(s.clone()),
                    Err(m) => e.borrow_mut().push(m.clone()),
                })
                .probe_with(&probe);
            rejects = rejects.concat(gate_rejects);
        }
        if !sh.mixtures.is_empty() {
            let (r, e) = (report.clone(), errors.clone());
            let target = MixTarget { location: sh.output.clone(), runtime: sh.runtime.clone() };
            mix_rows
                .mix_checkpointed(sh.mixtures.clone(), target, states)
                .inspect(move |ev: &MixEvent| match ev {
                    MixEvent::Error(m) => e.borrow_mut().push(m.clone()),
                    other => r.borrow_mut().mix.push(other.clone()),
                })
                .probe_with(&probe);
        }
        let r = report.clone();
        let rejects = rejects.inspect(move |x: &Reject| {
            *r.borrow_mut().by_reason.entry(crate::report::fidelity::reason_class(&x.reason)).or_insert(0) += 1
        });
        chunks
            .sink_shards_checkpointed(target("chunks"), &plan.sink.0.config, states)
            .inspect(ok_or_push(&report, &errors, |r| &mut r.shards))
            .probe_with(&probe);
        rejects
            .sink_shards_checkpointed(target("rejects"), &reject_cfg, states)
            .inspect(ok_or_push(&report, &errors, |r| &mut r.reject_shards))
            .probe_with(&probe);
    });

    Ok(Pipeline { docs_in, rejects_in, probe, report, wrap_report, errors })
}
