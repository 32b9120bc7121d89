//! A worker's two dataflows: the control dataflow that says what each segment is, and the main
//! one, `dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks → mix`, whose stages
//! count into the worker's metrics and report their failures to its stage context.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concat, Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use wrapflow_operators::io::journal::JournalTarget;
use wrapflow_operators::stages::dedup::near::NearDedup;
use wrapflow_operators::stages::rephrase::Rephrased;
use wrapflow_operators::state::checkpoint::StateRegistry;
use wrapflow_operators::state::metrics::Metrics;
use wrapflow_operators::{
    ChunkDocs, Dedup, DedupConfig, Document, Mix, MixRow, Reject, SinkConfig, SinkFormat, SinkShards, StageContext,
};

use crate::job::context::Shared;
use crate::job::follow::Control;
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

/// Builds the main dataflow `dedup → neardup → chunk → [fan-out → rephrase → gates] → sinks →
/// mix`; the rephrase stages when `models` is set.
pub(crate) fn pipeline(
    worker: &mut timely::worker::Worker,
    sh: &Shared,
    states: &StateRegistry,
    models: Option<crate::job::wrap::Models>,
    metrics: Metrics,
) -> Result<Pipeline, String> {
    let plan = &sh.plan;
    let report = Rc::new(RefCell::new(WorkerReport::default()));
    let (mut docs_in, mut rejects_in, probe) = (InputHandle::new(), InputHandle::new(), ProbeHandle::new());
    let journal = match &models {
        Some(_) => Some(journal(sh, worker.index())?),
        None => None,
    };
    let weights_hash = models.as_ref().map(|m| m.backend.borrow().lineage().weights_hash).unwrap_or_default();
    report.borrow_mut().weights_hash = weights_hash;
    let ctx = StageContext { metrics, ..StageContext::checkpointed(states) }
        .with_tokenizer(sh.chunker.tokenizer().clone())
        .with_output(sh.output.clone(), sh.runtime.clone());
    let (ctx, backend) = match models {
        Some(m) => (ctx.with_embedder(m.embedder).with_checkers(m.checkers), Some(m.backend)),
        None => (ctx, None),
    };
    sh.progress.watch(&ctx.metrics);
    let sink = |dir: &str, config: &SinkConfig| SinkConfig { dir: dir.into(), ..config.clone() };
    // Rejects are JSON Lines whatever the plan's format, in shards of the plan's size: an open
    // shard is held in memory until it closes.
    let reject_cfg = sink("rejects", &SinkConfig { format: SinkFormat::Jsonl, ..plan.sink.0.config.clone() });
    worker.dataflow::<u64, _, _>(|scope| {
        let docs = scope.input_from(&mut docs_in).container::<Vec<Document>>();
        let docs = if plan.dedup.is_some() { docs.dedup(&DedupConfig::default(), &ctx) } else { docs };
        let mut docs = match &plan.neardup {
            Some((cfg, _)) => docs.near_dedup(cfg, &ctx),
            None => docs,
        };
        for (name, options, _) in &plan.documents {
            match wrapflow_operators::stages::document_stage(name) {
                Ok(stage) => docs = (stage.build)(docs, options, &ctx),
                Err(e) => ctx.fail(e),
            }
        }
        let (chunks, chunk_rejects) = docs.chunk_docs(&plan.chunk.0, &ctx);
        let mut rejects = scope.input_from(&mut rejects_in).container::<Vec<Reject>>().concat(chunk_rejects);
        let mut mix_rows = chunks.clone().map(MixRow::from);
        if let Some(backend) = &backend {
            let (synthetic, gate_rejects) = crate::job::wrap::attach(chunks.clone(), plan, &ctx, backend, journal);
            mix_rows = mix_rows.concat(synthetic.clone().map(MixRow::from));
            let r = report.clone();
            synthetic
                .sink_shards(&sink("synthetic", &plan.sink.0.config), &ctx)
                .inspect(move |s| r.borrow_mut().synthetic_shards.push(s.clone()))
                .probe_with(&probe);
            rejects = rejects.concat(gate_rejects);
        }
        if !sh.mix.mixtures.is_empty() {
            let r = report.clone();
            mix_rows.mix(&sh.mix, &ctx).inspect(move |ev| r.borrow_mut().mix.push(ev.clone())).probe_with(&probe);
        }
        let r = report.clone();
        chunks
            .sink_shards(&sink("chunks", &plan.sink.0.config), &ctx)
            .inspect(move |s| r.borrow_mut().shards.push(s.clone()))
            .probe_with(&probe);
        let r = report.clone();
        rejects
            .sink_shards(&reject_cfg, &ctx)
            .inspect(move |s| r.borrow_mut().reject_shards.push(s.clone()))
            .probe_with(&probe);
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
