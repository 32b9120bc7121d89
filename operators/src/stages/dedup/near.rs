//! **Near-duplicate dedup** stage: documents in, one document per near-duplicate cluster out (plus
//! a count of the others).
//!
//! Each document gets a MinHash signature of `bands × rows` values over its word `ngram`s
//! (lowercased), computed with one 64-bit hash per shingle and `bands × rows` universal hash
//! functions. Each band is hashed to a bucket key. Two methods decide, both globally (across
//! workers and processes):
//! - `cluster` (the default): documents sharing a bucket are linked, clusters are the connected
//!   components, kept up to date incrementally on differential dataflow, and the first document
//!   of each cluster is kept ([`crate::stages::dedup::components`]);
//! - `band`: [`keep_unseen`] drops a document one of whose buckets an earlier document already
//!   filled. Cheaper (the state is the set of bucket keys, `bands × 8` bytes per document) but a
//!   document linked to an earlier one only through a document of its own batch is kept.
//!
//! Documents with Jaccard similarity `s` share at least one band with probability
//! `1 - (1 - s^rows)^bands`: with 14 × 8 the threshold (50% chance) is about s = 0.69.

use std::collections::HashSet;
use std::hash::Hash;

use differential_dataflow::lattice::Lattice;
use serde::de::DeserializeOwned;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::operators::Inspect;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::record::Document;
use crate::stages::context::StageContext;
use crate::stages::dedup::components::keep_first_of_cluster;
use crate::stages::dedup::owners::keep_unseen;

/// Settings of near-duplicate dedup (`NEARDUP WITH (...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NearDupConfig {
    /// Words per shingle.
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    pub seed: u64,
    pub method: NearDupMethod,
}

/// How near duplicates are decided (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NearDupMethod {
    /// Connected components on differential dataflow; the first document per cluster is kept.
    #[default]
    Cluster,
    /// A document is dropped when one of its bands was seen before.
    Band,
}

impl Default for NearDupConfig {
    fn default() -> Self {
        NearDupConfig { ngram: 5, bands: 14, rows: 8, seed: 0, method: NearDupMethod::Cluster }
    }
}

impl NearDupConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.ngram == 0 || self.bands == 0 || self.rows == 0 {
            return Err("ngram, bands and rows must be > 0".into());
        }
        Ok(())
    }

    /// Jaccard similarity at which two documents share a band with probability 1/2.
    pub fn threshold(&self) -> f64 {
        (1.0 - 0.5f64.powf(1.0 / self.bands as f64)).powf(1.0 / self.rows as f64)
    }
}

/// MinHash signatures with a fixed family of hash functions.
#[derive(Clone, Debug)]
pub struct MinHasher {
    cfg: NearDupConfig,
    coef: Vec<(u64, u64)>,
}

/// 2^61 - 1, a Mersenne prime: the universal hashes are `(a·x + b) mod P`.
const P: u64 = (1 << 61) - 1;

fn mul_mod(a: u64, b: u64) -> u64 {
    let r = (a as u128) * (b as u128);
    let lo = (r as u64) & P;
    let hi = (r >> 61) as u64;
    let s = lo + hi;
    if s >= P { s - P } else { s }
}

impl MinHasher {
    pub fn new(cfg: &NearDupConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6d69_6e68_6173_6821);
        let coef = (0..cfg.bands * cfg.rows).map(|_| (rng.random_range(1..P), rng.random_range(0..P))).collect();
        MinHasher { cfg: cfg.clone(), coef }
    }

    /// The signature of `text`: `bands × rows` minima.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let words: Vec<String> =
            text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        let n = self.cfg.ngram.min(words.len()).max(1);
        let mut sig = vec![u64::MAX; self.coef.len()];
        let mut seen = HashSet::new();
        for gram in words.windows(n).map(|w| w.join(" ")).chain((words.is_empty()).then(String::new)) {
            let x = xxh3_64(gram.as_bytes()) & P;
            if !seen.insert(x) {
                continue;
            }
            for (s, &(a, b)) in sig.iter_mut().zip(&self.coef) {
                let h = (mul_mod(a, x) + b) % P;
                *s = (*s).min(h);
            }
        }
        sig
    }

    /// One bucket key per band (the band's index is part of the key).
    pub fn bands(&self, text: &str) -> Vec<u64> {
        let sig = self.signature(text);
        sig.chunks(self.cfg.rows)
            .enumerate()
            .map(|(i, band)| {
                let bytes: Vec<u8> = band.iter().flat_map(|v| v.to_le_bytes()).collect();
                xxh3_64_with_seed(&bytes, i as u64)
            })
            .collect()
    }
}

/// Estimated Jaccard similarity of two signatures (share of equal values).
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// Extension trait: drop near duplicates.
pub trait NearDedup<'scope, T: Timestamp> {
    /// Keeps one document per near-duplicate cluster. Its state (band keys, or the documents of
    /// the clusters) is registered in `ctx.states` (as `neardup`) for checkpoints. Counts
    /// `neardup.dropped`.
    fn near_dedup(self, config: &NearDupConfig, ctx: &StageContext) -> StreamVec<'scope, T, Document>;
}

/// What a timestamp must offer for near-dup clusters (its values are labels and checkpoint data).
pub trait NearDupTime: Timestamp + TotalOrder + Lattice + Hash + Serialize + DeserializeOwned {}
impl<T: Timestamp + TotalOrder + Lattice + Hash + Serialize + DeserializeOwned> NearDupTime for T {}

impl<'scope, T: NearDupTime> NearDedup<'scope, T> for StreamVec<'scope, T, Document> {
    fn near_dedup(self, config: &NearDupConfig, ctx: &StageContext) -> StreamVec<'scope, T, Document> {
        let hasher = MinHasher::new(config);
        let states = ctx.states.as_ref();
        let (kept, dropped) = match config.method {
            NearDupMethod::Cluster => keep_first_of_cluster(self, states, move |d: &Document| hasher.bands(&d.text)),
            // A band key both chooses its owner and is what the owner remembers.
            NearDupMethod::Band => keep_unseen(self, "NearDup", 0, states, move |d: &Document| {
                hasher.bands(&d.text).into_iter().map(|b| (b, b)).collect()
            }),
        };
        let m = ctx.metrics.clone();
        dropped.inspect(move |_| m.add("neardup.dropped", 1));
        kept
    }
}

/// Estimated Jaccard similarity of two texts' word n-grams.
pub fn estimate(a: &str, b: &str, cfg: &NearDupConfig) -> f64 {
    let h = MinHasher::new(cfg);
    similarity(&h.signature(a), &h.signature(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jaccard(a: &str, b: &str, n: usize) -> f64 {
        let grams = |t: &str| -> HashSet<String> {
            let w: Vec<String> =
                t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
            w.windows(n).map(|x| x.join(" ")).collect()
        };
        let (x, y) = (grams(a), grams(b));
        x.intersection(&y).count() as f64 / x.union(&y).count() as f64
    }

    #[test]
    fn minhash_estimates_jaccard_and_bands_follow_it() {
        let cfg = NearDupConfig { bands: 32, rows: 8, ..Default::default() };
        let base: String = (0..400).map(|i| format!("w{} ", (i * 7919) % 1000)).collect();
        let edited: String =
            base.split(' ').enumerate().map(|(i, w)| if i % 25 == 0 { "x" } else { w }).collect::<Vec<_>>().join(" ");
        let truth = jaccard(&base, &edited, 5);
        let est = estimate(&base, &edited, &cfg);
        assert!((est - truth).abs() < 0.1, "estimate {est} vs {truth}");
        let h = MinHasher::new(&NearDupConfig::default());
        let shared = h.bands(&base).iter().zip(h.bands(&edited)).filter(|(a, b)| **a == *b).count();
        assert!(shared > 0, "a 4% edit shares a band");
        let other: String = (0..400).map(|i| format!("v{} ", (i * 31) % 997)).collect();
        assert!(h.bands(&base).iter().zip(h.bands(&other)).all(|(a, b)| *a != b), "unrelated texts share none");
        assert!((NearDupConfig::default().threshold() - 0.685).abs() < 0.005);
        assert_eq!(h.signature("Same TEXT, same words."), h.signature("same text same words"));
    }
}
