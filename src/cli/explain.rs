//! `wrapflow explain` and `wrapflow check`: a plan's stages and DataFusion plan, or only the
//! validation, without reading data.

use crate::cli::PlanArgs;
use crate::job::run;
use crate::operators::stages::dedup::near::NearDupMethod;
use crate::plan::Plan;

/// Validates the plan (statements, parameters, SQL, tokenizer).
pub fn check(a: &PlanArgs) -> anyhow::Result<()> {
    let p = Plan::load(&a.plan, &a.sets)?;
    run::check(&p)?;
    println!("{}: ok", p.file);
    Ok(())
}

/// Prints the plan's stages, its input query and DataFusion's logical plan of it.
pub fn explain(a: &PlanArgs) -> anyhow::Result<()> {
    let p = Plan::load(&a.plan, &a.sets)?;
    print!("{}", explanation(&p)?);
    Ok(())
}

/// What `wrapflow explain` prints (also `Plan.explain()` in Python): the stages, the input query
/// and DataFusion's logical plan of it, secrets redacted. Validates the plan first.
pub fn explanation(p: &Plan) -> anyhow::Result<String> {
    let logical = run::check(p)?;
    let redact = |s: String| crate::plan::secrets::redact(&s).into_owned();
    Ok(format!(
        "Stages:\n{}\nInput query:\n  {}\n\nDataFusion logical plan:\n{}\n",
        redact(stages(p)),
        redact(p.input_query()),
        redact(logical.display_indent().to_string())
    ))
}

fn stages(plan: &Plan) -> String {
    let mut out = String::new();
    let input = match &plan.input.0 {
        crate::plan::InputSpec::Relation(r) => r.clone(),
        crate::plan::InputSpec::Query(q) => format!("({q})"),
    };
    out += &format!("  1. input     {input}  (per-worker DataFusion query)\n");
    match &plan.dedup {
        Some((e, _)) => out += &format!("  2. dedup     exact, global, ON {e}\n"),
        None => out += "  2. dedup     none\n",
    }
    if let Some((n, _)) = &plan.neardup {
        out += &format!(
            "     neardup   MinHash {} bands × {} rows over {}-word shingles (same band at Jaccard ≈ {:.2}), {}, global\n",
            n.bands,
            n.rows,
            n.ngram,
            n.threshold(),
            match n.method {
                NearDupMethod::Cluster => "first document per cluster (differential dataflow)",
                NearDupMethod::Band => "first document per band",
            }
        );
    }
    for (name, options, _) in &plan.documents {
        out += &format!("     stage     {name} {options}\n");
    }
    let c = &plan.chunk.0;
    out += &format!(
        "  3. chunk     max_tokens={} min_fill={} tokenizer={}\n",
        c.max_tokens,
        c.min_fill,
        c.tokenizer.as_deref().unwrap_or("-")
    );
    let mut n = 4;
    if let Some((r, _)) = &plan.rephrase {
        out += &format!("  {n}. fan-out   each chunk × {} styles\n", plan.styles.len());
        for st in &plan.styles {
            let retries = st.retries.map(|k| format!(" retries={k}")).unwrap_or_default();
            out += &format!(
                "       style {} rate={} max_new_tokens={}{retries} template={}\n",
                st.name,
                st.rate,
                st.max_new_tokens,
                st.template_hash()
            );
        }
        let (model, batch) = match r.remote() {
            Some(c) => (
                format!(
                    "{} at {} ({:?} API)",
                    c.model,
                    wrapflow_operators::engine::remote::endpoint_display(&c.endpoint),
                    c.api
                ),
                format!("concurrency={}", c.concurrency),
            ),
            None => (r.model.clone(), format!("batch_size={}", r.batch_size)),
        };
        out += &format!(
            "  {}. rephrase  model={model} {batch} temperature={} no_repeat_ngram={} retries={} seed={}\n",
            n + 1,
            r.temperature,
            r.no_repeat_ngram,
            r.retries,
            r.seed
        );
        out += &format!("  {}. gates     {}\n", n + 2, gates(&plan.gates));
        n += 3;
    }
    let s = &plan.sink.0;
    out += &format!(
        "  {n}. sink      {} format={} shard_rows={} (+ rejects/, manifest.json)\n",
        s.url,
        s.config.format.extension(),
        s.config.shard_rows
    );
    for (name, m, _) in &plan.mixes {
        let stages = if m.stages.is_empty() { String::new() } else { format!(" stages={} by {}", m.stages, m.stage) };
        out += &format!(
            "  {}. mix       {name} → mix/{name}/  ratio={} styles={} shortfall={:?} unit={:?} shard_tokens={} format={:?}{stages}\n",
            n + 1,
            m.ratio,
            if m.styles.is_empty() { "equal" } else { m.styles.as_str() },
            m.shortfall,
            m.unit,
            m.shard_tokens,
            m.format
        );
    }
    out
}

/// The gates' models and bars, as `explain` lists them.
fn gates(g: &wrapflow_operators::stages::gates::GateConfig) -> String {
    let embedder = if g.embedder.is_empty() { "none (no meaning gate)" } else { g.embedder.as_str() };
    let mut out = format!("embedder={embedder} min_cosine={}", g.min_cosine);
    if !g.grounding_model.is_empty() {
        out += &format!(" lm={} max_unsupported_share={}", g.grounding_model, g.max_unsupported_share);
    }
    if !g.entailment.is_empty() {
        out += &format!(" entailment={} min_entailment={}", g.entailment, g.min_entailment);
    }
    out
}
