//! Metrics that stages count into: named counters, maxima, sums and histograms.
//!
//! Each stage is given a [`Metrics`] handle in its stage context and
//! counts what it does under names that start with its own (`chunk.chunks`, `gates.easy.accepted`),
//! so that nothing has to watch a stage from outside. A job snapshots the set with each checkpoint
//! ([`MetricSet`] is serde), sums the workers' sets for its report, and may read it live from
//! another thread for progress.
//!
//! ```
//! use wrapflow_operators::state::metrics::Metrics;
//!
//! let m = Metrics::default();
//! m.add("chunk.chunks", 2);
//! m.max("chunk.max_tokens", 300);
//! m.observe("chunk.length", 120.0, 500.0, 10);
//! let mut total = m.snapshot();
//! total.merge(&m.snapshot());
//! assert_eq!(total.counter("chunk.chunks"), 4);
//! assert_eq!(total.maximum("chunk.max_tokens"), 300);
//! assert_eq!(total.histogram("chunk.length").unwrap().counts[2], 2);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// A histogram of values in `[0, hi]` over equal bins; values above `hi` fall in the last bin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub hi: f64,
    pub counts: Vec<u64>,
    pub n: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(hi: f64, bins: usize) -> Self {
        Histogram { hi, counts: vec![0; bins.max(1)], n: 0, sum: 0.0 }
    }

    /// Adds a value; a value that is not finite is not counted.
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let bins = self.counts.len();
        self.n += 1;
        self.sum += v;
        self.counts[((v.clamp(0.0, self.hi) * bins as f64 / self.hi) as usize).min(bins - 1)] += 1;
    }

    pub fn merge(&mut self, o: &Histogram) {
        if self.counts.is_empty() {
            *self = o.clone();
            return;
        }
        self.n += o.n;
        self.sum += o.sum;
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The lower edge of the bin that holds quantile `q`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let want = (q * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(i as f64 * self.hi / self.counts.len() as f64);
            }
        }
        Some(self.hi)
    }
}

/// One worker's metrics, or the sum of several.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricSet {
    pub counters: BTreeMap<String, u64>,
    pub maxima: BTreeMap<String, u64>,
    pub sums: BTreeMap<String, f64>,
    pub histograms: BTreeMap<String, Histogram>,
    /// Values as they stand now (a queue's depth): set, not added; workers' gauges add up.
    pub gauges: BTreeMap<String, u64>,
}

impl MetricSet {
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    pub fn maximum(&self, name: &str) -> u64 {
        self.maxima.get(name).copied().unwrap_or(0)
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.sums.get(name).copied().unwrap_or(0.0)
    }

    pub fn histogram(&self, name: &str) -> Option<&Histogram> {
        self.histograms.get(name)
    }

    pub fn gauge(&self, name: &str) -> u64 {
        self.gauges.get(name).copied().unwrap_or(0)
    }

    /// Counters whose names start with `prefix`, by the rest of their name.
    pub fn counters_under(&self, prefix: &str) -> BTreeMap<String, u64> {
        self.counters
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k[prefix.len()..].to_string(), *v))
            .collect()
    }

    /// Adds another set: counters, sums and histograms add, maxima take the larger.
    pub fn merge(&mut self, o: &MetricSet) {
        for (k, v) in &o.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.maxima {
            let m = self.maxima.entry(k.clone()).or_default();
            *m = (*m).max(*v);
        }
        for (k, v) in &o.sums {
            *self.sums.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.histograms {
            self.histograms.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.gauges {
            *self.gauges.entry(k.clone()).or_default() += v;
        }
    }
}

/// A handle on a worker's [`MetricSet`]; clones count into the same set. Thread-safe so that a
/// progress display can read it while the worker runs.
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Mutex<MetricSet>>);

impl Metrics {
    fn set(&self) -> MutexGuard<'_, MetricSet> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, name: &str, n: u64) {
        let mut s = self.set();
        match s.counters.get_mut(name) {
            Some(c) => *c += n,
            None => {
                s.counters.insert(name.to_string(), n);
            }
        }
    }

    pub fn max(&self, name: &str, v: u64) {
        let mut s = self.set();
        let m = s.maxima.entry(name.to_string()).or_default();
        *m = (*m).max(v);
    }

    pub fn sum(&self, name: &str, v: f64) {
        *self.set().sums.entry(name.to_string()).or_default() += v;
    }

    /// Adds `v` to the histogram `name` (created with `bins` bins over `[0, hi]` on first use).
    pub fn observe(&self, name: &str, v: f64, hi: f64, bins: usize) {
        self.set().histograms.entry(name.to_string()).or_insert_with(|| Histogram::new(hi, bins)).add(v);
    }

    /// Sets the gauge `name` to `v`.
    pub fn gauge(&self, name: &str, v: u64) {
        self.set().gauges.insert(name.to_string(), v);
    }

    /// Applies several updates under one lock (a stage's counts for one record).
    pub fn update(&self, f: impl FnOnce(&mut MetricSet)) {
        f(&mut self.set())
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.set().counter(name)
    }

    pub fn snapshot(&self) -> MetricSet {
        self.set().clone()
    }

    /// Replaces the set (a job resuming from a checkpoint continues its counts).
    pub fn restore(&self, set: MetricSet) {
        *self.set() = set;
    }
}
