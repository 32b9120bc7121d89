//! The manifest's `rephrase` section: the models, their decoding settings, tokens, and per-style
//! fidelity, from the workers' reports.

use wrapflow_operators::engine::backend::remote::endpoint_display;
use wrapflow_operators::state::metrics::MetricSet;

use crate::plan::Plan;
use crate::report::fidelity::style_stats;
use crate::report::manifest::{ModelOut, Output, RemoteOut, RephraseOut, StylePrompt};
use crate::report::worker::WorkerReport;

/// The section for a plan that rephrases (`None` otherwise); `metrics` is the sum of the
/// workers' metrics.
pub fn merge(
    plan: &Plan,
    metrics: &MetricSet,
    reports: &[WorkerReport],
    wall_s: f64,
) -> anyhow::Result<Option<RephraseOut>> {
    if plan.rephrase.is_empty() {
        return Ok(None);
    }
    let mut out = RephraseOut {
        models: models(plan, reports),
        embedder: (!plan.gates.embedder.is_empty()).then(|| plan.gates.embedder.clone()),
        style_order: plan.styles.iter().map(|s| s.name.clone()).collect(),
        prompts: plan.styles.iter().map(prompt).collect(),
        gates: serde_json::to_value(&plan.gates).unwrap_or_default(),
        prompt_tokens: metrics.counter("rephrase.prompt_tokens"),
        reused_tokens: metrics.counter("rephrase.reused_tokens"),
        prefilled_tokens: metrics.counter("rephrase.prefilled_tokens"),
        generated_tokens: metrics.counter("rephrase.generated_tokens"),
        retries: metrics.counter("rephrase.retries"),
        resumed_retries: metrics.counter("rephrase.resumed_retries"),
        early_stops: metrics.counter("rephrase.early_stops"),
        journal_reused: metrics.counter("journal.reused"),
        max_queued_per_worker: metrics.maximum("rephrase.max_queued"),
        ..Default::default()
    };
    out.styles = plan.styles.iter().filter_map(|s| Some((s.name.clone(), style_stats(metrics, &s.name)?))).collect();
    out.tasks = out.styles.values().map(|s| s.tasks).sum();
    out.accepted = out.styles.values().map(|s| s.accepted).sum();
    out.rejected = out.styles.values().map(|s| s.rejected).sum();
    let fanout = metrics.counter("fanout.tasks");
    anyhow::ensure!(
        fanout == out.accepted + out.rejected,
        "rephrase counts do not reconcile: {fanout} tasks, {} accepted + {} rejected",
        out.accepted,
        out.rejected
    );
    // Each REPHRASE's fan-out counts every chunk: the mean is the same.
    let real_chunks = metrics.counter("fanout.chunks");
    out.real_fk_grade = (real_chunks > 0).then(|| metrics.sum("fanout.source_fk_grade") / real_chunks as f64);
    out.gen_tok_s = out.generated_tokens as f64 / wall_s.max(1e-9);
    out.accepted_tokens = metrics.counter("gates.accepted_tokens");
    out.accepted_tok_s = out.accepted_tokens as f64 / wall_s.max(1e-9);
    out.seconds = metrics
        .sums
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("time.")?.strip_suffix("_s")?.to_string(), *v)))
        .collect();
    out.remote = plan.rephrase.iter().any(|(spec, _)| spec.remote().is_some()).then(|| {
        let latency = metrics.histogram("remote.latency_s");
        RemoteOut {
            requests: metrics.counter("remote.requests"),
            retries: metrics.counter("remote.retries"),
            latency_p50_s: latency.and_then(|h| h.quantile(0.5)),
            latency_p99_s: latency.and_then(|h| h.quantile(0.99)),
        }
    });
    let mut shards: Vec<_> = reports.iter().flat_map(|r| r.synthetic_shards.iter().cloned()).collect();
    shards.sort_by(|a, b| a.path.cmp(&b.path));
    out.synthetic = Output {
        format: plan.sink.0.config.format.extension().into(),
        rows: shards.iter().map(|s| s.rows).sum(),
        bytes: shards.iter().map(|s| s.bytes).sum(),
        shards,
    };
    Ok(Some(out))
}

/// Each REPHRASE's model, weights (as the workers loaded them) and decoding settings.
fn models(plan: &Plan, reports: &[WorkerReport]) -> Vec<ModelOut> {
    let model = |(i, (spec, _)): (usize, &(crate::plan::stage::RephraseSpec, usize))| {
        let cfg = spec.backend();
        let remote = cfg.remote.as_ref();
        let hash = reports.iter().filter_map(|r| r.weights_hashes.get(i)).find(|h| !h.is_empty());
        ModelOut {
            // On a server: the model's name there.
            model: remote.map_or_else(|| cfg.model.clone(), |r| r.model.clone()),
            weights_hash: hash.cloned().unwrap_or_default(),
            generation: serde_json::to_value(&cfg.generation).unwrap_or_default(),
            styles: plan.styles_of(spec).into_iter().map(|s| s.name).collect(),
            endpoint: remote.map(|r| endpoint_display(&r.endpoint)),
            api: remote.map(|r| format!("{:?}", r.api).to_lowercase()),
        }
    };
    plan.rephrase.iter().enumerate().map(model).collect()
}

fn prompt(s: &wrapflow_operators::stages::styles::Style) -> StylePrompt {
    let shown = |t: &str| crate::plan::secrets::redact(t).into_owned();
    StylePrompt {
        name: s.name.clone(),
        system: shown(&s.system),
        user: shown(&s.user),
        answer_prefix: shown(&s.answer_prefix),
        qa_format: s.qa_format,
    }
}
