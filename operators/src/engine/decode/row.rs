//! One sequence being decoded: its sampling settings and guards, how it chooses its next token
//! from the logits, and when it ends.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::decode::decoder::Decoder;
use crate::engine::decode::prompt::{AnswerCheck, Completion, Finish, GenerationConfig, Prompt, SoftStop};
use crate::engine::decode::sample::{argmax, block_repeats, draw};
use crate::engine::guards::constrain::NumberGuard;
use crate::engine::guards::leak::LeakGuard;
use crate::engine::guards::names::NameGuard;
use crate::engine::guards::qa::QaFormat;

pub(super) struct Row {
    pub index: usize,
    max_new: usize,
    id: String,
    prompt_len: usize,
    pub generated: Vec<u32>,
    /// Real tokens in the cache for this row.
    pub cached: usize,
    rng: StdRng,
    pub done: Option<Finish>,
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
    /// With `qa`: the least answered pairs before the text may end, and the pairs answered on
    /// lines already ended.
    min_pairs: usize,
    answered: usize,
    /// Tokens written for the model (a Q&A's labels), next first.
    forced: VecDeque<u32>,
    /// The current line of the text so far, for the guards.
    line: String,
    guarded: u32,
    names_guarded: u32,
    stop: Vec<String>,
    /// A shadow row (context-aware decoding, the `contrast` module): its row's prompt without the source,
    /// fed its row's tokens; it chooses nothing and is never handed back.
    pub shadow: bool,
    /// The weight of this row's shadow's logits (context-aware decoding; 0 without a shadow).
    pub context_weight: f32,
    check: Option<AnswerCheck>,
    ends: SentenceEnds,
    checked_out: bool,
}

impl Row {
    /// The row of prompt `index`, its settings from `p` where given, else from `cfg`; `qa` is
    /// the Q&A format when `p` asks for it.
    pub fn new(index: usize, p: Prompt, cfg: &GenerationConfig, qa: Option<Arc<QaFormat>>) -> Row {
        let seed = p.seed.unwrap_or(index as u64);
        Row {
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
            min_pairs: p.qa_min_pairs,
            answered: 0,
            qa,
            forced: VecDeque::new(),
            line: p.continues.rsplit('\n').next().unwrap_or("").to_string(),
            guarded: 0,
            names_guarded: 0,
            stop: p.stop,
            shadow: false,
            context_weight: p.context_weight,
            check: p.check,
            ends: SentenceEnds::default(),
            checked_out: false,
        }
    }

    /// The shadow of prompt `index`: `ids`, the prompt without its source.
    pub fn shadow(index: usize, ids: Vec<u32>, cfg: &GenerationConfig) -> Row {
        Row { shadow: true, context_weight: 0.0, ..Row::new(index, Prompt { ids, ..Default::default() }, cfg, None) }
    }

    /// Chooses the next token from `logits` (modified in place) and appends it.
    pub fn advance(&mut self, dec: &Decoder, logits: &mut [f32], cfg: &GenerationConfig) {
        let t = self.pick(dec, logits, cfg);
        self.push_token(dec, t, cfg);
    }

    /// The next token: one written for the model if any, else the model's choice, which a Q&A's
    /// format may replace with its next label.
    fn pick(&mut self, dec: &Decoder, logits: &mut [f32], cfg: &GenerationConfig) -> u32 {
        if let Some(t) = self.forced.pop_front() {
            return t;
        }
        let t = self.choose(dec, logits, cfg);
        if let Some(qa) = self.qa.clone() {
            let end = !cfg.ignore_eos && dec.eos.contains(&t);
            let piece = (!end).then(|| dec.token_table().text[t as usize].as_str());
            if let Some(ids) = qa.replace(&dec.tokenizer, &self.line, piece) {
                self.forced = ids.into();
                return self.forced.pop_front().unwrap_or(t);
            }
        }
        t
    }

    /// The model's choice: minimum length, repeated n-grams and the guards first, then the sampler.
    fn choose(&mut self, dec: &Decoder, logits: &mut [f32], cfg: &GenerationConfig) -> u32 {
        self.hold_eos(dec, logits);
        let blocked = block_repeats(logits, &self.generated, self.no_repeat);
        if let Some(leaks) = &self.leaks {
            leaks.mask(&self.generated, logits, argmax(logits));
        }
        if let Some(guard) = &self.guard {
            let eos = if cfg.ignore_eos { &[][..] } else { &dec.eos[..] };
            let table = dec.token_table();
            let best = argmax(logits);
            if !table.mask(guard, &self.line, eos, logits) {
                // Repeat blocking took every number the source allows here (a long figure written
                // twice is a repeated n-gram): copying a source figure again is not a loop.
                blocked.iter().for_each(|&(t, x)| logits[t] = x);
                if !table.mask(guard, &self.line, eos, logits) {
                    // No source number fits even so: the guard stands aside, repeat blocking stays.
                    blocked.iter().for_each(|&(t, _)| logits[t] = f32::NEG_INFINITY);
                }
            }
            if !logits[best].is_finite() {
                self.guarded += 1;
            }
        }
        if let Some(names) = self.names.clone() {
            let best = argmax(logits);
            let table = dec.token_table();
            let best_ok = logits[best].is_finite() && table.allows_name(&names, &self.line, best);
            if self.temperature <= 0.0 && best_ok {
                // A greedy choice the guard allows stays the choice after masking: skip the scan
                // of the vocabulary, which otherwise dominates a step's token choice.
                return best as u32;
            }
            if self.temperature > 0.0
                && self.top_p >= 1.0
                && self.top_k == 0
                && let Some(t) = self.draw_named(dec, &names, logits)
            {
                self.names_guarded += u32::from(!best_ok);
                return t;
            }
            if table.mask_names(&names, &self.line, logits) && !logits[best].is_finite() {
                self.names_guarded += 1;
            }
        }
        draw(logits, self.top_k, self.top_p, self.temperature, &mut self.rng)
    }

    /// Samples a token the name guard allows by drawing and striking out forbidden draws,
    /// instead of checking the whole vocabulary first: without top-k or nucleus truncation this
    /// is the same distribution, the model's restricted to the allowed tokens. `None` (logits as
    /// they were) when every token is forbidden or too many draws are, for the caller to mask.
    fn draw_named(&mut self, dec: &Decoder, names: &NameGuard, logits: &mut [f32]) -> Option<u32> {
        let table = dec.token_table();
        let mut struck: Vec<(usize, f32)> = Vec::new();
        for _ in 0..32 {
            let t = draw(logits, 0, 1.0, self.temperature, &mut self.rng) as usize;
            if !logits[t].is_finite() {
                break;
            }
            if table.allows_name(names, &self.line, t) {
                return Some(t as u32);
            }
            struck.push((t, logits[t]));
            logits[t] = f32::NEG_INFINITY;
        }
        struck.into_iter().for_each(|(t, x)| logits[t] = x);
        None
    }

    /// Whether a Q&A still lacks answered pairs (the current line's answer counted), so that it
    /// may not end yet.
    fn pairs_short(&self) -> bool {
        self.qa.is_some() && self.answered + usize::from(QaFormat::answered(&self.line)) < self.min_pairs
    }

    /// Forbids end-of-sequence tokens while the row is under its minimum length or pairs.
    fn hold_eos(&self, dec: &Decoder, logits: &mut [f32]) {
        if self.generated.len() < self.min_new || self.pairs_short() {
            for &e in &dec.eos {
                if let Some(x) = logits.get_mut(e as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Appends `t` and decides whether the row is done: end of sequence, a stop string, the
    /// soft stop, or its length.
    fn push_token(&mut self, dec: &Decoder, t: u32, cfg: &GenerationConfig) {
        if !cfg.ignore_eos && dec.eos.contains(&t) {
            self.done = Some(Finish::Eos);
            return;
        }
        self.generated.push(t);
        if self.guard.is_some() || self.names.is_some() || self.qa.is_some() {
            let piece = &dec.token_table().text[t as usize];
            match piece.find('\n') {
                Some(i) => {
                    self.line.push_str(&piece[..i]);
                    self.answered += usize::from(self.qa.is_some() && QaFormat::answered(&self.line));
                    self.line = piece[piece.rfind('\n').unwrap_or(i) + 1..].to_string();
                }
                None => self.line.push_str(piece),
            }
        }
        let soft_due = |s: &&SoftStop| self.generated.len() >= s.after_tokens && !s.at.is_empty();
        if let Some(soft) = self.soft.as_ref().filter(soft_due).filter(|_| !self.pairs_short()) {
            let text = dec.tokenizer.decode(&self.generated, true).unwrap_or_default();
            let from = *self.soft_from.get_or_insert(text.len());
            let from = (0..=from.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            if let Some(p) = text[from..].find(soft.at.as_str()) {
                self.cut_at = Some(from + p);
                self.done = Some(Finish::Stop);
                return;
            }
        }
        if self.sentence_fails(dec) {
            return;
        }
        if !cfg.stop.is_empty() || !self.stop.is_empty() {
            let text = dec.tokenizer.decode(&self.generated, true).unwrap_or_default();
            if cfg.stop.iter().chain(&self.stop).any(|s| text.contains(s.as_str())) {
                self.done = Some(Finish::Stop);
                return;
            }
        }
        if self.generated.len() >= self.max_new {
            self.done = Some(Finish::Length);
        }
    }

    /// Runs the prompt's [`AnswerCheck`] on the text up to a sentence's end once the next
    /// sentence or line starts ([`SentenceEnds`]); a failing text ends the row there.
    fn sentence_fails(&mut self, dec: &Decoder) -> bool {
        let Some(check) = &self.check else { return false };
        let piece = &dec.token_table().text[*self.generated.last().expect("a token was pushed") as usize];
        let Some(n) = self.ends.push(piece, self.generated.len()) else { return false };
        let text = dec.tokenizer.decode(&self.generated[..n], true).unwrap_or_default();
        if !(check.0)(&text) {
            return false;
        }
        (self.cut_at, self.done, self.checked_out) = (Some(text.len()), Some(Finish::Stop), true);
        true
    }

    /// The finished row as its caller sees it: text decoded and cut at a stop.
    pub fn completion(self, dec: &Decoder, finish: Finish, cfg: &GenerationConfig) -> Completion {
        let mut text = dec.tokenizer.decode(&self.generated, true).unwrap_or_default();
        let cuts = cfg.stop.iter().chain(&self.stop).filter_map(|s| text.find(s.as_str()));
        if let Some(cut) = cuts.chain(self.cut_at).min() {
            text.truncate(cut);
        }
        Completion {
            id: self.id,
            index: self.index,
            token_ids: self.generated,
            text,
            finish,
            prompt_tokens: self.prompt_len,
            guarded: self.guarded,
            names_guarded: self.names_guarded,
            checked_out: self.checked_out,
        }
    }
}

/// Where the sentences of a generated text end, read token by token: a token ending in `.`,
/// `!` or `?` (closing quotes and brackets aside) ends a sentence when whitespace follows and
/// then a line break, a capital or a digit ("in 1961. It", "end.\n\nNext"; not "3.5",
/// "e.g. the").
#[derive(Debug, Default)]
pub(super) struct SentenceEnds {
    /// Tokens up to the last candidate end, and whether whitespace, a line break among it,
    /// followed it so far.
    end: Option<usize>,
    space: bool,
    newline: bool,
}

impl SentenceEnds {
    /// Takes the `n`th token's text; returns the token count at a sentence's end when this token
    /// starts the next sentence.
    pub(super) fn push(&mut self, piece: &str, n: usize) -> Option<usize> {
        let content = piece.trim();
        let mut found = None;
        if let Some(end) = self.end {
            let lead = &piece[..piece.len() - piece.trim_start().len()];
            (self.space, self.newline) = (self.space || !lead.is_empty(), self.newline || lead.contains('\n'));
            if let Some(c) = content.chars().next() {
                let starts = self.newline || c.is_uppercase() || c.is_ascii_digit();
                found = (self.space && starts).then_some(end);
                self.end = None;
            }
        }
        if content.trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}']).ends_with(['.', '!', '?']) {
            let trail = &piece[piece.trim_end().len()..];
            (self.end, self.space, self.newline) = (Some(n), !trail.is_empty(), trail.contains('\n'));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::SentenceEnds;

    /// The token counts at which each token of `pieces` reports a sentence end.
    fn ends(pieces: &[&str]) -> Vec<(usize, usize)> {
        let mut e = SentenceEnds::default();
        pieces.iter().enumerate().filter_map(|(i, p)| e.push(p, i + 1).map(|n| (i, n))).collect()
    }

    #[test]
    fn a_sentence_ends_where_whitespace_and_a_new_sentence_or_line_follow() {
        assert_eq!(ends(&["The", " dam", ".", " It", " holds"]), [(3, 3)]);
        assert_eq!(ends(&["It", " opened", ".", " ", "The", " end", "!"]), [(4, 3)], "a space token of its own");
        assert_eq!(ends(&["Done", ".\n\n", "next", " one", "?\"", "\n", "- a"]), [(2, 2), (6, 5)], "line breaks");
        assert_eq!(ends(&["It", " cost", " 3", ".", "5", " million", "."]), [], "a decimal point");
        assert_eq!(ends(&["See", " e", ".", "g", ".", " the", " list"]), [], "lower case goes on");
        assert_eq!(ends(&["In", " 1961", ".", " 2", " dams", " (", "new", ").", " They"]), [(3, 3), (8, 8)]);
    }
}
