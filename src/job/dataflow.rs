//! A worker's two dataflows: the control dataflow that says what each segment is, and the main
//! one, the plan's pipeline (`dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks →
//! mix`), whose stages count into the worker's metrics and report their failures to its stage
//! context.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use wrapflow_operators::io::journal::JournalTarget;
use wrapflow_operators::stages::rephrase::Rephrased;
use wrapflow_operators::state::checkpoint::StateRegistry;
use wrapflow_operators::state::metrics::Metrics;
use wrapflow_operators::{Document, Reject, StageContext};

use crate::job::context::Shared;
use crate::job::follow::Control;
use crate::job::pipeline::{Env, Flow};
use crate::report::merge::WorkerReport;

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
    /// The shards the sinks and mixtures wrote (the counts are in `ctx.metrics`).
    pub report: Rc<RefCell<WorkerReport>>,
    /// The stages' context: their metrics and the failures they reported.
    pub ctx: StageContext,
}

/// Builds the main dataflow: the plan's pipeline ([`crate::job::pipeline`]), step after step;
/// the rephrase steps' backends (one per REPHRASE) and journal when `models` is set.
pub(crate) fn pipeline(
    worker: &mut timely::worker::Worker,
    sh: &Shared,
    states: &StateRegistry,
    models: Option<crate::job::wrap::Models>,
    metrics: Metrics,
) -> Result<Pipeline, String> {
    let report = Rc::new(RefCell::new(WorkerReport::default()));
    let (mut docs_in, mut rejects_in, probe) = (InputHandle::new(), InputHandle::new(), ProbeHandle::new());
    let journal = match &models {
        Some(_) => Some(journal(sh, worker.index())?),
        None => None,
    };
    let weights_hash: Vec<String> =
        models.iter().flat_map(|m| &m.backends).map(|b| b.borrow().lineage().weights_hash).collect();
    report.borrow_mut().weights_hashes = weights_hash;
    let ctx = StageContext { metrics, ..StageContext::checkpointed(states) }
        .with_tokenizer(sh.chunker.tokenizer().clone())
        .with_output(sh.output.clone(), sh.runtime.clone());
    let (ctx, backends) = match models {
        Some(m) => (ctx.with_embedder(m.embedder).with_checkers(m.checkers), m.backends),
        None => (ctx, Vec::new()),
    };
    sh.progress.watch(&ctx.metrics);
    let env = Env { sh, ctx: &ctx, report: &report, probe: &probe, backends: &backends, journal };
    worker.dataflow::<u64, _, _>(|scope| {
        let mut flow = Flow {
            docs: Some(scope.input_from(&mut docs_in).container::<Vec<Document>>()),
            chunks: None,
            synthetic: None,
            rejects: scope.input_from(&mut rejects_in).container::<Vec<Reject>>(),
        };
        for step in crate::job::pipeline::steps(&sh.plan) {
            step.build(&mut flow, &env);
        }
    });
    Ok(Pipeline { docs_in, rejects_in, probe, report, ctx })
}

/// This worker's journal of rephrasings, with what an earlier attempt at the segment we resume
/// with already generated (also without a checkpoint: the job may have died in its first
/// segment).
fn journal(sh: &Shared, index: usize) -> Result<crate::job::wrap::Journal, String> {
    let dir = crate::job::wrap::journal_dir(&sh.plan);
    let seg = sh.resume.as_ref().map_or(0, |r| r.commit.next_segment);
    let found: HashMap<String, Rephrased> = sh
        .runtime
        .block_on(wrapflow_operators::io::journal::load(&sh.output, &dir, seg))
        .map_err(|e| format!("reading the rephrase journal: {e:#}"))?;
    Ok(crate::job::wrap::Journal {
        target: JournalTarget {
            location: sh.output.clone(),
            dir,
            worker: index,
            run: sh.run_id.clone(),
            runtime: sh.runtime.clone(),
        },
        memo: Rc::new(RefCell::new(found)),
    })
}
