//! The WRAP part of a run: chunks → fan-out → rephrase → gates, with one model session per
//! REPHRASE (and one embedder session) per worker, and a journal of rephrasings for a job that
//! dies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use anyhow::Context;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::{Concat, Inspect, ToStream};
use tokio::runtime::Handle;
use wrapflow_operators::engine::backend::remote::api_key;
use wrapflow_operators::engine::{
    Backend, Decoder, Embedder, Entailer, LocalBackend, RemoteBackend, SessionConfig, SharedBackend, shared,
};
use wrapflow_operators::io::journal::{JournalTarget, Journaled, Memo};
use wrapflow_operators::stages::context::StageContext;
use wrapflow_operators::stages::fanout::StyleTask;
use wrapflow_operators::stages::fanout::{FanOut, FanoutConfig};
use wrapflow_operators::stages::gates::claims::ClaimCheckers;
use wrapflow_operators::stages::gates::{Gate, GateConfig, GateStageConfig};
use wrapflow_operators::stages::rephrase::{Rephrase, Rephrased};
use wrapflow_operators::state::metrics::Metrics;
use wrapflow_operators::{Chunk, Reject, Synthetic};

use crate::plan::Plan;
use crate::plan::stage::{BackendConfig, RephraseSpec};

/// A worker's model sessions.
pub struct Models {
    /// One per REPHRASE, in plan order.
    pub backends: Vec<SharedBackend>,
    pub embedder: Option<Embedder>,
    /// The claim-reading gates' models (`GATES WITH (grounding_model = ..., entailment = ...)`).
    pub checkers: ClaimCheckers,
}

/// Loads the plan's models (or connects their endpoints) and embedder for one worker (`None` if
/// the plan does not rephrase); a remote backend sends with `runtime` and counts in `metrics`.
/// With `threads = 0` each of this process's `workers` gets an equal share of its cores (a
/// worker runs its REPHRASEs' models one after another, never at once).
pub fn load_models(plan: &Plan, runtime: &Handle, metrics: &Metrics, workers: usize) -> anyhow::Result<Option<Models>> {
    let config = |spec: &RephraseSpec| {
        let mut cfg = spec.backend();
        if cfg.session.intra_threads == 0 {
            cfg.session.intra_threads = auto_threads(workers);
        }
        cfg
    };
    let Some((first, _)) = plan.rephrase.first() else { return Ok(None) };
    let backends = plan
        .rephrase
        .iter()
        .map(|(spec, _)| load_backend(&config(spec), runtime, metrics))
        .collect::<anyhow::Result<_>>()?;
    // The gates' models run with the first REPHRASE's session settings.
    let cfg = config(first);
    let embedder = match plan.gates.embedder.as_str() {
        "" => None,
        dir => Some(
            Embedder::load(Path::new(dir), &SessionConfig { intra_threads: 1, ..cfg.session.clone() })
                .with_context(|| format!("loading the embedder {dir}"))?,
        ),
    };
    let checkers = load_checkers(&plan.gates, &cfg.session)?;
    Ok(Some(Models { backends, embedder, checkers }))
}

/// The backend `cfg` describes: its model in this process, or a connection to its server.
pub fn load_backend(cfg: &BackendConfig, runtime: &Handle, metrics: &Metrics) -> anyhow::Result<SharedBackend> {
    let backend: Box<dyn Backend> = match &cfg.remote {
        Some(remote) => {
            let key = api_key(&cfg.api_key_env, &cfg.api_key_file)?;
            // The key is masked in anything wrapflow prints or writes from now on.
            key.iter().for_each(|k| crate::plan::secrets::register(k));
            Box::new(RemoteBackend::new(remote.clone(), cfg.generation.clone(), key, runtime.clone(), metrics.clone())?)
        }
        None => {
            let decoder = Decoder::load(Path::new(&cfg.model), &cfg.session)
                .with_context(|| format!("loading the rephrase model {}", cfg.model))?;
            Box::new(LocalBackend::new(decoder, cfg.generation.clone()))
        }
    };
    Ok(shared(backend))
}

/// The models that `gates` reads claims with (the `lm` gate's language model, the `entailment`
/// gate's cross-encoder), each loaded when the plan names it.
pub fn load_checkers(gates: &GateConfig, session: &SessionConfig) -> anyhow::Result<ClaimCheckers> {
    let reader = match gates.grounding_model.as_str() {
        "" => None,
        dir => {
            Some(Decoder::load(Path::new(dir), session).with_context(|| format!("loading the lm gate's model {dir}"))?)
        }
    };
    let entailer = match gates.entailment.as_str() {
        "" => None,
        dir => Some(
            Entailer::load(Path::new(dir), &SessionConfig { intra_threads: 1, ..session.clone() })
                .with_context(|| format!("loading the entailment gate's model {dir}"))?,
        ),
    };
    Ok(ClaimCheckers::new(reader, entailer))
}

/// ONNX Runtime threads for each of `workers` that share this machine's cores (at least one).
pub fn auto_threads(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / workers.max(1)).max(1)
}

/// A worker's journal of rephrasings: where it writes, and what an earlier attempt at the
/// current segment left (see [`wrapflow_operators::io::journal`]).
pub struct Journal {
    pub target: JournalTarget,
    pub memo: Rc<RefCell<HashMap<String, Rephrased>>>,
}

impl Journal {
    /// The journal of the plan's `index`th REPHRASE: the worker's memo (entries are keyed by
    /// style name, and each style has one REPHRASE) and files of its own.
    pub fn for_stage(&self, index: usize) -> Journal {
        let mut target = self.target.clone();
        if index > 0 {
            target.run = format!("{}-r{index}", target.run);
        }
        Journal { target, memo: self.memo.clone() }
    }
}

/// The journal directory under the output: per plan, so that entries of another plan (another
/// model, prompt or seed) are never taken for this one's.
pub fn journal_dir(plan: &Plan) -> String {
    format!("_wrapflow/journal/{}", &plan.hash[..plan.hash.len().min(16)])
}

/// A task's journal key: its chunk and its style's name (a task's `style` is a place in its
/// REPHRASE's list; names are unique across the plan's REPHRASEs, which share the journal).
fn task_key(styles: &[String], t: &StyleTask) -> String {
    let style = styles.get(t.style as usize).map_or("", String::as_str);
    format!("{}\u{0}{}\u{0}{}\u{0}{style}", t.chunk.source_file, t.chunk.doc_id, t.chunk.chunk_index)
}

/// Attaches fan-out → rephrase (with `backend`, as `spec` says) → gates (the plan's, with the
/// embedder in `ctx`) to `chunks` for the styles `spec` writes; returns the accepted rows and
/// the gate rejects.
pub fn attach<'s>(
    chunks: StreamVec<'s, u64, Chunk>,
    spec: &RephraseSpec,
    plan: &Plan,
    ctx: &StageContext,
    backend: &SharedBackend,
    journal: Option<Journal>,
) -> (StreamVec<'s, u64, Synthetic>, StreamVec<'s, u64, Reject>) {
    let styles = plan.styles_of(spec);
    let cfg = spec.config(&plan.gates, &styles);
    let backend_cfg = spec.backend();
    let lineage = backend.borrow().lineage();
    let gates = GateStageConfig {
        gates: plan.gates.clone(),
        styles: styles.clone(),
        model: lineage.model,
        weights_hash: lineage.weights_hash,
        generation: serde_json::to_string(&backend_cfg.generation).unwrap_or_default(),
    };
    let names: Rc<[String]> = styles.iter().map(|s| s.name.clone()).collect();
    let tasks = chunks.fan_out(&FanoutConfig { styles, seed: spec.seed }, ctx);
    let rephrased = match journal {
        Some(j) => {
            let keys = names.clone();
            let (reused, fresh) = tasks.answered_by(j.memo, move |t| task_key(&keys, t), &ctx.metrics);
            let segment = |t: &u64| t >> crate::job::segment::SEGMENT_SHIFT;
            let generated = fresh.rephrase(&cfg, backend, ctx).journal(
                j.target,
                &backend_cfg.journal,
                move |x: &Rephrased| task_key(&names, &x.task),
                segment,
            );
            generated.concat(reused)
        }
        None => tasks.rephrase(&cfg, backend, ctx),
    };
    rephrased.gate(&gates, ctx)
}

/// Rephrases `chunks` in a dataflow of their own on `worker`: fan-out → rephrase (each REPHRASE
/// with its backend of `backends`) → gates (with `ctx`'s tokenizer and embedder), as a run does but without journal,
/// checkpoints or sinks. Returns the accepted rows and the gate rejects, each ordered by chunk
/// (as given) and style (as the plan lists them). The caller keeps `backends` and `ctx` for the
/// next batch: a model is loaded once and answers batch after batch.
pub fn rephrase_batch(
    worker: &mut timely::worker::Worker,
    plan: &Plan,
    ctx: &StageContext,
    backends: &[SharedBackend],
    chunks: Vec<Chunk>,
) -> anyhow::Result<(Vec<Synthetic>, Vec<Reject>)> {
    let order: HashMap<(String, u32), usize> =
        chunks.iter().enumerate().map(|(i, c)| ((c.doc_id.clone(), c.chunk_index), i)).collect();
    if order.len() < chunks.len() {
        anyhow::bail!("two chunks have the same doc_id and chunk_index: a row's lineage must name one chunk");
    }
    // Requests left in the backend are an earlier batch's that failed for good: their answers
    // would have no task here.
    anyhow::ensure!(
        backends.iter().all(|b| b.borrow().outstanding() == 0),
        "the model failed on an earlier batch and holds its requests: load it again"
    );
    anyhow::ensure!(!plan.rephrase.is_empty(), "the plan does not rephrase (it has no REPHRASE)");
    anyhow::ensure!(backends.len() == plan.rephrase.len(), "one backend per REPHRASE of the plan");
    let ctx = StageContext { errors: Default::default(), ..ctx.clone() };
    let rows = Rc::new(RefCell::new((Vec::new(), Vec::new())));
    let (accepted, rejected) = (rows.clone(), rows.clone());
    worker.dataflow::<u64, _, _>(|scope| {
        let chunks = chunks.to_stream(scope).container::<Vec<Chunk>>();
        for ((spec, _), backend) in plan.rephrase.iter().zip(backends) {
            let (accepted, rejected) = (accepted.clone(), rejected.clone());
            let (synthetic, rejects) = attach(chunks.clone(), spec, plan, &ctx, backend, None);
            synthetic.inspect(move |s| accepted.borrow_mut().0.push(s.clone()));
            rejects.inspect(move |r| rejected.borrow_mut().1.push(r.clone()));
        }
    });
    while worker.step() {}
    if let Some(e) = ctx.first_error() {
        anyhow::bail!(e);
    }
    let (mut synthetic, mut rejects) = rows.take();
    let style = |name: &str| plan.styles.iter().position(|s| s.name == name);
    let key = |doc: &str, chunk: u32, name: &str| (order.get(&(doc.to_string(), chunk)).copied(), style(name));
    synthetic.sort_by_key(|s| key(&s.doc_id, s.chunk_index, &s.style));
    rejects.sort_by_key(|r| key(&r.doc_id, r.chunk_index, &r.style));
    Ok((synthetic, rejects))
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_zero_shares_the_cores_among_the_workers() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(super::auto_threads(1), cores);
        assert_eq!(super::auto_threads(0), cores, "no workers counts as one");
        assert_eq!(super::auto_threads(2), (cores / 2).max(1));
        assert_eq!(super::auto_threads(cores * 3), 1, "at least one thread each");
    }
}
