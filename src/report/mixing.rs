//! The mixtures of a run, for the manifest and for people: what each mixture wrote, the achieved
//! shares next to the targets, and the checks that every offered row is accounted for.

use std::collections::BTreeMap;

use anyhow::ensure;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::{Deserialize, Serialize};
use wrapflow_operators::{MixEvent, MixShard, MixSummary};

/// One mixture in the manifest: its settings, outcome and shards (in training order).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MixOut {
    #[serde(flatten)]
    pub summary: MixSummary,
    pub shards: Vec<MixShard>,
}

impl MixOut {
    /// Largest distance between a shard's real share and its target (shards of at least
    /// `min_tokens` tokens), in share points.
    pub fn worst_shard_error(&self, min_tokens: u64) -> Option<f64> {
        self.shards
            .iter()
            .filter(|s| s.tokens >= min_tokens)
            .map(|s| (s.real_share - s.target_real_share).abs())
            .max_by(f64::total_cmp)
    }

    /// Real share of all written tokens and its target.
    pub fn real_share(&self) -> (f64, f64) {
        let s = &self.summary;
        let real = || s.leaves.iter().enumerate().filter(|(_, l)| l.kind == "real");
        let achieved = real().map(|(i, _)| s.achieved.get(i).copied().unwrap_or(0.0)).sum();
        (achieved, real().map(|(_, l)| l.weight).sum())
    }
}

/// Gathers the mix events of all workers (only worker 0 mixes) and checks the counts.
pub fn merge(events: Vec<MixEvent>) -> anyhow::Result<Vec<MixOut>> {
    let mut shards: BTreeMap<String, Vec<MixShard>> = BTreeMap::new();
    let mut outs = Vec::new();
    for e in events {
        match e {
            MixEvent::Shard(s) => shards.entry(s.mixture.clone()).or_default().push(*s),
            MixEvent::Done(summary) => outs.push(MixOut { summary: *summary, shards: Vec::new() }),
        }
    }
    for o in &mut outs {
        let mut s = shards.remove(&o.summary.name).unwrap_or_default();
        s.sort_by(|a, b| a.path.cmp(&b.path));
        let s_tokens: u64 = s.iter().map(|x| x.tokens).sum();
        let sum = &o.summary;
        ensure!(
            s_tokens == sum.tokens,
            "mixture {}: shards hold {s_tokens} tokens, the mixer wrote {}",
            sum.name,
            sum.tokens
        );
        let offered: u64 = sum.outcome.iter().map(|l| l.offered_rows).sum();
        let excluded: u64 = sum.excluded.values().sum();
        ensure!(
            sum.rows_in == offered + excluded,
            "mixture {}: {} rows in but {offered} offered + {excluded} excluded",
            sum.name,
            sum.rows_in
        );
        for (leaf, l) in sum.leaves.iter().zip(&sum.outcome) {
            ensure!(
                l.offered_rows == l.rows - l.repeated_rows + l.left_out_rows,
                "mixture {}: rows of {}/{}/{} do not reconcile",
                sum.name,
                leaf.kind,
                leaf.style,
                leaf.source
            );
        }
        o.shards = s;
    }
    Ok(outs)
}

/// Target and achieved shares per leaf, with what the shortfall policy did.
pub fn table(m: &MixOut) -> Table {
    let s = &m.summary;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "kind", "style", "source", "target", "achieved", "tokens", "rows", "epochs", "repeated", "left out", "short by",
    ]);
    for (i, (leaf, o)) in s.leaves.iter().zip(&s.outcome).enumerate() {
        t.add_row(vec![
            leaf.kind.clone(),
            leaf.style.clone(),
            leaf.source.clone(),
            format!("{:.2}%", leaf.weight * 100.0),
            format!("{:.2}%", s.achieved.get(i).copied().unwrap_or(0.0) * 100.0),
            o.tokens.to_string(),
            o.rows.to_string(),
            o.epochs.to_string(),
            o.repeated_tokens.to_string(),
            o.left_out_tokens.to_string(),
            s.shortfall_tokens.get(i).copied().unwrap_or(0).to_string(),
        ]);
    }
    t
}

/// A paragraph per mixture: header line and the leaf table.
pub fn text(mixes: &[MixOut]) -> String {
    let mut out = String::new();
    for m in mixes {
        let s = &m.summary;
        let (real, target) = m.real_share();
        out += &format!(
            "mixture {} ({:?}, shortfall {:?}, seed {}): {} tokens in {} shards, real share {:.2}% (target {:.2}%){}\n",
            s.name,
            s.config.format,
            s.config.shortfall,
            s.config.seed,
            s.tokens,
            m.shards.len(),
            real * 100.0,
            target * 100.0,
            match m.worst_shard_error(1) {
                Some(e) => format!(", worst shard off by {:.2} points", e * 100.0),
                None => String::new(),
            }
        );
        if s.stages.len() > 1 {
            let st: Vec<String> = s.stages.iter().zip(&s.tokens_by_stage).map(|(n, t)| format!("{n} {t}")).collect();
            out += &format!("  stages in training order: {}\n", st.join(" → "));
        }
        if !s.excluded.is_empty() {
            let ex: Vec<String> = s.excluded.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out += &format!("  rows left out before mixing: {}\n", ex.join("; "));
        }
        out += &format!("{}\n", table(m));
    }
    out
}
