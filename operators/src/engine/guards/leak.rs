//! Leak-constrained decoding: a generation may not copy its prompt's worked examples.
//!
//! A small model shown a worked example sometimes writes the example's sentences into its own
//! answer ("It should open next spring" in a rewrite about an election); the leak gate rejects
//! such answers after the fact, and each costs a retry. A [`LeakGuard`] prevents them instead:
//! a token that would complete an n-gram of the examples' tokens is masked, unless the source
//! has that n-gram too (copying the source is the task). N-grams holding the format's labels
//! ("Question", "Answer") are structure and stay allowed, as for the gate.

use std::collections::{HashMap, HashSet};

use tokenizers::Tokenizer;

/// Tokens per banned n-gram: a word 5-gram, the leak gate's unit, spans at least five tokens.
pub const LEAK_TOKENS: usize = 5;

/// The token n-grams one generation may not complete.
#[derive(Clone, Debug, Default)]
pub struct LeakGuard {
    n: usize,
    /// The first n−1 tokens of each banned n-gram → the tokens that would complete it.
    banned: HashMap<Vec<u32>, Vec<u32>>,
}

impl LeakGuard {
    /// Bans the `n`-grams of `examples` (as `tokenizer` splits them) that `source` lacks.
    pub fn new(tokenizer: &Tokenizer, examples: &[String], source: &str, n: usize) -> Self {
        let n = n.max(1);
        let ids = |t: &str| tokenizer.encode(t, false).map(|e| e.get_ids().to_vec()).unwrap_or_default();
        let own: HashSet<Vec<u32>> = ids(source).windows(n).map(<[u32]>::to_vec).collect();
        let mut banned: HashMap<Vec<u32>, Vec<u32>> = HashMap::new();
        for example in examples {
            for w in ids(example).windows(n) {
                let text = tokenizer.decode(w, true).unwrap_or_default().to_lowercase();
                if own.contains(w) || text.contains("question") || text.contains("answer") {
                    continue;
                }
                let next = banned.entry(w[..n - 1].to_vec()).or_default();
                if !next.contains(&w[n - 1]) {
                    next.push(w[n - 1]);
                }
            }
        }
        LeakGuard { n, banned }
    }

    /// Whether nothing is banned.
    pub fn is_empty(&self) -> bool {
        self.banned.is_empty()
    }

    /// Masks (sets to −∞) the tokens that would complete a banned n-gram after `generated`,
    /// unless that would leave no token at all; returns whether the model's best token was one.
    pub fn mask(&self, generated: &[u32], logits: &mut [f32], best: usize) -> bool {
        let Some(tail) = generated.len().checked_sub(self.n - 1).map(|at| &generated[at..]) else { return false };
        let Some(next) = self.banned.get(tail) else { return false };
        let open = |l: &[f32]| l.iter().enumerate().any(|(i, x)| x.is_finite() && !next.contains(&(i as u32)));
        if !open(logits) {
            return false;
        }
        for &t in next {
            if let Some(x) = logits.get_mut(t as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
        next.contains(&(best as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer: one token per word, so n-grams are easy to write down.
    fn words() -> Tokenizer {
        let vocab = ["the", "library", "should", "open", "next", "spring", "question", "vote", "is", "in", "."];
        let vocab: String =
            vocab.iter().enumerate().map(|(i, w)| format!("\"{w}\": {i}")).collect::<Vec<_>>().join(", ");
        let json = format!(
            r#"{{"version": "1.0", "model": {{"type": "WordLevel", "vocab": {{{vocab}, "[UNK]": 11}}, "unk_token": "[UNK]"}},
            "pre_tokenizer": {{"type": "Whitespace"}}, "decoder": null}}"#
        );
        Tokenizer::from_bytes(json.as_bytes()).unwrap()
    }

    #[test]
    fn an_examples_ngram_is_banned_unless_the_source_has_it() {
        let t = words();
        let examples = vec!["the library should open next spring".to_string()];
        let g = LeakGuard::new(&t, &examples, "the vote is in spring", 3);
        let mut logits = vec![0.0f32; 12];
        // "should open" → "next" would complete "should open next".
        assert!(g.mask(&[2, 3], &mut logits, 4));
        assert!(logits[4].is_infinite() && logits[5].is_finite());
        let g = LeakGuard::new(&t, &examples, "the library should open in spring", 3);
        let mut logits = vec![0.0f32; 12];
        assert!(!g.mask(&[0, 1], &mut logits, 2), "the source says \"the library should\"");
        assert!(logits.iter().all(|x| x.is_finite()));
        assert!(g.mask(&[2, 3], &mut logits, 4), "but not \"should open next\"");
    }

    #[test]
    fn format_labels_stay_allowed_and_a_full_mask_is_not_applied() {
        let t = words();
        let g = LeakGuard::new(&t, &["question the library is".to_string()], "", 2);
        let mut logits = vec![0.0f32; 12];
        assert!(!g.mask(&[6], &mut logits, 0), "\"question the\" holds a label");
        assert!(g.mask(&[0], &mut logits, 1), "\"the library\" does not");
        let mut only = vec![f32::NEG_INFINITY; 12];
        only[1] = 0.0;
        assert!(!g.mask(&[0], &mut only, 1) && only[1].is_finite(), "the only token left stays");
    }
}
