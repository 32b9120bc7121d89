//! Teacher-forced scoring: how likely a language model finds a given text after a context, token
//! by token. The grounding score reads a rewrite's claims with and without their source this
//! way (how much likelier the source makes each token), in the manner of pointwise-mutual-
//! information hallucination detectors.

use serde::{Deserialize, Serialize};

use crate::engine::decode::decoder::Decoder;
use crate::engine::decode::kv::Kv;
use crate::fidelity::sentences::claims;

/// The natural-log probability of each token of `continuation` after `context`, for each
/// `(context, continuation)` row; rows are run together as one batch.
pub fn continuation_logprobs(dec: &mut Decoder, rows: &[(Vec<u32>, Vec<u32>)]) -> anyhow::Result<Vec<Vec<f32>>> {
    anyhow::ensure!(rows.iter().all(|(c, _)| !c.is_empty()), "every context needs a token");
    let mut kv = Kv::new(dec, 0);
    let prompts: Vec<&[u32]> = rows.iter().map(|(c, _)| c.as_slice()).collect();
    let (mut logits, _) = kv.prefill(dec, &[], &prompts, &vec![None; rows.len()])?;
    let mut cached: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
    let order = kv.retire(dec, &cached, &vec![true; rows.len()])?;
    anyhow::ensure!(order.iter().enumerate().all(|(i, &o)| i == o), "rows kept in order");
    let longest = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let mut out: Vec<Vec<f32>> = rows.iter().map(|(_, c)| Vec::with_capacity(c.len())).collect();
    for t in 0..longest {
        let v = logits.len() / rows.len();
        let mut last = Vec::with_capacity(rows.len());
        for (i, (_, cont)) in rows.iter().enumerate() {
            let row = &logits[i * v..(i + 1) * v];
            match cont.get(t) {
                Some(&id) => {
                    out[i].push(log_softmax_at(row, id as usize));
                    last.push(id);
                }
                // A finished row idles on its end token; its scores are not read.
                None => last.push(dec.eos[0]),
            }
        }
        if t + 1 == longest {
            break;
        }
        logits = kv.step(dec, &last, &cached)?;
        cached.iter_mut().for_each(|c| *c += 1);
    }
    Ok(out)
}

fn log_softmax_at(logits: &[f32], id: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    logits.get(id).map_or(f32::NEG_INFINITY, |&x| x - max - sum.ln())
}

/// How a language model reads one claim (a sentence of a rewrite) with its source before it
/// and without: per token, the log-probability given the source and its gain over the
/// probability without (pointwise mutual information).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClaimScore {
    pub claim: String,
    pub tokens: usize,
    /// Mean log-probability of the claim's tokens given the source.
    pub mean_with: f32,
    /// Mean gain of log-probability that the source brings.
    pub mean_gain: f32,
    /// Share of the claim's tokens that stay unlikely with the source (log-probability below
    /// −6) and that the source makes no likelier: what the source does not say.
    pub unsupported_share: f32,
    /// The lowest mean gain over any three consecutive tokens.
    pub min_gain3: f32,
}

/// The context a claim is read after: its source, or nothing.
fn context(source: Option<&str>) -> String {
    match source {
        Some(s) => format!("Text: {s}\nThe same text in other words: "),
        None => "The same text in other words: ".to_string(),
    }
}

/// The grounding of each claim of `rewrite` in `source`, as `dec` reads it.
pub fn lm_grounding(dec: &mut Decoder, source: &str, rewrite: &str) -> anyhow::Result<Vec<ClaimScore>> {
    let claims = claims(rewrite);
    if claims.is_empty() {
        return Ok(vec![]);
    }
    let with = dec.encode_prompt(&context(Some(source)))?;
    let without = dec.encode_prompt(&context(None))?;
    let mut rows = Vec::with_capacity(2 * claims.len());
    for c in &claims {
        let ids = dec.tokenizer.encode(*c, false).map_err(|e| anyhow::anyhow!("tokenizing a claim: {e}"))?;
        let ids = ids.get_ids().to_vec();
        rows.push((with.clone(), ids.clone()));
        rows.push((without.clone(), ids));
    }
    let lp = continuation_logprobs(dec, &rows)?;
    Ok(claims.iter().enumerate().map(|(k, c)| claim_score(c, &lp[2 * k], &lp[2 * k + 1])).collect())
}

fn claim_score(claim: &str, with: &[f32], without: &[f32]) -> ClaimScore {
    let n = with.len().max(1) as f32;
    let gain: Vec<f32> = with.iter().zip(without).map(|(a, b)| a - b).collect();
    let unsupported = with.iter().zip(&gain).filter(|&(&w, &g)| w < -6.0 && g <= 0.0).count();
    let min_gain3 = gain
        .windows(3.min(gain.len()).max(1))
        .map(|w| w.iter().sum::<f32>() / w.len() as f32)
        .fold(f32::INFINITY, f32::min);
    ClaimScore {
        claim: claim.to_string(),
        tokens: with.len(),
        mean_with: with.iter().sum::<f32>() / n,
        mean_gain: gain.iter().sum::<f32>() / n,
        unsupported_share: unsupported as f32 / n,
        min_gain3: if min_gain3.is_finite() { min_gain3 } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_scores_summarise_the_token_gains() {
        let s = claim_score("x", &[-1.0, -8.0, -2.0, -7.0], &[-3.0, -8.0, -2.5, -6.0]);
        assert_eq!(s.tokens, 4);
        assert!((s.mean_with + 4.5).abs() < 1e-6 && (s.mean_gain - 0.375).abs() < 1e-6);
        assert!((s.unsupported_share - 0.5).abs() < 1e-6, "-8 with no gain and -7 with a loss");
        assert!((s.min_gain3 - (-0.5 / 3.0)).abs() < 1e-6, "{}", s.min_gain3);
        assert!((log_softmax_at(&[0.0, 0.0], 1) - 0.5f32.ln()).abs() < 1e-6);
    }
}
