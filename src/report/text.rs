//! What a run did, for people: the counts table and, for plans that rephrase, the fidelity table
//! per style. `wrapflow run` prints it at the end; `wrapflow report OUTPUT` prints it from the
//! manifest of any finished run, local or in object storage, and writes `report.html` beside it.

use anyhow::Context;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use object_store::{ObjectStoreExt, PutPayload};
use wrapflow_operators::io::store::StoreRegistry;

use crate::report::manifest::Manifest;

/// Reads `OUTPUT/manifest.json`.
pub fn load(output: &str) -> anyhow::Result<Manifest> {
    let registry = StoreRegistry::new();
    let loc = registry.resolve(output, &Default::default())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bytes = rt
        .block_on(async { loc.store.get(&loc.child("manifest.json")).await?.bytes().await })
        .map_err(|e| anyhow::anyhow!("reading {}/manifest.json: {e}", loc.url))?;
    crate::report::manifest::from_json(&bytes)
        .with_context(|| format!("{}/manifest.json is not a valid wrapflow manifest", loc.url))
}

/// Writes `OUTPUT/report.html` ([`crate::report::html::page`]) and returns its URL.
pub fn write_html(output: &str, m: &Manifest) -> anyhow::Result<String> {
    let registry = StoreRegistry::new();
    let loc = registry.resolve(output, &Default::default())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let samples = rt.block_on(crate::report::samples::collect(&loc, m)).unwrap_or_else(|e| {
        tracing::warn!("report.html without samples: {e:#}");
        vec![]
    });
    let page = crate::report::html::page(m, &samples);
    rt.block_on(loc.store.put(&loc.child("report.html"), PutPayload::from(page.into_bytes())))
        .map_err(|e| anyhow::anyhow!("writing {}/report.html: {e}", loc.url))?;
    Ok(format!("{}/report.html", loc.url.trim_end_matches('/')))
}

/// Record counts, tokens, timings.
pub fn summary(m: &Manifest) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["count", "value"]);
    if let Some(j) = &m.job {
        t.add_row(vec!["status".to_string(), format!("{} (checkpoint {})", j.status, j.checkpoint)]);
    }
    let c = &m.counts;
    let mut rows = vec![
        ("read", c.read),
        ("rejected", c.rejected),
        ("filtered", c.filtered),
        ("limited", c.limited),
        ("duplicates", c.duplicates),
        ("near duplicates", c.near_duplicates),
        ("kept", c.kept),
        ("chunks", c.chunks),
        ("chunk tokens", m.tokens.chunks),
        ("shards", m.chunks.shards.len() as u64),
    ];
    if c.skipped_objects > 0 {
        rows.push(("input objects not read (see manifest)", c.skipped_objects));
    }
    if let Some(r) = &m.rephrase {
        rows.extend([
            ("style tasks", r.tasks),
            ("synthetic rows", r.accepted),
            ("gate rejects", r.rejected),
            ("synthetic tokens", r.styles.values().map(|s| s.tokens).sum()),
            ("generated tokens", r.generated_tokens),
        ]);
    }
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v.to_string()]);
    }
    t.add_row(vec!["wall time".into(), format!("{:.2} s", m.timings.wall_s)]);
    t.add_row(vec![
        "throughput".into(),
        format!("{:.0} docs/s, {:.1} MB/s", m.timings.docs_per_s, m.timings.input_mb_per_s),
    ]);
    if let Some(r) = &m.rephrase {
        t.add_row(vec![
            "generation".into(),
            format!(
                "{:.1} generated tok/s, {:.1} accepted tok/s ({} of {} tokens kept)",
                r.gen_tok_s, r.accepted_tok_s, r.accepted_tokens, r.generated_tokens
            ),
        ]);
        if !r.seconds.is_empty() {
            let parts: Vec<String> = r.seconds.iter().map(|(k, v)| format!("{k} {v:.1} s")).collect();
            t.add_row(vec!["rephrase time".into(), parts.join(", ")]);
        }
    }
    t
}

/// The whole report as text.
pub fn text(m: &Manifest) -> String {
    let mut out = format!("{}\n", summary(m));
    if let Some(r) = &m.rephrase {
        let models: Vec<String> =
            r.models.iter().map(|m| format!("{}, weights {}", m.model, short(&m.weights_hash))).collect();
        out += &format!("rephrasings by style ({}):\n", models.join("; "));
        out += &format!("{}\n", crate::report::fidelity::table(&r.styles, &r.style_order, r.real_fk_grade));
    }
    out += &crate::report::mixing::text(&m.mixes);
    out
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(19)]
}
