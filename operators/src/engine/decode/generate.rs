//! Batched generation with a KV cache and continuous batching: a finished sequence's slot is
//! refilled with the next prompt at once, so long and short outputs don't stall the batch.
//!
//! The cache is kept in the model's layout (see `kv`): optimum's past/present tensors, rebuilt
//! only when a row finishes or joins, or one buffer per layer that the model writes in place.
//! Each request samples from its own generator seeded by `seed` and its index (or its own
//! `Prompt::seed`), so outputs do not depend on batch size or on which requests share a batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::engine::decode::contrast::advance_all;
use crate::engine::decode::decoder::Decoder;
use crate::engine::decode::kv::Kv;
use crate::engine::decode::prefix::MIN_REUSE;
pub use crate::engine::decode::prompt::{AnswerCheck, Completion, Finish, GenerationConfig, Prompt, SoftStop};
use crate::engine::decode::row::Row;
use crate::engine::decode::sample::{block_repeats, draw};
use crate::engine::guards::qa::QaFormat;

/// Where time went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timing {
    pub prefill_tokens: u64,
    pub prefill_s: f64,
    pub decode_tokens: u64,
    pub decode_s: f64,
    /// Of `decode_s`: choosing each step's tokens from the logits (sampling, repeat blocking and
    /// the number and name guards' masks).
    #[serde(default)]
    pub select_s: f64,
    /// Prompt tokens copied from the prefix cache instead of run (not in `prefill_tokens`).
    #[serde(default)]
    pub reused_tokens: u64,
}

impl Timing {
    /// What was spent since `earlier` (all of `self` when the counts restarted in between).
    pub fn since(&self, earlier: &Timing) -> Timing {
        if self.prefill_s < earlier.prefill_s || self.decode_s < earlier.decode_s {
            return self.clone();
        }
        Timing {
            prefill_tokens: self.prefill_tokens - earlier.prefill_tokens,
            prefill_s: self.prefill_s - earlier.prefill_s,
            decode_tokens: self.decode_tokens - earlier.decode_tokens,
            decode_s: self.decode_s - earlier.decode_s,
            select_s: self.select_s - earlier.select_s,
            reused_tokens: self.reused_tokens - earlier.reused_tokens,
        }
    }
}

/// Picks the next token from `logits` (modified in place).
pub fn sample(logits: &mut [f32], generated: &[u32], cfg: &GenerationConfig, rng: &mut StdRng) -> u32 {
    sample_at(logits, generated, cfg, cfg.temperature, rng)
}

/// [`sample`] at a given temperature (a prompt may override the configured one).
pub fn sample_at(
    logits: &mut [f32],
    generated: &[u32],
    cfg: &GenerationConfig,
    temperature: f32,
    rng: &mut StdRng,
) -> u32 {
    block_repeats(logits, generated, cfg.no_repeat_ngram);
    draw(logits, cfg.top_k, cfg.top_p, temperature, rng)
}

/// Generates for every prompt, calling `done` as each finishes (in finishing order).
pub fn generate(
    dec: &mut Decoder,
    prompts: impl IntoIterator<Item = Prompt>,
    cfg: &GenerationConfig,
    mut done: impl FnMut(Completion),
) -> anyhow::Result<Timing> {
    let mut b = Batcher::new(cfg.clone());
    for p in prompts {
        b.push(p);
    }
    while !b.is_idle() {
        b.step(dec, &mut done)?;
    }
    Ok(b.timing)
}

/// Continuous batching one step at a time, for callers that must not block (the rephrase
/// operator): [`Batcher::push`] queues prompts, each [`Batcher::step`] fills free slots with
/// queued prompts (prefill), hands back finished sequences and decodes one token for the rest.
pub struct Batcher {
    cfg: GenerationConfig,
    pending: VecDeque<(usize, Prompt)>,
    pushed: usize,
    rows: Vec<Row>,
    /// Created on the first step, in the decoder's layout.
    kv: Option<Kv>,
    /// Created for the first Q&A prompt, with the decoder's tokenizer.
    qa: Option<Arc<QaFormat>>,
    pub timing: Timing,
}

impl Batcher {
    pub fn new(cfg: GenerationConfig) -> Self {
        Batcher {
            cfg,
            pending: VecDeque::new(),
            pushed: 0,
            rows: vec![],
            kv: None,
            qa: None,
            timing: Timing::default(),
        }
    }

    /// Queues a prompt (after the other prompts marked [`Prompt::ahead`] if it is, else last);
    /// returns its index, which its [`Completion`] carries.
    pub fn push(&mut self, p: Prompt) -> usize {
        self.pushed += 1;
        let at = if p.ahead { self.pending.iter().take_while(|(_, q)| q.ahead).count() } else { self.pending.len() };
        self.pending.insert(at, (self.pushed - 1, p));
        self.pushed - 1
    }

    /// Stops decoding prompt `index` (a client that left): a queued prompt is dropped, a live
    /// sequence leaves the batch at the next step, its completion handed back as finished.
    pub fn cancel(&mut self, index: usize) {
        self.pending.retain(|(i, _)| *i != index);
        for r in self.rows.iter_mut().filter(|r| r.index == index && r.done.is_none()) {
            r.done = Some(Finish::Stop);
        }
    }

    /// Prompts queued or being decoded.
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.rows.iter().filter(|r| !r.shadow).count()
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.rows.is_empty()
    }

    /// The sequences being decoded: their index and the tokens generated so far (a server
    /// streams them).
    pub fn live(&self) -> impl Iterator<Item = (usize, &[u32])> {
        self.rows.iter().filter(|r| !r.shadow).map(|r| (r.index, r.generated.as_slice()))
    }

    /// One round: join waiting prompts into free slots, emit finished rows, decode one token.
    pub fn step(&mut self, dec: &mut Decoder, done: &mut impl FnMut(Completion)) -> anyhow::Result<()> {
        if self.kv.is_none() {
            self.kv = Some(Kv::new(dec, self.cfg.prefix_cache_mb << 20));
        }
        let fresh = self.take_fresh(done);
        let joined = !fresh.is_empty();
        if joined {
            let kv = self.kv.as_ref().expect("created above");
            let (first, then) = if kv.keeps_prefixes() { alike(kv, fresh) } else { (fresh, vec![]) };
            self.join(dec, first)?;
            if !then.is_empty() {
                self.join(dec, then)?;
            }
        }
        if joined || self.rows.iter().any(|r| r.done.is_some()) {
            self.leave(dec, done)?;
        }
        if !self.rows.is_empty() {
            self.decode(dec)?;
        }
        Ok(())
    }

    /// Waiting prompts for the free slots (a prompt with a contrast takes two); an empty prompt
    /// is answered at once.
    fn take_fresh(&mut self, done: &mut impl FnMut(Completion)) -> Vec<(usize, Prompt)> {
        let mut fresh = Vec::new();
        let mut taken = self.rows.len();
        while taken < self.cfg.batch_size.max(1) {
            match self.pending.pop_front() {
                Some((i, p)) if p.ids.is_empty() => done(Completion {
                    id: p.id,
                    index: i,
                    token_ids: vec![],
                    text: String::new(),
                    finish: Finish::Length,
                    prompt_tokens: 0,
                    guarded: 0,
                    names_guarded: 0,
                    checked_out: false,
                }),
                Some(p) => {
                    taken += 1 + usize::from(contrasted(&p.1));
                    fresh.push(p)
                }
                None => break,
            }
        }
        fresh
    }

    /// Prefills `fresh` prompts into new rows (with their shadows), each with its first token.
    fn join(&mut self, dec: &mut Decoder, fresh: Vec<(usize, Prompt)>) -> anyhow::Result<()> {
        let kv = self.kv.as_mut().expect("step creates the cache");
        let t0 = Instant::now();
        // Each contrasted prompt brings its shadow (marked `true`): the prompt without its source,
        // prefilled as a row of its own.
        let mut fresh: Vec<_> = fresh
            .into_iter()
            .flat_map(|(i, mut p)| {
                let contrast = if contrasted(&p) { std::mem::take(&mut p.contrast) } else { vec![] };
                let shadow = (!contrast.is_empty()).then(|| (i, Prompt { ids: contrast, ..Default::default() }, true));
                std::iter::once((i, p, false)).chain(shadow)
            })
            // Prompts with a cached prefix last, grouped by the tokens left to run (`Kv::prefill`).
            .map(|(i, p, shadow)| (kv.lookup(&p.ids), i, p, shadow))
            .collect();
        let n = fresh.len();
        let cached: Vec<usize> = self.rows.iter().map(|r| r.cached).collect();
        fresh.sort_by_key(|(found, _, p, _)| {
            let reused = found.map_or(0, |(_, m)| m);
            (reused > 0, p.ids.len() - reused)
        });
        let found: Vec<_> = fresh.iter().map(|(found, ..)| *found).collect();
        let prompts: Vec<&[u32]> = fresh.iter().map(|(_, _, p, _)| p.ids.as_slice()).collect();
        let (mut logits, reused) = kv.prefill(dec, &cached, &prompts, &found)?;
        self.timing.reused_tokens += reused as u64;
        self.timing.prefill_tokens += prompts.iter().map(|p| p.len() as u64).sum::<u64>() - reused as u64;
        self.timing.prefill_s += t0.elapsed().as_secs_f64();
        debug_assert_eq!(logits.len() % n, 0);
        let start = self.rows.len();
        for (_, index, p, shadow) in fresh {
            if shadow {
                self.rows.push(Row::shadow(index, p.ids, &self.cfg));
                continue;
            }
            let qa =
                p.qa_format.then(|| self.qa.get_or_insert_with(|| Arc::new(QaFormat::new(&dec.tokenizer))).clone());
            self.rows.push(Row::new(index, p, &self.cfg, qa));
        }
        advance_all(&mut self.rows[start..], dec, &mut logits, &self.cfg);
        Ok(())
    }

    /// Hands back finished rows and drops them from the cache.
    fn leave(&mut self, dec: &mut Decoder, done: &mut impl FnMut(Completion)) -> anyhow::Result<()> {
        let kv = self.kv.as_mut().expect("step creates the cache");
        let cached: Vec<usize> = self.rows.iter().map(|r| r.cached).collect();
        let keep: Vec<bool> = self.rows.iter().map(|r| r.done.is_none()).collect();
        let order = kv.retire(dec, &cached, &keep)?;
        let mut slots: Vec<Option<Row>> = self.rows.drain(..).map(Some).collect();
        for r in slots.iter_mut().filter(|r| r.as_ref().is_some_and(|r| r.done.is_some())) {
            let r = r.take().expect("a finished row");
            let finish = r.done.expect("finished");
            if !r.shadow {
                done(r.completion(dec, finish, &self.cfg));
            }
        }
        self.rows.extend(order.into_iter().map(|i| slots[i].take().expect("a kept row")));
        Ok(())
    }

    /// Feeds each row's last token and chooses its next.
    fn decode(&mut self, dec: &mut Decoder) -> anyhow::Result<()> {
        let kv = self.kv.as_mut().expect("step creates the cache");
        let t0 = Instant::now();
        let rows = &mut self.rows;
        let last: Vec<u32> = rows.iter().map(|r| *r.generated.last().expect("a live row has a token")).collect();
        let cached: Vec<usize> = rows.iter().map(|r| r.cached).collect();
        let mut logits = kv.step(dec, &last, &cached)?;
        let t1 = Instant::now();
        rows.iter_mut().for_each(|r| r.cached += 1);
        advance_all(rows, dec, &mut logits, &self.cfg);
        self.timing.select_s += t1.elapsed().as_secs_f64();
        // Generated tokens: a shadow's step is model time, not a token of an answer.
        self.timing.decode_tokens += rows.iter().filter(|r| !r.shadow).count() as u64;
        self.timing.decode_s += t0.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Prompts with their indices, as they join.
type Queued = Vec<(usize, Prompt)>;

/// Splits the prompts of a join into those that run now and those that start like one of them
/// (by [`MIN_REUSE`] tokens more than the prefix cache holds for them): these join right after,
/// copying its prefix from the cache instead of running it again. A run's first join, a batch
/// of prompts in a few styles, otherwise ran each style's instructions once per prompt.
fn alike(kv: &Kv, fresh: Queued) -> (Queued, Queued) {
    let shared = |a: &[u32], b: &[u32]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (mut first, mut then): (Queued, Queued) = (vec![], vec![]);
    for (i, p) in fresh {
        let cached = kv.lookup(&p.ids).map_or(0, |(_, m)| m);
        let best = first.iter().map(|(_, q)| shared(&p.ids, &q.ids)).max().unwrap_or(0);
        if best >= MIN_REUSE && best >= cached + MIN_REUSE { then.push((i, p)) } else { first.push((i, p)) }
    }
    (first, then)
}

/// Whether `p` is decoded against its contrast (context-aware decoding).
fn contrasted(p: &Prompt) -> bool {
    !p.contrast.is_empty() && p.context_weight > 0.0
}
