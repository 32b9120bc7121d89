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
    let cand: Vec<(usize, f32)> =
        logits.iter().map(|&v| v / temperature).enumerate().filter(|(_, v)| v.is_finite()).collect();
    if cand.is_empty() {
        // Everything is masked: nothing to sample from, so take the first token as greedy does.
        return argmax(logits) as u32;
    }
    let r: f32 = rng.random();
    // Sorting the whole vocabulary at every sampled step cost more than the model's step. A
    // token 18 or more below the best weighs under 2^-25 of it: added after the heavier ones,
    // it cannot change the f32 sums below, so the head alone decides, with the same result,
    // unless the walk runs past it (then the whole vocabulary is sorted, as before).
    let max = cand.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1));
    let mut head: Vec<(usize, f32)> = cand.iter().copied().filter(|c| c.1 >= max - 18.0).collect();
    let complete = head.len() == cand.len();
    head.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(t) = walk(&head, top_k, top_p, r, complete) {
        return t;
    }
    let mut cand = cand;
    cand.sort_by(|a, b| b.1.total_cmp(&a.1));
    walk(&cand, top_k, top_p, r, true).expect("a walk over every token ends")
}

/// Top-k, then nucleus truncation of `cand` (sorted, most likely first), then the token where
/// `r` falls. `None` when `cand` is only the head of the candidates and the answer may lie
/// beyond it.
fn walk(cand: &[(usize, f32)], top_k: usize, top_p: f32, mut r: f32, complete: bool) -> Option<u32> {
    let cand = if top_k > 0 { &cand[..top_k.min(cand.len())] } else { cand };
    let max = cand.first().map_or(0.0, |c| c.1);
    let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let sum: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    let mut truncated = false;
    if top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs.iter().position(|p| {
            acc += p;
            acc >= top_p
        });
        match keep {
            Some(k) => {
                truncated = true;
                probs.truncate(k + 1);
            }
            None if !complete => return None,
            None => {}
        }
        let s: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= s);
    }
    for (i, p) in probs.iter().enumerate() {
        r -= p;
        if r <= 0.0 {
            return Some(cand[i].0 as u32);
        }
    }
    (complete || truncated).then(|| cand[probs.len() - 1].0 as u32)
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// The sampler before the head-only sort: the whole vocabulary sorted at every step.
    fn full_sort(logits: &[f32], top_k: usize, top_p: f32, temperature: f32, rng: &mut StdRng) -> u32 {
        let mut cand: Vec<(usize, f32)> =
            logits.iter().map(|&v| v / temperature).enumerate().filter(|(_, v)| v.is_finite()).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        walk(&cand, top_k, top_p, rng.random(), true).unwrap()
    }

    #[test]
    fn sorting_the_head_draws_what_sorting_everything_draws() {
        let mut src = StdRng::seed_from_u64(7);
        for case in 0..300u64 {
            // Wide and narrow logit ranges, ties, and masked tokens.
            let spread = [8.0, 80.0, 240.0][case as usize % 3];
            let mut logits: Vec<f32> = (0..4000).map(|_| (src.random::<f32>() * spread).round() / 4.0).collect();
            logits.iter_mut().step_by(7).for_each(|x| *x = f32::NEG_INFINITY);
            let (top_k, top_p) = [(0, 1.0), (0, 0.9), (40, 1.0), (5000, 1.0), (50, 0.95)][case as usize % 5];
            let temperature = [0.3, 0.7, 1.5][case as usize % 3];
            let (mut a, mut b) = (StdRng::seed_from_u64(case), StdRng::seed_from_u64(case));
            assert_eq!(
                draw(&logits, top_k, top_p, temperature, &mut a),
                full_sort(&logits, top_k, top_p, temperature, &mut b),
                "case {case}"
            );
        }
    }
}
