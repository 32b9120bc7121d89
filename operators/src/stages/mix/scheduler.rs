//! The mixing core: admits units of rows from weighted *leaves* (kind × style × source) so the
//! admitted tokens follow the target weights on every prefix, and routes them to curriculum
//! stages, closing a shard of a stage whenever it holds `shard_tokens` tokens. No I/O and no
//! timely here: the mix operator feeds it rows in a canonical order and writes what it returns.
//!
//! Admission is a deficit scheduler: the next unit comes from the leaf with the fewest admitted
//! tokens per unit of weight. If that leaf has nothing buffered, admission waits for more input
//! (which is what keeps every shard on target while the input streams). At the end of the input a
//! leaf that runs dry is handled by the [`Shortfall`] policy.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// What happens when a leaf has no more rows at the end of the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shortfall {
    /// Stop the mixture at the shortest leaf: the rest of the others is left out (and counted).
    #[default]
    Stop,
    /// Replay the short leaf's rows (at most `max_epochs` passes in all) while another leaf
    /// still has rows it never gave.
    Repeat,
    /// Go on with the other leaves and report the missing tokens.
    Report,
}

/// What rows travel together: one chunk, or the chunks of one document (in order) within a leaf
/// and stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Chunk,
    Document,
}

/// Where ratios are enforced: over the whole mixture, or inside each curriculum stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Global,
    Stage,
}

/// One leaf of the mixture tree and its share of the tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leaf {
    pub kind: String,
    pub style: String,
    pub source: String,
    /// Target share of the tokens (the leaves' weights sum to 1).
    pub weight: f64,
}

/// Rows admitted together; `tokens` is what the ratio counts.
#[derive(Clone, Debug)]
pub struct UnitRows<R> {
    pub leaf: usize,
    pub stage: usize,
    pub tokens: u64,
    pub rows: Vec<R>,
}

/// A unit as placed in a shard: which pass over its leaf it belongs to (0 for the first).
#[derive(Clone, Debug)]
pub struct Placed<R> {
    pub unit: Arc<UnitRows<R>>,
    pub epoch: u32,
}

/// A closed shard of one stage: `seq` counts the stage's shards from 0.
#[derive(Debug)]
pub struct ClosedShard<R> {
    pub stage: usize,
    pub seq: usize,
    pub units: Vec<Placed<R>>,
}

impl<R> ClosedShard<R> {
    pub fn tokens(&self) -> u64 {
        self.units.iter().map(|u| u.unit.tokens).sum()
    }
}

/// Per-leaf outcome, for the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeafStats {
    /// Tokens and rows offered to the mixture.
    pub offered_tokens: u64,
    pub offered_rows: u64,
    /// Tokens and rows written (repeats included).
    pub tokens: u64,
    pub rows: u64,
    /// Of `tokens` and `rows`, those written again by the `repeat` policy.
    pub repeated_tokens: u64,
    pub repeated_rows: u64,
    /// Passes over the leaf's rows (1 unless repeated).
    pub epochs: u32,
    /// Offered but not written: beyond the shortest leaf (`stop`) or past the repeat cap.
    pub left_out_tokens: u64,
    pub left_out_rows: u64,
    /// Of `left_out_tokens`, those dropped while streaming because the leaf's buffer was full.
    pub overflow_tokens: u64,
}

pub(crate) struct Group<R> {
    /// Leaves that take part (balance `global`: every leaf; `stage`: those seen in the stage).
    pub(crate) member: Vec<bool>,
    pub(crate) queues: Vec<VecDeque<Arc<UnitRows<R>>>>,
    pub(crate) queued_tokens: Vec<u64>,
    pub(crate) admitted: Vec<u64>,
    pub(crate) epochs: Vec<u32>,
    /// Admitted first-pass units, kept for `repeat`.
    pub(crate) history: Vec<Vec<Arc<UnitRows<R>>>>,
    /// Units queued for a repeat pass.
    pub(crate) replay: Vec<VecDeque<Arc<UnitRows<R>>>>,
    /// A leaf that `report` let go dry.
    pub(crate) dry: Vec<bool>,
    pub(crate) stopped: bool,
}

impl<R> Group<R> {
    fn new(n: usize, all: bool) -> Self {
        Group {
            member: vec![all; n],
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            queued_tokens: vec![0; n],
            admitted: vec![0; n],
            epochs: vec![0; n],
            history: (0..n).map(|_| Vec::new()).collect(),
            replay: (0..n).map(|_| VecDeque::new()).collect(),
            dry: vec![false; n],
            stopped: false,
        }
    }
}

/// SplitMix64: a small generator whose whole state is one `u64`, so a checkpoint can keep it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitMix(pub(crate) u64);

impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct MixerConfig {
    pub leaves: Vec<Leaf>,
    pub stages: usize,
    pub balance: Balance,
    pub shortfall: Shortfall,
    pub max_epochs: u32,
    /// Draw units at random from a buffer of this many per leaf (0: first in, first out).
    pub shuffle_window: usize,
    pub seed: u64,
    pub shard_tokens: u64,
    /// Tokens a leaf may hold waiting for the others; past it, its oldest units are left out
    /// (and counted), so a side that is always in excess cannot fill memory on a long stream.
    pub max_buffer_tokens: u64,
}

/// The mixing state of one mixture. A unit is shared (`Arc`) between its queue, an open shard
/// and, for `repeat`, the history: its rows leave memory when the last of them lets go.
pub struct Mixer<R> {
    pub(crate) cfg: MixerConfig,
    pub(crate) groups: Vec<Group<R>>,
    /// Rows queued, in open shards, and kept for repeats (a row may count twice).
    pub(crate) held: usize,
    pub(crate) open: Vec<Vec<Placed<R>>>,
    pub(crate) open_tokens: Vec<u64>,
    pub(crate) seq: Vec<usize>,
    pub(crate) stats: Vec<LeafStats>,
    pub(crate) rng: SplitMix,
    pub(crate) finished: bool,
}

impl<R> Mixer<R> {
    pub fn new(cfg: MixerConfig) -> Self {
        let n = cfg.leaves.len();
        let groups = match cfg.balance {
            Balance::Global => vec![Group::new(n, true)],
            Balance::Stage => (0..cfg.stages).map(|_| Group::new(n, false)).collect(),
        };
        Mixer {
            rng: SplitMix(cfg.seed),
            open: (0..cfg.stages).map(|_| Vec::new()).collect(),
            open_tokens: vec![0; cfg.stages],
            seq: vec![0; cfg.stages],
            stats: vec![LeafStats::default(); n],
            groups,
            held: 0,
            finished: false,
            cfg,
        }
    }

    pub fn leaves(&self) -> &[Leaf] {
        &self.cfg.leaves
    }

    pub fn stats(&self) -> &[LeafStats] {
        &self.stats
    }

    fn group_of(&self, stage: usize) -> usize {
        match self.cfg.balance {
            Balance::Global => 0,
            Balance::Stage => stage,
        }
    }

    /// Queues a unit; call [`Mixer::admit`] after a batch of offers.
    pub fn offer(&mut self, unit: UnitRows<R>) {
        let s = &mut self.stats[unit.leaf];
        s.offered_tokens += unit.tokens;
        s.offered_rows += unit.rows.len() as u64;
        self.held += unit.rows.len();
        let stored = unit;
        let g = self.group_of(stored.stage);
        let group = &mut self.groups[g];
        let leaf = stored.leaf;
        group.member[leaf] = true;
        group.queued_tokens[leaf] += stored.tokens;
        group.queues[leaf].push_back(Arc::new(stored));
        while group.queued_tokens[leaf] > self.cfg.max_buffer_tokens {
            let u = group.queues[leaf].pop_front().expect("tokens queued");
            group.queued_tokens[leaf] -= u.tokens;
            self.stats[leaf].left_out_tokens += u.tokens;
            self.stats[leaf].left_out_rows += u.rows.len() as u64;
            self.stats[leaf].overflow_tokens += u.tokens;
            self.held -= u.rows.len();
        }
    }

    /// Admits what the buffers allow and returns the shards that filled up.
    pub fn admit(&mut self) -> Vec<ClosedShard<R>> {
        let mut closed = Vec::new();
        for g in 0..self.groups.len() {
            while let Some(p) = self.next_unit(g) {
                self.place(p, &mut closed);
            }
        }
        closed
    }

    /// Ends the input: applies the shortfall policy, flushes every stage's last shard.
    pub fn finish(&mut self) -> Vec<ClosedShard<R>> {
        self.finished = true;
        let mut closed = self.admit();
        for g in &mut self.groups {
            for (leaf, q) in g.queues.iter_mut().enumerate() {
                g.queued_tokens[leaf] = 0;
                for u in q.drain(..) {
                    self.stats[leaf].left_out_tokens += u.tokens;
                    self.stats[leaf].left_out_rows += u.rows.len() as u64;
                    self.held -= u.rows.len();
                }
            }
        }
        for stage in 0..self.cfg.stages {
            self.close(stage, &mut closed);
        }
        closed
    }

    /// The next unit of group `g`, or `None` to wait for input (or stop for good).
    fn next_unit(&mut self, g: usize) -> Option<Placed<R>> {
        loop {
            let group = &self.groups[g];
            if group.stopped {
                return None;
            }
            let weights = &self.cfg.leaves;
            // The leaf furthest behind its share; ties go to the lower index.
            let leaf = (0..weights.len())
                .filter(|&i| group.member[i] && !group.dry[i] && weights[i].weight > 0.0)
                .min_by(|&a, &b| {
                    let ka = group.admitted[a] as f64 / weights[a].weight;
                    let kb = group.admitted[b] as f64 / weights[b].weight;
                    ka.total_cmp(&kb).then(a.cmp(&b))
                })?;
            let window = self.cfg.shuffle_window;
            let group = &mut self.groups[g];
            if let Some(u) = group.replay[leaf].pop_front() {
                self.held += u.rows.len();
                // `epochs` counts passes; a row's label counts from 0.
                return Some(Placed { unit: u, epoch: group.epochs[leaf] - 1 });
            }
            let q = &mut group.queues[leaf];
            let ready = if self.finished { !q.is_empty() } else { q.len() > window.saturating_sub(1) && !q.is_empty() };
            if ready {
                let i = if window > 1 { self.rng.random_range(0..q.len().min(window)) } else { 0 };
                let u = q.remove(i).expect("index within the queue");
                group.queued_tokens[leaf] -= u.tokens;
                group.epochs[leaf] = group.epochs[leaf].max(1);
                // Out of the queue into an open shard: still held. Kept again for `repeat`.
                if self.cfg.shortfall == Shortfall::Repeat {
                    self.held += u.rows.len();
                    group.history[leaf].push(u.clone());
                }
                return Some(Placed { unit: u, epoch: 0 });
            }
            if !self.finished {
                return None;
            }
            // The input is over and this leaf is dry.
            match self.cfg.shortfall {
                Shortfall::Stop => group.stopped = true,
                Shortfall::Report => group.dry[leaf] = true,
                Shortfall::Repeat => {
                    let others_have_new = (0..weights.len()).any(|i| i != leaf && !group.queues[i].is_empty());
                    if others_have_new && group.epochs[leaf] < self.cfg.max_epochs && !group.history[leaf].is_empty() {
                        let mut again = group.history[leaf].clone();
                        // A repeat pass is shuffled again, reproducibly.
                        if window > 1 {
                            for i in (1..again.len()).rev() {
                                again.swap(i, self.rng.random_range(0..=i));
                            }
                        }
                        group.replay[leaf] = again.into();
                        group.epochs[leaf] += 1;
                    } else {
                        group.stopped = true;
                    }
                }
            }
        }
    }

    fn place(&mut self, p: Placed<R>, closed: &mut Vec<ClosedShard<R>>) {
        let (leaf, stage, tokens) = (p.unit.leaf, p.unit.stage, p.unit.tokens);
        let g = self.group_of(stage);
        self.groups[g].admitted[leaf] += tokens;
        let s = &mut self.stats[leaf];
        s.tokens += tokens;
        s.rows += p.unit.rows.len() as u64;
        s.epochs = s.epochs.max(p.epoch + 1);
        if p.epoch > 0 {
            s.repeated_tokens += tokens;
            s.repeated_rows += p.unit.rows.len() as u64;
        }
        self.open[stage].push(p);
        self.open_tokens[stage] += tokens;
        if self.open_tokens[stage] >= self.cfg.shard_tokens {
            self.close(stage, closed);
        }
    }

    fn close(&mut self, stage: usize, closed: &mut Vec<ClosedShard<R>>) {
        if self.open[stage].is_empty() {
            return;
        }
        let units = std::mem::take(&mut self.open[stage]);
        self.open_tokens[stage] = 0;
        self.held -= units.iter().map(|p| p.unit.rows.len()).sum::<usize>();
        closed.push(ClosedShard { stage, seq: self.seq[stage], units });
        self.seq[stage] += 1;
    }

    /// Rows held in memory: buffered, in open shards, or kept for repeats.
    pub fn held_rows(&self) -> usize {
        self.held
    }
}

/// Splits `"a:1, b:2"` (a bare name weighs 1) into ordered (name, weight) pairs.
pub fn parse_weights(s: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = match part.rsplit_once(':') {
            Some((n, w)) => {
                let w: f64 = w.trim().parse().map_err(|_| format!("`{part}`: the weight after `:` is not a number"))?;
                (n.trim(), w)
            }
            None => (part, 1.0),
        };
        if !(w.is_finite() && w >= 0.0) {
            return Err(format!("`{part}`: a weight must be a number ≥ 0"));
        }
        if out.insert(name.to_string(), w).is_some() {
            return Err(format!("`{name}` is listed twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
