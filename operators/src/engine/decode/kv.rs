//! The KV cache of the rows a [`Batcher`](crate::engine::Batcher) decodes, kept in the decoder's layout
//! ([`KvLayout`]).
//!
//! - **Standard** (optimum's graphs): rows are left-padded and right-aligned in one cache that
//!   the model returns grown by one position each step. The cache is rebuilt (rows dropped or
//!   added, leading all-padding columns trimmed) only when a row finishes or joins.
//! - **Shared** (`GroupQueryAttention` graphs, either kernel): one buffer per layer and kind,
//!   `[slots, kv_heads, capacity, head_dim]`, passed to the model as both `past_key_values.N.*`
//!   and `present.N.*`, so a step writes one position per row and copies nothing. Live rows sit
//!   in slots `0..n`, right-padded from position 0; a prompt is prefilled straight into its slot;
//!   a finished row's slot takes the last row (one row's cache moved); the capacity grows by
//!   copying when the longest row would not fit. With wrapflow's attention kernel, a prompt
//!   that shares a prefix with an earlier one copies it from a [`PrefixCache`] and runs the model
//!   on the rest only.

use anyhow::Context;
use ndarray::{Array4, s};
use ort::value::Tensor;

use crate::engine::decode::decoder::{Cache, Decoder, SharedKv};
use crate::engine::decode::prefix::PrefixCache;
use crate::model::decoder::KvLayout;

/// Positions added at a time when the shared buffer grows.
const GROW: usize = 256;

pub(super) enum Kv {
    Standard {
        cache: Option<Cache>,
        /// The last prefill's cache, until [`Kv::retire`] merges it.
        fresh: Option<Cache>,
    },
    Shared(SharedKv, PrefixCache),
}

impl SharedKv {
    fn stride(&self, dec: &Decoder) -> usize {
        dec.kv_heads * self.cap * dec.head_dim
    }

    /// Makes room for `slots` rows of `len` positions, keeping the first `rows` rows' first
    /// `cached[i]` positions.
    fn reserve(&mut self, dec: &Decoder, slots: usize, len: usize, cached: &[usize]) {
        if slots <= self.slots && len <= self.cap && !self.bufs.is_empty() {
            return;
        }
        let slots = slots.max(self.slots);
        let cap = if len <= self.cap { self.cap } else { len.next_multiple_of(GROW).max(self.cap + self.cap / 2) };
        let (kvh, d) = (dec.kv_heads, dec.head_dim);
        let (old_stride, new_stride) = (kvh * self.cap * d, kvh * cap * d);
        let bufs = (0..2 * dec.layers)
            .map(|k| {
                let mut b = vec![0f32; slots * new_stride];
                if let Some(old) = self.bufs.get(k) {
                    for (row, &n) in cached.iter().enumerate() {
                        for h in 0..kvh {
                            let from = row * old_stride + h * self.cap * d;
                            let to = row * new_stride + h * cap * d;
                            b[to..to + n * d].copy_from_slice(&old[from..from + n * d]);
                        }
                    }
                }
                b
            })
            .collect();
        *self = SharedKv { bufs, slots, cap };
    }

    /// Copies row `from`'s first `n` positions into slot `to`.
    fn move_row(&mut self, dec: &Decoder, from: usize, to: usize, n: usize) {
        let (stride, d, cap) = (self.stride(dec), dec.head_dim, self.cap);
        for b in &mut self.bufs {
            for h in 0..dec.kv_heads {
                let src = from * stride + h * cap * d;
                b.copy_within(src..src + n * d, to * stride + h * cap * d);
            }
        }
    }
}

impl Kv {
    /// `prefix_bytes`: the budget of the prefix cache (only wrapflow's kernel runs a prompt on
    /// top of a cached prefix; ONNX Runtime's GroupQueryAttention gets none).
    pub(super) fn new(dec: &Decoder, prefix_bytes: usize) -> Self {
        let empty = SharedKv { bufs: vec![], slots: 0, cap: 0 };
        match dec.layout {
            KvLayout::Standard => Kv::Standard { cache: None, fresh: None },
            KvLayout::Shared => Kv::Shared(empty, PrefixCache::new(prefix_bytes)),
            KvLayout::SharedOrt => Kv::Shared(empty, PrefixCache::new(0)),
        }
    }

    /// The prefix-cache entry a prefill of `ids` would copy from and how many leading tokens
    /// ([`PrefixCache::find`]); `None` for none (always in the standard layout).
    pub(super) fn lookup(&self, ids: &[u32]) -> Option<(usize, usize)> {
        match self {
            Kv::Shared(_, prefixes) => prefixes.find(ids),
            Kv::Standard { .. } => None,
        }
    }

    /// Whether prefills are kept for later prompts to copy from (wrapflow's kernel, a budget).
    pub(super) fn keeps_prefixes(&self) -> bool {
        matches!(self, Kv::Shared(_, prefixes) if prefixes.is_on())
    }

    /// Prefills `prompts` as the rows after the `live` rows already cached (whose cached lengths
    /// are `cached`); returns their logits, `prompts.len() × vocab`, and how many prompt tokens
    /// came from the prefix cache. `found` holds each prompt's [`Kv::lookup`], made just before:
    /// prompts with a cached prefix must come last, those with as many tokens left to run next
    /// to each other.
    pub(super) fn prefill(
        &mut self,
        dec: &mut Decoder,
        cached: &[usize],
        prompts: &[&[u32]],
        found: &[Option<(usize, usize)>],
    ) -> anyhow::Result<(Vec<f32>, usize)> {
        let n = prompts.len();
        let len = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::with_capacity(n * len), Vec::with_capacity(n * len));
        let pad_id = dec.eos[0] as i64;
        match self {
            Kv::Standard { fresh, .. } => {
                let mut pos = Vec::with_capacity(n * len);
                for p in prompts {
                    let pad = len - p.len();
                    ids.extend(std::iter::repeat_n(pad_id, pad).chain(p.iter().map(|&t| t as i64)));
                    mask.extend(std::iter::repeat_n(0, pad).chain(std::iter::repeat_n(1, p.len())));
                    pos.extend(std::iter::repeat_n(0, pad).chain(0..p.len() as i64));
                }
                let empty = dec.empty_cache(n)?;
                let (logits, present) = dec.forward(n, ids, mask, pos, &empty)?;
                *fresh = Some(present);
                Ok((logits, 0))
            }
            Kv::Shared(kv, prefixes) => {
                anyhow::ensure!(found.len() == n, "one lookup per prompt");
                let whole = found.iter().take_while(|f| f.is_none()).count();
                anyhow::ensure!(found[whole..].iter().all(Option::is_some), "prompts with a cached prefix come last");
                // Room for the prompt and the first generated token.
                kv.reserve(dec, cached.len() + n, len + 1, cached);
                let mut logits = Vec::new();
                if whole > 0 {
                    let len = prompts[..whole].iter().map(|p| p.len()).max().unwrap_or(0);
                    for p in &prompts[..whole] {
                        let pad = len - p.len();
                        ids.extend(p.iter().map(|&t| t as i64).chain(std::iter::repeat_n(pad_id, pad)));
                        mask.extend(std::iter::repeat_n(1, p.len()).chain(std::iter::repeat_n(0, pad)));
                    }
                    logits = dec.forward_shared(whole, ids, mask, kv, cached.len())?;
                }
                let mut reused = 0;
                for (j, f) in found.iter().enumerate().skip(whole) {
                    let (i, m) = f.expect("a cached prefix");
                    prefixes.restore(i, m, dec, kv, cached.len() + j);
                    reused += m;
                }
                logits.extend(continue_prompts(dec, kv, cached.len(), prompts, found, whole)?);
                for (j, p) in prompts.iter().enumerate() {
                    prefixes.store(p, dec, kv, cached.len() + j);
                }
                Ok((logits, reused))
            }
        }
    }

    /// Drops the rows whose `keep` is false and takes in the last prefill; returns the old row
    /// indices in their new order (the caller reorders its rows to match).
    pub(super) fn retire(&mut self, dec: &Decoder, cached: &[usize], keep: &[bool]) -> anyhow::Result<Vec<usize>> {
        match self {
            Kv::Standard { cache, fresh } => {
                let order: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
                let fresh = fresh.take();
                let old = keep.len() - fresh.as_ref().map(batch_of).transpose()?.unwrap_or(0);
                let rows: Vec<(usize, usize)> = order.iter().map(|&i| (i, cached[i])).collect();
                *cache = Some(rebuild(dec, cache.as_ref(), fresh.as_ref(), &rows, old)?);
                Ok(order)
            }
            Kv::Shared(kv, _) => {
                let mut order: Vec<usize> = (0..keep.len()).collect();
                let mut i = 0;
                while i < order.len() {
                    if keep[order[i]] {
                        i += 1;
                        continue;
                    }
                    let last = order.len() - 1;
                    if i != last {
                        kv.move_row(dec, last, i, cached[order[last]]);
                    }
                    order.swap_remove(i);
                }
                if order.is_empty() {
                    // Idle: give the memory back.
                    *kv = SharedKv { bufs: vec![], slots: 0, cap: 0 };
                }
                Ok(order)
            }
        }
    }

    /// Decodes one token for each row (`last` tokens, `cached` positions per row); returns the
    /// logits, `rows × vocab`.
    pub(super) fn step(&mut self, dec: &mut Decoder, last: &[u32], cached: &[usize]) -> anyhow::Result<Vec<f32>> {
        let b = last.len();
        let ids: Vec<i64> = last.iter().map(|&t| t as i64).collect();
        match self {
            Kv::Standard { cache, .. } => {
                let c = match cache.take() {
                    Some(c) => c,
                    None => dec.empty_cache(b)?,
                };
                let total = cache_len(&c)? + 1;
                let mut mask = Vec::with_capacity(b * total);
                for &n in cached {
                    mask.extend(std::iter::repeat_n(0, total - 1 - n).chain(std::iter::repeat_n(1, n + 1)));
                }
                let pos: Vec<i64> = cached.iter().map(|&n| n as i64).collect();
                let (logits, present) = dec.forward(b, ids, mask, pos, &c)?;
                *cache = Some(present);
                Ok(logits)
            }
            Kv::Shared(kv, _) => {
                let total = cached.iter().max().map_or(1, |m| m + 1);
                kv.reserve(dec, b, total, cached);
                let mut mask = Vec::with_capacity(b * total);
                for &n in cached {
                    mask.extend(std::iter::repeat_n(1, n + 1).chain(std::iter::repeat_n(0, total - 1 - n)));
                }
                dec.forward_shared(b, ids, mask, kv, 0)
            }
        }
    }
}

/// Runs the model on what follows the cached prefix of `prompts[from..]` (found with its
/// length in `found`), one call per run of rows with as many tokens left; returns their logits.
fn continue_prompts(
    dec: &mut Decoder,
    kv: &mut SharedKv,
    first: usize,
    prompts: &[&[u32]],
    found: &[Option<(usize, usize)>],
    from: usize,
) -> anyhow::Result<Vec<f32>> {
    let start = |j: usize| found[j].map_or(0, |(_, m)| m);
    let mut logits = Vec::new();
    let mut j = from;
    while j < prompts.len() {
        let rest = prompts[j].len() - start(j);
        let end = (j..prompts.len()).take_while(|&k| prompts[k].len() - start(k) == rest).last().unwrap_or(j) + 1;
        let total = prompts[j..end].iter().map(|p| p.len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for (k, p) in prompts.iter().enumerate().take(end).skip(j) {
            ids.extend(p[start(k)..].iter().map(|&t| t as i64));
            mask.extend(std::iter::repeat_n(1, p.len()).chain(std::iter::repeat_n(0, total - p.len())));
        }
        logits.extend(dec.forward_shared(end - j, ids, mask, kv, first + j)?);
        j = end;
    }
    Ok(logits)
}

fn batch_of(cache: &Cache) -> anyhow::Result<usize> {
    let (shape, _) = cache[0].try_extract_tensor::<f32>()?;
    Ok(shape[0] as usize)
}

fn cache_len(cache: &Cache) -> anyhow::Result<usize> {
    let (shape, _) = cache[0].try_extract_tensor::<f32>()?;
    Ok(shape[2] as usize)
}

/// A standard cache holding `rows` (old index, cached length) right-aligned: indices below `old`
/// come from `cache`, the rest from `fresh`.
fn rebuild(
    dec: &Decoder,
    cache: Option<&Cache>,
    fresh: Option<&Cache>,
    rows: &[(usize, usize)],
    old: usize,
) -> anyhow::Result<Cache> {
    let t_new = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let (kvh, d) = (dec.kv_heads, dec.head_dim);
    let mut out = Vec::with_capacity(2 * dec.layers);
    for layer in 0..2 * dec.layers {
        let mut arr = Array4::<f32>::zeros((rows.len(), kvh, t_new, d));
        let old_view = cache.map(|c| c[layer].try_extract_array::<f32>()).transpose()?;
        let fresh_view = fresh.map(|c| c[layer].try_extract_array::<f32>()).transpose()?;
        for (i, &(j, n)) in rows.iter().enumerate() {
            let (src, row) = if j < old {
                (old_view.as_ref().context("old cache")?, j)
            } else {
                (fresh_view.as_ref().context("fresh cache")?, j - old)
            };
            let src = src.view().into_dimensionality::<ndarray::Ix4>()?;
            let t_src = src.shape()[2];
            arr.slice_mut(s![i, .., t_new - n.., ..]).assign(&src.slice(s![row, .., t_src - n.., ..]));
        }
        out.push(Tensor::from_array(arr)?.into_dyn());
    }
    Ok(out)
}
