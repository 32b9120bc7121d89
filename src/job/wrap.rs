//! The WRAP part of a run: chunks → fan-out → rephrase → gates, with one model session (and one
//! embedder session) per worker, and the per-style figures that go into the manifest.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::{Concat, Inspect};
use tokenizers::Tokenizer;
use wrapflow_operators::engine::{Decoder, Embedder, SessionConfig};
use wrapflow_operators::io::journal::{JournalTarget, Journaled, Memo};
use wrapflow_operators::sql::heuristics::flesch_kincaid_grade;
use wrapflow_operators::stages::fanout::StyleTask;
use wrapflow_operators::stages::fanout::{FanOut, FanoutConfig};
use wrapflow_operators::stages::gates::{Gate, GateContext};
use wrapflow_operators::stages::rephrase::{Rephrase, RephraseConfig, Rephrased};
use wrapflow_operators::{Chunk, Reject, ShardInfo, Synthetic};

use crate::job::progress::Progress;
use crate::plan::Plan;
use crate::report::fidelity::StyleAcc;
use crate::report::manifest::{Output, RephraseOut};

/// A worker's model sessions.
pub struct Models {
    pub decoder: Decoder,
    pub embedder: Option<Embedder>,
}

/// Loads the plan's model and embedder for one worker (`None` if the plan does not rephrase).
pub fn load_models(plan: &Plan) -> anyhow::Result<Option<Models>> {
    let Some((spec, _)) = &plan.rephrase else { return Ok(None) };
    let cfg = spec.config(&plan.gates);
    let decoder = Decoder::load(Path::new(&cfg.model), &cfg.session)
        .with_context(|| format!("loading the rephrase model {}", cfg.model))?;
    let embedder = match plan.gates.embedder.as_str() {
        "" => None,
        dir => Some(
            Embedder::load(Path::new(dir), &SessionConfig { intra_threads: 1, ..cfg.session.clone() })
                .with_context(|| format!("loading the embedder {dir}"))?,
        ),
    };
    Ok(Some(Models { decoder, embedder }))
}

/// What one worker's WRAP stages did.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WrapReport {
    pub styles: BTreeMap<String, StyleAcc>,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub real_fk_sum: f64,
    pub real_chunks: u64,
    pub shards: Vec<ShardInfo>,
    pub weights_hash: String,
    /// Tasks out of the fan-out: each becomes an accepted row or a gate reject.
    pub fanout_tasks: u64,
    pub retries: u64,
    pub max_queued: u64,
    /// Rephrasings taken from the journal of a job that died, not generated again.
    #[serde(default)]
    pub journal_reused: u64,
}

/// A worker's journal of rephrasings: where it writes, and what an earlier attempt at the
/// current segment left (see [`wrapflow_operators::io::journal`]).
pub struct Journal {
    pub target: JournalTarget,
    pub memo: Rc<RefCell<HashMap<String, Rephrased>>>,
}

/// The journal directory under the output: per plan, so that entries of another plan (another
/// model, prompt or seed) are never taken for this one's.
pub fn journal_dir(plan: &Plan) -> String {
    format!("_wrapflow/journal/{}", &plan.hash[..plan.hash.len().min(16)])
}

fn task_key(t: &StyleTask) -> String {
    format!("{}\u{0}{}\u{0}{}\u{0}{}", t.chunk.source_file, t.chunk.doc_id, t.chunk.chunk_index, t.style)
}

/// The model's name for lineage: its directory's name.
fn model_id(cfg: &RephraseConfig) -> String {
    Path::new(&cfg.model).file_name().map_or(cfg.model.clone(), |f| f.to_string_lossy().into_owned())
}

/// Attaches fan-out → rephrase → gates to `chunks`; returns the accepted rows and the gate
/// rejects.
pub fn attach<'s>(
    chunks: StreamVec<'s, u64, Chunk>,
    models: Models,
    plan: &Plan,
    tokenizer: Arc<Tokenizer>,
    report: Rc<RefCell<WrapReport>>,
    progress: Arc<Progress>,
    journal: Option<Journal>,
) -> (StreamVec<'s, u64, Synthetic>, StreamVec<'s, u64, Reject>) {
    let (spec, _) = plan.rephrase.as_ref().expect("attach is called for plans that rephrase");
    let cfg = spec.config(&plan.gates);
    let styles = Arc::new(plan.styles.clone());
    let ctx = Arc::new(GateContext {
        config: plan.gates.clone(),
        styles: styles.clone(),
        tokenizer,
        model: model_id(&cfg),
        weights_hash: models.decoder.weights_hash.clone(),
        generation: serde_json::to_string(&cfg.generation).unwrap_or_default(),
    });
    report.borrow_mut().weights_hash = models.decoder.weights_hash.clone();
    let r = report.clone();
    let chunks = chunks.inspect(move |c| {
        let mut r = r.borrow_mut();
        r.real_fk_sum += flesch_kincaid_grade(&c.text);
        r.real_chunks += 1;
    });
    let r = report.clone();
    let tasks = chunks
        .fan_out(&FanoutConfig { styles: plan.styles.clone(), seed: spec.seed })
        .inspect(move |_| r.borrow_mut().fanout_tasks += 1);
    // One embedder session per worker: retries consult the meaning gate, then the gate stage.
    let embedder = models.embedder.map(|e| std::rc::Rc::new(std::cell::RefCell::new(e)));
    let rephrased = match journal {
        Some(j) => {
            let (reused, fresh) = tasks.answered_by(j.memo, task_key);
            let r = report.clone();
            let reused = reused.inspect(move |_| r.borrow_mut().journal_reused += 1);
            let segment = |t: &u64| t >> crate::job::segment::SEGMENT_SHIFT;
            let generated = fresh.rephrase_with(models.decoder, styles.clone(), &cfg, embedder.clone()).journal(
                j.target,
                &spec.journal(),
                |x: &Rephrased| task_key(&x.task),
                segment,
            );
            generated.concat(reused)
        }
        None => tasks.rephrase_with(models.decoder, styles.clone(), &cfg, embedder.clone()),
    };
    let r = report.clone();
    let rephrased = rephrased.inspect(move |x| {
        let mut r = r.borrow_mut();
        r.prompt_tokens += x.prompt_tokens as u64;
        r.generated_tokens += x.spent_tokens as u64;
        r.retries += x.attempts.saturating_sub(1) as u64;
        r.max_queued = r.max_queued.max(x.queued as u64);
        progress.rephrased.fetch_add(1, Ordering::Relaxed);
        progress.generated_tokens.fetch_add(x.spent_tokens as u64, Ordering::Relaxed);
    });
    let (good, bad) = rephrased.gate(ctx, embedder);
    let r = report.clone();
    let good = good.inspect(move |s| r.borrow_mut().styles.entry(s.style.clone()).or_default().accepted(s));
    let bad = bad.inspect(move |x| report.borrow_mut().styles.entry(x.style.clone()).or_default().rejected(x));
    (good, bad)
}

/// Merges the workers' reports into the manifest's section.
pub fn merge(plan: &Plan, reports: Vec<WrapReport>, wall_s: f64) -> anyhow::Result<Option<RephraseOut>> {
    let Some((spec, _)) = plan.rephrase.as_ref() else { return Ok(None) };
    let cfg = spec.config(&plan.gates);
    let mut styles: BTreeMap<String, StyleAcc> = BTreeMap::new();
    let mut out = RephraseOut {
        model: cfg.model.clone(),
        embedder: (!plan.gates.embedder.is_empty()).then(|| plan.gates.embedder.clone()),
        generation: serde_json::to_value(&cfg.generation).unwrap_or_default(),
        style_order: plan.styles.iter().map(|s| s.name.clone()).collect(),
        ..Default::default()
    };
    let (mut fk, mut n) = (0.0, 0);
    let mut shards = Vec::new();
    for r in &reports {
        for (k, v) in &r.styles {
            styles.entry(k.clone()).or_default().merge(v);
        }
        out.prompt_tokens += r.prompt_tokens;
        out.generated_tokens += r.generated_tokens;
        out.retries += r.retries;
        out.journal_reused += r.journal_reused;
        out.max_queued_per_worker = out.max_queued_per_worker.max(r.max_queued);
        fk += r.real_fk_sum;
        n += r.real_chunks;
        shards.extend(r.shards.iter().cloned());
        out.weights_hash.clone_from(&r.weights_hash);
    }
    shards.sort_by(|a, b| a.path.cmp(&b.path));
    out.styles = styles.iter().map(|(k, v)| (k.clone(), v.finish())).collect();
    out.tasks = out.styles.values().map(|s| s.tasks).sum();
    out.accepted = out.styles.values().map(|s| s.accepted).sum();
    out.rejected = out.styles.values().map(|s| s.rejected).sum();
    let fanout: u64 = reports.iter().map(|r| r.fanout_tasks).sum();
    anyhow::ensure!(
        fanout == out.accepted + out.rejected,
        "rephrase counts do not reconcile: {fanout} tasks, {} accepted + {} rejected",
        out.accepted,
        out.rejected
    );
    out.real_fk_grade = (n > 0).then(|| fk / n as f64);
    out.gen_tok_s = out.generated_tokens as f64 / wall_s.max(1e-9);
    out.synthetic = Output {
        format: plan.sink.0.config.format.extension().into(),
        rows: shards.iter().map(|s| s.rows).sum(),
        bytes: shards.iter().map(|s| s.bytes).sum(),
        shards,
    };
    Ok(Some(out))
}
