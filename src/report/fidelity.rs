//! Fidelity of the rephrasings, per style: acceptance, reject reasons, cosine to the source
//! (mean and 10th percentile), number fidelity and readability. Workers accumulate with bounded
//! memory (a cosine histogram, not every value); the run merges them into the manifest, and
//! `wrapflow report` prints them.

use std::collections::BTreeMap;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::{Deserialize, Serialize};
use wrapflow_operators::sql::heuristics::flesch_kincaid_grade;
use wrapflow_operators::{Reject, Synthetic};

/// Histogram bins over cosine [0, 1] (values below 0 land in the first bin).
const BINS: usize = 200;

/// A worker's running totals for one style.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StyleAcc {
    tasks: u64,
    accepted: u64,
    tokens: u64,
    by_reason: BTreeMap<String, u64>,
    /// Cosines of accepted rows, and of every row with an output.
    cos_acc: Cosines,
    cos_all: Cosines,
    fk_sum: f64,
    invented: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cosines {
    n: u64,
    sum: f64,
    hist: Vec<u64>,
}

impl Cosines {
    fn add(&mut self, c: f64) {
        if !c.is_finite() {
            return;
        }
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
        }
        self.n += 1;
        self.sum += c;
        self.hist[((c.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1)] += 1;
    }

    fn merge(&mut self, o: &Cosines) {
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
        }
        self.n += o.n;
        self.sum += o.sum;
        for (a, b) in self.hist.iter_mut().zip(&o.hist) {
            *a += b;
        }
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The lower edge of the bin holding the q-quantile (within 1/BINS).
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let target = (q * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.hist.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(i as f64 / BINS as f64);
            }
        }
        Some(1.0)
    }
}

impl StyleAcc {
    pub fn accepted(&mut self, s: &Synthetic) {
        self.tasks += 1;
        self.accepted += 1;
        self.tokens += s.n_tokens as u64;
        self.cos_acc.add(s.cosine);
        self.cos_all.add(s.cosine);
        self.fk_sum += flesch_kincaid_grade(&s.text);
        self.invented += s.invented_numbers as u64;
    }

    pub fn rejected(&mut self, r: &Reject) {
        self.tasks += 1;
        *self.by_reason.entry(reason_class(&r.reason)).or_insert(0) += 1;
        let cos = serde_json::from_str::<serde_json::Value>(&r.scores)
            .ok()
            .and_then(|v| v["gates"].get("cosine").and_then(serde_json::Value::as_f64));
        if let Some(c) = cos {
            self.cos_all.add(c);
        }
    }

    pub fn merge(&mut self, o: &StyleAcc) {
        self.tasks += o.tasks;
        self.accepted += o.accepted;
        self.tokens += o.tokens;
        for (k, v) in &o.by_reason {
            *self.by_reason.entry(k.clone()).or_insert(0) += v;
        }
        self.cos_acc.merge(&o.cos_acc);
        self.cos_all.merge(&o.cos_all);
        self.fk_sum += o.fk_sum;
        self.invented += o.invented;
    }

    pub fn finish(&self) -> StyleStats {
        StyleStats {
            tasks: self.tasks,
            accepted: self.accepted,
            rejected: self.tasks - self.accepted,
            acceptance: if self.tasks == 0 { 0.0 } else { self.accepted as f64 / self.tasks as f64 },
            tokens: self.tokens,
            by_reason: self.by_reason.clone(),
            mean_cosine: self.cos_acc.mean(),
            p10_cosine: self.cos_acc.quantile(0.1),
            mean_cosine_all: self.cos_all.mean(),
            invented_numbers_accepted: self.invented,
            mean_fk_grade: (self.accepted > 0).then(|| self.fk_sum / self.accepted as f64),
        }
    }
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
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// The per-style table (and the real chunks' readability for comparison).
pub fn table(styles: &BTreeMap<String, StyleStats>, order: &[String], real_fk: Option<f64>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "style",
        "rows in",
        "accepted",
        "rate",
        "mean cos",
        "p10 cos",
        "numbers ok",
        "FK grade",
        "rejected by reason",
    ]);
    let mut names: Vec<&String> = order.iter().filter(|n| styles.contains_key(*n)).collect();
    names.extend(styles.keys().filter(|k| !order.contains(k)));
    for name in names {
        let s = &styles[name];
        let reasons: Vec<String> = s.by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        t.add_row(vec![
            name.clone(),
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
            opt(s.mean_fk_grade, 1),
            reasons.join(", "),
        ]);
    }
    if real_fk.is_some() {
        t.add_row(vec![
            "(real)".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            opt(real_fk, 1),
            "".into(),
        ]);
    }
    t
}

/// The class of a reject reason: its text before the first `:`.
pub fn reason_class(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_string()
}
