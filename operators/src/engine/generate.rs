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

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::constrain::NumberGuard;
use super::decoder::Decoder;
use super::kv::Kv;
use super::leak::LeakGuard;
use super::names::NameGuard;
use super::qa::QaFormat;
use super::sample::{argmax, block_repeats, draw};

/// Decoding settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// Sequences decoded together.
    pub batch_size: usize,
    /// 0 is greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    pub top_p: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    pub seed: u64,
    /// Forbid repeating an n-gram of the *generated* tokens (0 = off); the prompt is not
    /// counted, so copying the source text stays allowed.
    pub no_repeat_ngram: usize,
    /// Stop when the generated text contains one of these (it is cut off).
    pub stop: Vec<String>,
    /// Generate exactly `max_new_tokens` (benchmarks).
    pub ignore_eos: bool,
    /// Memory for prompt prefixes kept to prefill later prompts that start the same way (a
    /// style's instructions and worked example, a retry's whole prompt); 0 turns it off.
    pub prefix_cache_mb: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 256,
            batch_size: 8,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            no_repeat_ngram: 0,
            stop: vec![],
            ignore_eos: false,
            prefix_cache_mb: 1024,
        }
    }
}

/// A prompt, already tokenized.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub id: String,
    pub ids: Vec<u32>,
    /// Overrides `GenerationConfig::max_new_tokens` for this prompt.
    pub max_new_tokens: Option<usize>,
    /// Seeds this prompt's sampler (with `GenerationConfig::seed`); defaults to its index. Give a
    /// key of the task (document, chunk, style) so outputs don't depend on arrival order.
    pub seed: Option<u64>,
    /// Ends the generation at the first `at` that starts after `after_tokens` generated tokens
    /// (cut there): a rewrite stops at the paragraph break once it has covered about as much as
    /// its source, instead of running on into new text.
    pub soft_stop: Option<SoftStop>,
    /// End-of-sequence is not allowed before this many generated tokens (a Q&A conversation that
    /// stops after its first pair covers too little of its source).
    pub min_new_tokens: usize,
    /// Override `GenerationConfig`'s sampling settings for this prompt (a retry samples; a
    /// server's requests each bring their own).
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub no_repeat_ngram: Option<usize>,
    /// Only numbers of the guard's source may be written (constrained decoding, see
    /// [`NumberGuard`]).
    pub numbers: Option<Arc<NumberGuard>>,
    /// Mid-sentence, only capitalised words of the guard's source may be written (see
    /// [`NameGuard`]).
    pub names: Option<Arc<NameGuard>>,
    /// Token n-grams of the prompt's worked examples that may not be copied (see [`LeakGuard`]).
    pub leaks: Option<Arc<LeakGuard>>,
    /// Hold the text to Question/Answer pairs (see [`QaFormat`]).
    pub qa_format: bool,
    /// Text that the generation continues on its line (an answer prefix such as `Question:`):
    /// the guard reads counters such as "Question 2:" from it.
    pub continues: String,
    /// Stop strings of this prompt, besides `GenerationConfig::stop`.
    pub stop: Vec<String>,
}

/// See [`Prompt::soft_stop`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoftStop {
    pub after_tokens: usize,
    pub at: String,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    Eos,
    Stop,
    Length,
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    /// Position of the prompt in the input.
    pub index: usize,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Steps at which the number guard overrode the model's first choice.
    #[serde(default)]
    pub guarded: u32,
    /// Steps at which the name guard overrode it.
    #[serde(default)]
    pub names_guarded: u32,
}

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

struct Row {
    index: usize,
    max_new: usize,
    id: String,
    prompt_len: usize,
    generated: Vec<u32>,
    /// Real tokens in the cache for this row.
    cached: usize,
    rng: StdRng,
    done: Option<Finish>,
    soft: Option<SoftStop>,
    min_new: usize,
    temperature: f32,
    top_p: f32,
    top_k: usize,
    no_repeat: usize,
    /// Byte offset in the decoded text from which the soft stop is looked for, and where it cut.
    soft_from: Option<usize>,
    cut_at: Option<usize>,
    guard: Option<Arc<NumberGuard>>,
    names: Option<Arc<NameGuard>>,
    leaks: Option<Arc<LeakGuard>>,
    qa: Option<Arc<QaFormat>>,
    /// Tokens written for the model (a Q&A's labels), next first.
    forced: VecDeque<u32>,
    /// The current line of the text so far, for the guards.
    line: String,
    guarded: u32,
    names_guarded: u32,
    stop: Vec<String>,
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

    /// Queues a prompt; returns its index, which its [`Completion`] carries.
    pub fn push(&mut self, p: Prompt) -> usize {
        self.pushed += 1;
        self.pending.push_back((self.pushed - 1, p));
        self.pushed - 1
    }

    /// Prompts queued or being decoded.
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.rows.len()
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.rows.is_empty()
    }

    /// The sequences being decoded: their index and the tokens generated so far (a server
    /// streams them).
    pub fn live(&self) -> impl Iterator<Item = (usize, &[u32])> {
        self.rows.iter().map(|r| (r.index, r.generated.as_slice()))
    }

    /// One round: join waiting prompts into free slots, emit finished rows, decode one token.
    pub fn step(&mut self, dec: &mut Decoder, done: &mut impl FnMut(Completion)) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        let batch = cfg.batch_size.max(1);
        let kv = self.kv.get_or_insert_with(|| Kv::new(dec, cfg.prefix_cache_mb << 20));
        let rows = &mut self.rows;
        // Join: prefill waiting prompts into free slots.
        let mut fresh: Vec<(usize, Prompt)> = Vec::new();
        while rows.len() + fresh.len() < batch {
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
                }),
                Some(p) => fresh.push(p),
                None => break,
            }
        }
        let joined = !fresh.is_empty();
        if joined {
            let t0 = Instant::now();
            let n = fresh.len();
            let cached: Vec<usize> = rows.iter().map(|r| r.cached).collect();
            // Prompts with a cached prefix last, grouped by the tokens left to run (`Kv::prefill`).
            fresh.sort_by_cached_key(|(_, p)| {
                let reused = kv.reusable(&p.ids);
                (reused > 0, p.ids.len() - reused)
            });
            let prompts: Vec<&[u32]> = fresh.iter().map(|(_, p)| p.ids.as_slice()).collect();
            let (mut logits, reused) = kv.prefill(dec, &cached, &prompts)?;
            self.timing.reused_tokens += reused as u64;
            self.timing.prefill_tokens += prompts.iter().map(|p| p.len() as u64).sum::<u64>() - reused as u64;
            self.timing.prefill_s += t0.elapsed().as_secs_f64();
            let v = logits.len() / n;
            for (j, (index, p)) in fresh.into_iter().enumerate() {
                let seed = p.seed.unwrap_or(index as u64);
                let mut row = Row {
                    index,
                    max_new: p.max_new_tokens.unwrap_or(cfg.max_new_tokens),
                    id: p.id,
                    prompt_len: p.ids.len(),
                    generated: vec![],
                    cached: p.ids.len(),
                    rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
                    done: None,
                    soft: p.soft_stop,
                    min_new: p.min_new_tokens,
                    temperature: p.temperature.unwrap_or(cfg.temperature),
                    top_p: p.top_p.unwrap_or(cfg.top_p),
                    top_k: p.top_k.unwrap_or(cfg.top_k),
                    no_repeat: p.no_repeat_ngram.unwrap_or(cfg.no_repeat_ngram),
                    soft_from: None,
                    cut_at: None,
                    guard: p.numbers,
                    names: p.names,
                    leaks: p.leaks,
                    qa: p
                        .qa_format
                        .then(|| self.qa.get_or_insert_with(|| Arc::new(QaFormat::new(&dec.tokenizer))).clone()),
                    forced: VecDeque::new(),
                    line: p.continues.rsplit('\n').next().unwrap_or("").to_string(),
                    guarded: 0,
                    names_guarded: 0,
                    stop: p.stop,
                };
                let t = pick(dec, &mut row, &mut logits[j * v..(j + 1) * v], cfg);
                push_token(dec, &mut row, t, cfg);
                rows.push(row);
            }
        }
        // Leave: emit finished rows.
        if joined || rows.iter().any(|r| r.done.is_some()) {
            let cached: Vec<usize> = rows.iter().map(|r| r.cached).collect();
            let keep: Vec<bool> = rows.iter().map(|r| r.done.is_none()).collect();
            let order = kv.retire(dec, &cached, &keep)?;
            let mut slots: Vec<Option<Row>> = rows.drain(..).map(Some).collect();
            for r in slots.iter_mut().filter(|r| r.as_ref().is_some_and(|r| r.done.is_some())) {
                let r = r.take().expect("a finished row");
                let finish = r.done.expect("finished");
                done(completion(dec, r, finish, cfg));
            }
            rows.extend(order.into_iter().map(|i| slots[i].take().expect("a kept row")));
        }
        if rows.is_empty() {
            return Ok(());
        }
        // Step: feed each row's last token.
        let t0 = Instant::now();
        let last: Vec<u32> = rows.iter().map(|r| *r.generated.last().expect("a live row has a token")).collect();
        let cached: Vec<usize> = rows.iter().map(|r| r.cached).collect();
        let mut logits = kv.step(dec, &last, &cached)?;
        let v = logits.len() / rows.len();
        let t1 = Instant::now();
        for (j, r) in rows.iter_mut().enumerate() {
            r.cached += 1;
            let t = pick(dec, r, &mut logits[j * v..(j + 1) * v], cfg);
            push_token(dec, r, t, cfg);
        }
        self.timing.select_s += t1.elapsed().as_secs_f64();
        self.timing.decode_tokens += rows.len() as u64;
        self.timing.decode_s += t0.elapsed().as_secs_f64();
        Ok(())
    }
}

/// The row's next token: one written for the model if any, else the model's choice, which a
/// Q&A's format may replace with its next label.
fn pick(dec: &Decoder, r: &mut Row, logits: &mut [f32], cfg: &GenerationConfig) -> u32 {
    if let Some(t) = r.forced.pop_front() {
        return t;
    }
    let t = choose(dec, r, logits, cfg);
    if let Some(qa) = r.qa.clone() {
        let end = !cfg.ignore_eos && dec.eos.contains(&t);
        let piece = (!end).then(|| dec.token_table().text[t as usize].as_str());
        if let Some(ids) = qa.replace(&dec.tokenizer, &r.line, piece) {
            r.forced = ids.into();
            return r.forced.pop_front().unwrap_or(t);
        }
    }
    t
}

/// The model's choice: minimum length, repeated n-grams and the guards first, then the sampler.
fn choose(dec: &Decoder, r: &mut Row, logits: &mut [f32], cfg: &GenerationConfig) -> u32 {
    hold_eos(dec, r, logits);
    let blocked = block_repeats(logits, &r.generated, r.no_repeat);
    if let Some(leaks) = &r.leaks {
        leaks.mask(&r.generated, logits, argmax(logits));
    }
    if let Some(guard) = &r.guard {
        let eos = if cfg.ignore_eos { &[][..] } else { &dec.eos[..] };
        let table = dec.token_table();
        let best = argmax(logits);
        if !table.mask(guard, &r.line, eos, logits) {
            // Repeat blocking took every number the source allows here (a long figure written
            // twice is a repeated n-gram): copying a source figure again is not a loop.
            blocked.iter().for_each(|&(t, x)| logits[t] = x);
            if !table.mask(guard, &r.line, eos, logits) {
                // No source number fits even so: the guard stands aside, repeat blocking stays.
                blocked.iter().for_each(|&(t, _)| logits[t] = f32::NEG_INFINITY);
            }
        }
        if !logits[best].is_finite() {
            r.guarded += 1;
        }
    }
    if let Some(names) = r.names.clone() {
        let best = argmax(logits);
        let table = dec.token_table();
        let best_ok = logits[best].is_finite() && table.allows_name(&names, &r.line, best);
        if r.temperature <= 0.0 && best_ok {
            // A greedy choice the guard allows stays the choice after masking: skip the scan of
            // the vocabulary, which otherwise dominates a step's token choice.
            return best as u32;
        }
        if r.temperature > 0.0
            && r.top_p >= 1.0
            && r.top_k == 0
            && let Some(t) = draw_named(dec, r, &names, logits)
        {
            r.names_guarded += u32::from(!best_ok);
            return t;
        }
        if table.mask_names(&names, &r.line, logits) && !logits[best].is_finite() {
            r.names_guarded += 1;
        }
    }
    draw(logits, r.top_k, r.top_p, r.temperature, &mut r.rng)
}

/// Samples a token the name guard allows by drawing and striking out forbidden draws, instead
/// of checking the whole vocabulary first: without top-k or nucleus truncation this is the same
/// distribution, the model's restricted to the allowed tokens. `None` (logits as they were)
/// when every token is forbidden or too many draws are, for the caller to mask as usual.
fn draw_named(dec: &Decoder, r: &mut Row, names: &NameGuard, logits: &mut [f32]) -> Option<u32> {
    let table = dec.token_table();
    let mut struck: Vec<(usize, f32)> = Vec::new();
    for _ in 0..32 {
        let t = draw(logits, 0, 1.0, r.temperature, &mut r.rng) as usize;
        if !logits[t].is_finite() {
            break;
        }
        if table.allows_name(names, &r.line, t) {
            return Some(t as u32);
        }
        struck.push((t, logits[t]));
        logits[t] = f32::NEG_INFINITY;
    }
    struck.into_iter().for_each(|(t, x)| logits[t] = x);
    None
}

/// Forbids end-of-sequence tokens while a row is under its minimum length.
fn hold_eos(dec: &Decoder, r: &Row, logits: &mut [f32]) {
    if r.generated.len() < r.min_new {
        for &e in &dec.eos {
            if let Some(x) = logits.get_mut(e as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}

fn push_token(dec: &Decoder, r: &mut Row, t: u32, cfg: &GenerationConfig) {
    if !cfg.ignore_eos && dec.eos.contains(&t) {
        r.done = Some(Finish::Eos);
        return;
    }
    r.generated.push(t);
    if r.guard.is_some() || r.names.is_some() || r.qa.is_some() {
        let piece = &dec.token_table().text[t as usize];
        match piece.rfind('\n') {
            Some(i) => r.line = piece[i + 1..].to_string(),
            None => r.line.push_str(piece),
        }
    }
    if let Some(soft) = r.soft.as_ref().filter(|s| r.generated.len() >= s.after_tokens && !s.at.is_empty()) {
        let text = dec.tokenizer.decode(&r.generated, true).unwrap_or_default();
        let from = *r.soft_from.get_or_insert(text.len());
        let from = (0..=from.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        if let Some(p) = text[from..].find(soft.at.as_str()) {
            r.cut_at = Some(from + p);
            r.done = Some(Finish::Stop);
            return;
        }
    }
    if !cfg.stop.is_empty() || !r.stop.is_empty() {
        let text = dec.tokenizer.decode(&r.generated, true).unwrap_or_default();
        if cfg.stop.iter().chain(&r.stop).any(|s| text.contains(s.as_str())) {
            r.done = Some(Finish::Stop);
            return;
        }
    }
    if r.generated.len() >= r.max_new {
        r.done = Some(Finish::Length);
    }
}

fn completion(dec: &Decoder, r: Row, finish: Finish, cfg: &GenerationConfig) -> Completion {
    let mut text = dec.tokenizer.decode(&r.generated, true).unwrap_or_default();
    if let Some(cut) = cfg.stop.iter().chain(&r.stop).filter_map(|s| text.find(s.as_str())).chain(r.cut_at).min() {
        text.truncate(cut);
    }
    Completion {
        id: r.id,
        index: r.index,
        token_ids: r.generated,
        text,
        finish,
        prompt_tokens: r.prompt_len,
        guarded: r.guarded,
        names_guarded: r.names_guarded,
    }
}
