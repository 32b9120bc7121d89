//! **Near-duplicate dedup** stage: documents in, the documents that share no MinHash band with an
//! earlier document out (plus a count of the others).
//!
//! Each document gets a MinHash signature of `bands × rows` values over its word `ngram`s
//! (lowercased), computed with one 64-bit hash per shingle and `bands × rows` universal hash
//! functions. Each band is hashed to a bucket key; bucket keys are exchanged to their owner
//! worker, which keeps the set of buckets seen so far. Processing each timestamp once it is
//! complete, in order of a document hash, a document whose band lands in an existing bucket is a
//! near duplicate of an earlier one; the verdicts go back to the worker holding the document.
//! So the decision is global (across workers and processes) and the same for any worker count,
//! and the state is the set of bucket keys: `bands × 8` bytes per document.
//!
//! Documents with Jaccard similarity `s` share at least one band with probability
//! `1 - (1 - s^rows)^bands`: with 14 × 8 the threshold (50% chance) is about s = 0.69.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::record::Document;

/// Settings of near-duplicate dedup (`NEARDUP WITH (...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NearDupConfig {
    /// Words per shingle.
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    pub seed: u64,
}

impl Default for NearDupConfig {
    fn default() -> Self {
        NearDupConfig { ngram: 5, bands: 14, rows: 8, seed: 0 }
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

fn doc_hash(d: &Document) -> u64 {
    xxh3_64_with_seed(format!("{}\0{}\0{}", d.id, d.source_file, d.source_line).as_bytes(), 0x6e64)
}

/// A band of a document on its way to the bucket's owner.
type BandMsg = (u64, u64, u64); // (bucket, document hash, home worker)
/// The owner's verdict for one band, back to the document's home worker.
type Vote = (u64, u64, bool); // (home worker, document hash, duplicate)

/// Extension trait: drop near duplicates.
pub trait NearDedup<'scope, T: Timestamp> {
    /// Returns the documents kept, and one `()` per near duplicate dropped (to count).
    fn near_dedup(self, cfg: &NearDupConfig) -> (StreamVec<'scope, T, Document>, StreamVec<'scope, T, ()>);
}

impl<'scope, T: Timestamp + TotalOrder + Hash> NearDedup<'scope, T> for StreamVec<'scope, T, Document> {
    fn near_dedup(self, cfg: &NearDupConfig) -> (StreamVec<'scope, T, Document>, StreamVec<'scope, T, ()>) {
        let hasher = MinHasher::new(cfg);
        let worker = self.scope().index() as u64;
        let bands = cfg.bands;
        // 1. At home: the document's band keys go to their owners; the document waits.
        let docs = self.clone();
        let msgs = self
            .unary(Pipeline, "NearDupBands", move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        let mut session = output.session(&cap);
                        for d in data.flat_map(|b| b.iter()) {
                            let h = doc_hash(d);
                            for b in hasher.bands(&d.text) {
                                session.give((b, h, worker));
                            }
                        }
                    });
                }
            })
            .container::<Vec<BandMsg>>();
        // 2. Owners: per complete timestamp, in document-hash order, a band in a known bucket
        // is a duplicate vote.
        let mut buckets: HashSet<u64> = HashSet::new();
        let mut stash: BTreeMap<T, Vec<BandMsg>> = BTreeMap::new();
        let votes = msgs
            .unary_frontier(Exchange::new(|m: &BandMsg| m.0), "NearDupBuckets", move |_, _| {
                let mut caps = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        caps.entry(cap.time().clone()).or_insert_with(|| cap.clone());
                        let e = stash.entry(cap.time().clone()).or_default();
                        data.for_each(|b| e.append(b));
                    });
                    let ready: Vec<T> = stash.keys().filter(|t| !frontier.less_equal(t)).cloned().collect();
                    for t in ready {
                        let mut msgs = stash.remove(&t).unwrap_or_default();
                        msgs.sort_unstable_by_key(|m| (m.1, m.0));
                        let cap = caps.remove(&t).expect("a capability per stashed time");
                        let mut session = output.session(&cap);
                        for (bucket, doc, home) in msgs {
                            session.give((home, doc, !buckets.insert(bucket)));
                        }
                    }
                }
            })
            .container::<Vec<Vote>>();
        // 3. Home: a document is kept when none of its bands found an earlier document.
        let mut pending: BTreeMap<T, HashMap<u64, (usize, bool)>> = BTreeMap::new();
        let mut docs_at: BTreeMap<T, Vec<Document>> = BTreeMap::new();
        let decided =
            docs.binary_frontier(votes, Pipeline, Exchange::new(|v: &Vote| v.0), "NearDupVerdict", move |_, _| {
                let mut caps = BTreeMap::new();
                move |(docs_in, f1), (votes_in, f2), output| {
                    docs_in.for_each_stamp(|cap, data| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        caps.entry(cap.time().clone()).or_insert_with(|| cap.clone());
                        data.for_each(|b| docs_at.entry(cap.time().clone()).or_default().append(b));
                    });
                    votes_in.for_each_stamp(|cap, data| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        let e = pending.entry(cap.time().clone()).or_default();
                        for (_, doc, dup) in data.flat_map(|b| b.drain(..)) {
                            let v = e.entry(doc).or_insert((0, false));
                            v.0 += 1;
                            v.1 |= dup;
                        }
                    });
                    let ready: Vec<T> =
                        docs_at.keys().filter(|t| !f1.less_equal(t) && !f2.less_equal(t)).cloned().collect();
                    for t in ready {
                        let votes = pending.remove(&t).unwrap_or_default();
                        let cap = caps.remove(&t).expect("a capability per stashed time");
                        let mut session = output.session(&cap);
                        for d in docs_at.remove(&t).unwrap_or_default() {
                            let (n, dup) = votes.get(&doc_hash(&d)).copied().unwrap_or((0, false));
                            debug_assert_eq!(n, bands, "every band voted");
                            session.give(if dup { Err(()) } else { Ok(d) });
                        }
                    }
                    // Times with votes but no documents cannot happen (votes follow documents).
                    let stale: Vec<T> =
                        pending.keys().filter(|t| !f1.less_equal(t) && !f2.less_equal(t)).cloned().collect();
                    stale.iter().for_each(|t| {
                        pending.remove(t);
                        caps.remove(t);
                    });
                }
            });
        use timely::dataflow::operators::core::OkErr;
        decided.container::<Vec<Result<Document, ()>>>().ok_err(|r| r)
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
