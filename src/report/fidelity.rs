//! Fidelity of the rephrasings, per style: acceptance, reject reasons, cosine to the source
//! (mean and 10th percentile), number fidelity and readability, from what the gate stage counted
//! (with bounded memory: a cosine histogram, not every value). The run puts them in the
//! manifest, and `wrapflow report` prints them.

use std::collections::BTreeMap;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::{Deserialize, Serialize};
use wrapflow_operators::state::metrics::{Histogram, MetricSet};

/// The figures of one style from what the gate stage counted (`gates.<style>.*`); `None` if
/// the style had no rows.
pub fn style_stats(m: &MetricSet, style: &str) -> Option<StyleStats> {
    let p = format!("gates.{style}.");
    let accepted = m.counter(&format!("{p}accepted"));
    let by_reason = m.counters_under(&format!("{p}rejected."));
    let rejected: u64 = by_reason.values().sum();
    let tasks = accepted + rejected;
    if tasks == 0 {
        return None;
    }
    let empty = Histogram::default();
    let cos = m.histogram(&format!("{p}cosine")).unwrap_or(&empty);
    Some(StyleStats {
        tasks,
        accepted,
        rejected,
        acceptance: accepted as f64 / tasks as f64,
        tokens: m.counter(&format!("{p}tokens")),
        by_reason,
        mean_cosine: cos.mean(),
        p10_cosine: cos.quantile(0.1),
        mean_cosine_all: m.histogram(&format!("{p}cosine_all")).and_then(Histogram::mean),
        invented_numbers_accepted: m.counter(&format!("{p}invented_numbers")),
        mean_fk_grade: (accepted > 0).then(|| m.sum(&format!("{p}fk_grade")) / accepted as f64),
        median_copy_share: m.histogram(&format!("{p}copy_share")).and_then(|h| h.quantile(0.5)),
        p90_copy_share: m.histogram(&format!("{p}copy_share")).and_then(|h| h.quantile(0.9)),
        with_new_entities: m.counter(&format!("{p}with_new_entities")),
        with_unsupported_sentences: m.counter(&format!("{p}with_unsupported")),
        trimmed: m.counter(&format!("{p}trimmed")),
        median_coverage: m.histogram(&format!("{p}coverage")).and_then(|h| h.quantile(0.5)),
        p10_coverage: m.histogram(&format!("{p}coverage")).and_then(|h| h.quantile(0.1)),
        median_entailment: m.histogram(&format!("{p}entailment")).and_then(|h| h.quantile(0.5)),
        p10_entailment: m.histogram(&format!("{p}entailment")).and_then(|h| h.quantile(0.1)),
        p90_lm_unsupported: m.histogram(&format!("{p}lm_unsupported")).and_then(|h| h.quantile(0.9)),
    })
}

/// Figures for one style, as the manifest stores them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StyleStats {
    /// Chunks given this style; `tasks == accepted + rejected`.
    pub tasks: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub acceptance: f64,
    /// Tokens of the accepted rows.
    pub tokens: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Cosine to the source over accepted rows: mean and 10th percentile (to 0.005).
    pub mean_cosine: Option<f64>,
    pub p10_cosine: Option<f64>,
    /// Mean cosine over every row the model answered, accepted or not.
    pub mean_cosine_all: Option<f64>,
    /// Numbers in accepted rows that their source lacks (0 while the number gate is on).
    pub invented_numbers_accepted: u64,
    /// Mean Flesch-Kincaid grade of accepted rows.
    pub mean_fk_grade: Option<f64>,
    /// Share of word 5-grams copied verbatim from the source, over accepted rows: median and
    /// 90th percentile (to 0.005).
    #[serde(default)]
    pub median_copy_share: Option<f64>,
    #[serde(default)]
    pub p90_copy_share: Option<f64>,
    /// Accepted rows with a name the source lacks, with a sentence the source does not support
    /// (both 0 while those gates are on), and that had a trailing unsupported sentence dropped.
    #[serde(default)]
    pub with_new_entities: u64,
    #[serde(default)]
    pub with_unsupported_sentences: u64,
    #[serde(default)]
    pub trimmed: u64,
    /// The least share of a claim's content words in its best source evidence (the grounding
    /// `coverage`), over accepted rows: median and 10th percentile (to 0.005).
    #[serde(default)]
    pub median_coverage: Option<f64>,
    #[serde(default)]
    pub p10_coverage: Option<f64>,
    /// With the `entailment` gate: each accepted row's least entailed claim, median and 10th
    /// percentile; with the `lm` gate: the 90th percentile of a row's largest unsupported share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_entailment: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10_entailment: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_lm_unsupported: Option<f64>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// Columns of the per-style fidelity table (the CLI's and `report.html`'s).
pub const HEADER: [&str; 14] = [
    "style",
    "rows in",
    "accepted",
    "rate",
    "mean cos",
    "p10 cos",
    "numbers ok",
    "names ok",
    "copy p50",
    "cover p10",
    "entail p10",
    "lm p90",
    "FK grade",
    "rejected by reason",
];

/// One style's row of the fidelity table.
pub fn row(name: &str, s: &StyleStats) -> Vec<String> {
    let reasons: Vec<String> = s.by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
    vec![
        name.to_string(),
        s.tasks.to_string(),
        s.accepted.to_string(),
        format!("{:.0}%", 100.0 * s.acceptance),
        opt(s.mean_cosine, 3),
        opt(s.p10_cosine, 3),
        if s.invented_numbers_accepted == 0 {
            "100%".into()
        } else {
            format!("{} invented", s.invented_numbers_accepted)
        },
        if s.with_new_entities == 0 { "100%".into() } else { format!("{} rows new", s.with_new_entities) },
        opt(s.median_copy_share, 2),
        opt(s.p10_coverage, 2),
        opt(s.p10_entailment, 2),
        opt(s.p90_lm_unsupported, 2),
        opt(s.mean_fk_grade, 1),
        reasons.join(", "),
    ]
}

/// The styles of `styles` in the plan's order, then any others.
pub fn ordered<'a>(styles: &'a BTreeMap<String, StyleStats>, order: &'a [String]) -> Vec<&'a String> {
    let mut names: Vec<&String> = order.iter().filter(|n| styles.contains_key(*n)).collect();
    names.extend(styles.keys().filter(|k| !order.contains(k)));
    names
}

/// The per-style table (and the real chunks' readability for comparison).
pub fn table(styles: &BTreeMap<String, StyleStats>, order: &[String], real_fk: Option<f64>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(HEADER.to_vec());
    for name in ordered(styles, order) {
        t.add_row(row(name, &styles[name]));
    }
    if real_fk.is_some() {
        let mut row = vec![String::new(); HEADER.len()];
        row[0] = "(real)".into();
        row[HEADER.len() - 2] = opt(real_fk, 1);
        t.add_row(row);
    }
    t
}
