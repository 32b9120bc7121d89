//! Prompt prefixes kept in the shared KV layout, so that a prompt that starts like an earlier
//! one is prefilled from where they part.
//!
//! WRAP prompts of one style share their system message and worked example (about two thirds
//! of each prompt), and a retry repeats its prompt whole. Prefilling that again was the
//! pipeline's largest model cost. After each prefill the prompt's cache positions are copied
//! here; a later prompt copies the longest prefix it shares with one of them (all but its last
//! token at most: the model must still run on one token to give its logits) and prefills only
//! the rest. Entries are dropped least recently used first, past a byte budget.

use crate::engine::decode::decoder::{Decoder, SharedKv};

/// Shortest shared prefix worth a copy and a separate model call.
pub const MIN_REUSE: usize = 32;

struct Entry {
    ids: Vec<u32>,
    /// `2 × layers` blocks of `[kv_heads, ids.len(), head_dim]`, in the buffers' order.
    kv: Vec<f32>,
    used: u64,
}

/// Cached prompt prefixes, within `budget` floats.
pub(super) struct PrefixCache {
    entries: Vec<Entry>,
    budget: usize,
    clock: u64,
}

impl PrefixCache {
    pub(super) fn new(budget_bytes: usize) -> Self {
        PrefixCache { entries: vec![], budget: budget_bytes / std::mem::size_of::<f32>(), clock: 0 }
    }

    /// Whether any prompt can be kept (a budget).
    pub(super) fn is_on(&self) -> bool {
        self.budget > 0
    }

    /// The entry sharing the longest prefix with `ids` and that length, capped so at least one
    /// token of `ids` is left to run; `None` under [`MIN_REUSE`].
    pub(super) fn find(&self, ids: &[u32]) -> Option<(usize, usize)> {
        let cap = ids.len().saturating_sub(1);
        let shared = |e: &Entry| e.ids.iter().zip(ids).take_while(|(a, b)| a == b).count().min(cap);
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, shared(e)))
            .max_by_key(|&(_, n)| n)
            .filter(|&(_, n)| n >= MIN_REUSE)
    }

    /// Copies the first `n` positions of entry `i` into `slot` of `kv`.
    pub(super) fn restore(&mut self, i: usize, n: usize, dec: &Decoder, kv: &mut SharedKv, slot: usize) {
        self.clock += 1;
        let e = &mut self.entries[i];
        e.used = self.clock;
        let (kvh, d, len) = (dec.kv_heads, dec.head_dim, e.ids.len());
        let stride = kvh * kv.cap * d;
        for (k, buf) in kv.bufs.iter_mut().enumerate() {
            for h in 0..kvh {
                let from = (k * kvh + h) * len * d;
                let to = slot * stride + h * kv.cap * d;
                buf[to..to + n * d].copy_from_slice(&e.kv[from..from + n * d]);
            }
        }
    }

    /// Keeps the cache of `ids`, prefilled in `slot` of `kv`, unless an entry already holds it.
    pub(super) fn store(&mut self, ids: &[u32], dec: &Decoder, kv: &SharedKv, slot: usize) {
        let (kvh, d) = (dec.kv_heads, dec.head_dim);
        let size = kv.bufs.len() * kvh * ids.len() * d;
        if size > self.budget || self.entries.iter().any(|e| e.ids.starts_with(ids)) {
            return;
        }
        // A shorter entry that this prompt extends is now redundant.
        self.entries.retain(|e| !ids.starts_with(&e.ids));
        while self.entries.iter().map(|e| e.kv.len()).sum::<usize>() + size > self.budget {
            let oldest = self.entries.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i);
            self.entries.swap_remove(oldest.expect("an entry while over budget"));
        }
        let stride = kvh * kv.cap * d;
        let mut data = Vec::with_capacity(size);
        for buf in &kv.bufs {
            for h in 0..kvh {
                let from = slot * stride + h * kv.cap * d;
                data.extend_from_slice(&buf[from..from + ids.len() * d]);
            }
        }
        self.clock += 1;
        self.entries.push(Entry { ids: ids.to_vec(), kv: data, used: self.clock });
    }
}
