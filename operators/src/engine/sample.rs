//! Sampling the next token: repeat blocking, greedy, top-k and nucleus sampling.

use rand::Rng;
use rand::rngs::StdRng;

pub(super) fn argmax(l: &[f32]) -> usize {
    l.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
}

/// Greedy or top-k/top-p sampling over the tokens left unmasked.
pub(super) fn draw(logits: &[f32], top_k: usize, top_p: f32, temperature: f32, rng: &mut StdRng) -> u32 {
    if temperature <= 0.0 {
        return argmax(logits) as u32;
    }
    let mut cand: Vec<(usize, f32)> =
        logits.iter().map(|&v| v / temperature).enumerate().filter(|(_, v)| v.is_finite()).collect();
    if cand.is_empty() {
        // Everything is masked: nothing to sample from, so take the first token as greedy does.
        return argmax(logits) as u32;
    }
    cand.sort_by(|a, b| b.1.total_cmp(&a.1));
    if top_k > 0 {
        cand.truncate(top_k);
    }
    let max = cand.first().map_or(0.0, |c| c.1);
    let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let sum: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    if top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs.iter().position(|p| {
            acc += p;
            acc >= top_p
        });
        let keep = keep.map_or(probs.len(), |k| k + 1);
        probs.truncate(keep);
        let s: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= s);
    }
    let mut r: f32 = rng.random();
    for (i, p) in probs.iter().enumerate() {
        r -= p;
        if r <= 0.0 {
            return cand[i].0 as u32;
        }
    }
    cand[probs.len() - 1].0 as u32
}

/// Forbids the tokens that would repeat an `n`-gram of `generated` (0: off); returns what it
/// masked, with the old values.
pub(super) fn block_repeats(logits: &mut [f32], generated: &[u32], n: usize) -> Vec<(usize, f32)> {
    let mut blocked = Vec::new();
    if n > 0 && generated.len() >= n {
        let prefix = &generated[generated.len() - (n - 1)..];
        for i in 0..=generated.len() - n {
            let t = generated[i + n - 1] as usize;
            if &generated[i..i + n - 1] == prefix && logits[t].is_finite() {
                blocked.push((t, logits[t]));
                logits[t] = f32::NEG_INFINITY;
            }
        }
    }
    blocked
}
