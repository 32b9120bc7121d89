//! A [`Mixer`]'s state as plain data, for checkpoints.
//!
//! A unit can sit in a queue, an open shard and the repeat history at once (shared `Arc`s);
//! the snapshot stores each unit once and refers to it by index, so a restored mixer shares
//! exactly as the saved one did and holds the same memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::stages::mix::scheduler::{Group, LeafStats, Mixer, Placed, SplitMix, UnitRows};

/// One unit: leaf, stage, tokens, rows.
type UnitData<R> = (usize, usize, u64, Vec<R>);

#[derive(Serialize, Deserialize)]
struct GroupData {
    member: Vec<bool>,
    queues: Vec<Vec<usize>>,
    queued_tokens: Vec<u64>,
    admitted: Vec<u64>,
    epochs: Vec<u32>,
    history: Vec<Vec<usize>>,
    replay: Vec<Vec<usize>>,
    dry: Vec<bool>,
    stopped: bool,
}

/// Everything a mixer holds besides its settings.
#[derive(Serialize, Deserialize)]
pub struct MixerState<R> {
    units: Vec<UnitData<R>>,
    groups: Vec<GroupData>,
    held: usize,
    /// Per stage: (unit, epoch) of the open shard.
    open: Vec<Vec<(usize, u32)>>,
    open_tokens: Vec<u64>,
    seq: Vec<usize>,
    stats: Vec<LeafStats>,
    rng: u64,
    finished: bool,
}

impl<R> MixerState<R> {
    /// The same state with every row converted.
    pub fn map<S>(self, f: impl Fn(R) -> S) -> MixerState<S> {
        MixerState {
            units: self
                .units
                .into_iter()
                .map(|(l, s, t, rows)| (l, s, t, rows.into_iter().map(&f).collect()))
                .collect(),
            groups: self.groups,
            held: self.held,
            open: self.open,
            open_tokens: self.open_tokens,
            seq: self.seq,
            stats: self.stats,
            rng: self.rng,
            finished: self.finished,
        }
    }
}

/// Numbers units by identity as they are met.
struct Table<'a, R> {
    index: HashMap<*const UnitRows<R>, usize>,
    units: Vec<&'a Arc<UnitRows<R>>>,
}

impl<'a, R> Table<'a, R> {
    fn id(&mut self, u: &'a Arc<UnitRows<R>>) -> usize {
        *self.index.entry(Arc::as_ptr(u)).or_insert_with(|| {
            self.units.push(u);
            self.units.len() - 1
        })
    }

    fn ids(&mut self, us: impl IntoIterator<Item = &'a Arc<UnitRows<R>>>) -> Vec<usize> {
        us.into_iter().map(|u| self.id(u)).collect()
    }
}

impl<R: Clone> Mixer<R> {
    /// The mixer's state (its settings are not included: restore into a mixer built from them).
    pub fn state(&self) -> MixerState<R> {
        let mut t = Table { index: HashMap::new(), units: Vec::new() };
        let groups = self
            .groups
            .iter()
            .map(|g| GroupData {
                member: g.member.clone(),
                queues: g.queues.iter().map(|q| t.ids(q)).collect(),
                queued_tokens: g.queued_tokens.clone(),
                admitted: g.admitted.clone(),
                epochs: g.epochs.clone(),
                history: g.history.iter().map(|h| t.ids(h)).collect(),
                replay: g.replay.iter().map(|q| t.ids(q)).collect(),
                dry: g.dry.clone(),
                stopped: g.stopped,
            })
            .collect();
        let open = self.open.iter().map(|o| o.iter().map(|p| (t.id(&p.unit), p.epoch)).collect()).collect();
        MixerState {
            units: t.units.iter().map(|u| (u.leaf, u.stage, u.tokens, u.rows.clone())).collect(),
            groups,
            held: self.held,
            open,
            open_tokens: self.open_tokens.clone(),
            seq: self.seq.clone(),
            stats: self.stats.clone(),
            rng: self.rng.0,
            finished: self.finished,
        }
    }

    /// Replaces the state with a saved one; fails if it does not fit the mixer's settings.
    pub fn restore(&mut self, s: MixerState<R>) -> anyhow::Result<()> {
        let (leaves, stages) = (self.cfg.leaves.len(), self.cfg.stages);
        anyhow::ensure!(
            s.groups.len() == self.groups.len() && s.open.len() == stages && s.stats.len() == leaves,
            "the saved mixture has {} leaves and {} stages; the plan's has {leaves} and {stages}",
            s.stats.len(),
            s.open.len()
        );
        let units: Vec<Arc<UnitRows<R>>> = s
            .units
            .into_iter()
            .map(|(leaf, stage, tokens, rows)| Arc::new(UnitRows { leaf, stage, tokens, rows }))
            .collect();
        let get = |i: usize| units.get(i).cloned().ok_or_else(|| anyhow::anyhow!("unit {i} is not in the snapshot"));
        let many = |ids: &[usize]| ids.iter().map(|&i| get(i)).collect::<anyhow::Result<Vec<_>>>();
        let mut groups = Vec::new();
        for g in s.groups {
            groups.push(Group {
                member: g.member,
                queues: g.queues.iter().map(|q| many(q).map(VecDeque::from)).collect::<anyhow::Result<_>>()?,
                queued_tokens: g.queued_tokens,
                admitted: g.admitted,
                epochs: g.epochs,
                history: g.history.iter().map(|h| many(h)).collect::<anyhow::Result<_>>()?,
                replay: g.replay.iter().map(|q| many(q).map(VecDeque::from)).collect::<anyhow::Result<_>>()?,
                dry: g.dry,
                stopped: g.stopped,
            });
        }
        self.open = s
            .open
            .iter()
            .map(|o| o.iter().map(|&(u, epoch)| Ok(Placed { unit: get(u)?, epoch })).collect())
            .collect::<anyhow::Result<_>>()?;
        self.groups = groups;
        self.held = s.held;
        self.open_tokens = s.open_tokens;
        self.seq = s.seq;
        self.stats = s.stats;
        self.rng = SplitMix(s.rng);
        self.finished = s.finished;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::stages::mix::scheduler::{Balance, Leaf, MixerConfig, Shortfall};

    use super::*;

    fn mixer() -> Mixer<u32> {
        let leaf = |k: &str| Leaf { kind: k.into(), style: String::new(), source: String::new(), weight: 0.5 };
        Mixer::new(MixerConfig {
            leaves: vec![leaf("real"), leaf("synthetic")],
            stages: 1,
            balance: Balance::Global,
            shortfall: Shortfall::Repeat,
            max_epochs: 3,
            shuffle_window: 4,
            seed: 3,
            shard_tokens: 40,
            max_buffer_tokens: u64::MAX,
        })
    }

    fn feed(m: &mut Mixer<u32>, from: u32, to: u32) -> Vec<Vec<u32>> {
        for i in from..to {
            m.offer(UnitRows { leaf: (i % 3 == 0) as usize, stage: 0, tokens: 5 + (i as u64 % 7), rows: vec![i] });
        }
        let shards = m.admit();
        shards.iter().map(|s| s.units.iter().flat_map(|p| p.unit.rows.clone()).collect()).collect()
    }

    fn rows(shards: Vec<crate::stages::mix::scheduler::ClosedShard<u32>>) -> Vec<Vec<u32>> {
        shards.iter().map(|s| s.units.iter().flat_map(|p| p.unit.rows.clone()).collect()).collect()
    }

    #[test]
    fn a_restored_mixer_continues_exactly_as_the_original() {
        let mut a = mixer();
        let mut first = feed(&mut a, 0, 50);
        let saved = bincode::serialize(&a.state()).unwrap();
        let mut b = mixer();
        b.restore(bincode::deserialize(&saved).unwrap()).unwrap();
        let (mut ra, mut rb) = (first.clone(), std::mem::take(&mut first));
        ra.extend(feed(&mut a, 50, 120));
        rb.extend(feed(&mut b, 50, 120));
        ra.extend(rows(a.finish()));
        rb.extend(rows(b.finish()));
        assert_eq!(ra, rb);
        assert_eq!(a.stats(), b.stats());
        assert_eq!(a.held_rows(), b.held_rows());
        assert!(ra.len() > 3, "the test must close several shards");
    }
}
