//! Context-aware decoding (Shi et al. 2023, "Trusting Your Evidence: Hallucinate Less with
//! Context-aware Decoding"). A prompt decoded with a contrast brings a *shadow* row: the same
//! prompt without its source, fed the row's own tokens. At each step the row's logits become
//! `(1 + w)·with − w·without`: what the source makes likelier rises over what the model would
//! write anyway from its priors (an invented detail, a stock story, a phrase of the worked
//! examples). Only tokens near the row's own best keep a real chance (the adaptive plausibility
//! bound of contrastive decoding, Li et al. 2023), so the subtraction never promotes a token
//! that is unlikely with the source too.

use std::collections::HashMap;

use crate::engine::decode::decoder::Decoder;
use crate::engine::decode::prompt::{Finish, GenerationConfig};
use crate::engine::decode::row::Row;

/// How far (in nats) below the best token a token stays plausible: probability at least a tenth
/// of the best's, contrastive decoding's bound.
pub const PLAUSIBLE_NATS: f32 = std::f32::consts::LN_10;

/// What implausible tokens lose: they stay finite, so a guard that finds no allowed plausible
/// token still has the model's order among the rest to fall back on.
const IMPLAUSIBLE_PENALTY: f32 = 1e4;

/// Combines a row's `logits` (with its source) with its shadow's (`without`) at `weight`.
pub fn contrast(logits: &mut [f32], without: &[f32], weight: f32) {
    let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (x, &y) in logits.iter_mut().zip(without) {
        let combined = (1.0 + weight) * *x - weight * y;
        *x = if *x >= best - PLAUSIBLE_NATS { combined } else { combined - IMPLAUSIBLE_PENALTY };
    }
}

/// Picks each row's next token, `rows[j]` from `logits[j·V..(j+1)·V]`: a row with a shadow
/// among `rows` first has the shadow's logits contrasted with its own; then each shadow takes
/// the token its row chose, and ends when its row does.
pub(super) fn advance_all(rows: &mut [Row], dec: &Decoder, logits: &mut [f32], cfg: &GenerationConfig) {
    if rows.is_empty() {
        return;
    }
    let v = logits.len() / rows.len();
    if !rows.iter().any(|r| r.shadow) {
        // No contrasts (the default): each row on its own, no pairing to look up.
        for (r, l) in rows.iter_mut().zip(logits.chunks_mut(v)) {
            r.advance(dec, l, cfg);
        }
        return;
    }
    let shadows: HashMap<usize, usize> =
        rows.iter().enumerate().filter(|(_, r)| r.shadow).map(|(j, r)| (r.index, j)).collect();
    for j in 0..rows.len() {
        if rows[j].shadow {
            continue;
        }
        if let Some(&k) = shadows.get(&rows[j].index) {
            let without = logits[k * v..(k + 1) * v].to_vec();
            contrast(&mut logits[j * v..(j + 1) * v], &without, rows[j].context_weight);
        }
        rows[j].advance(dec, &mut logits[j * v..(j + 1) * v], cfg);
    }
    let owners: HashMap<usize, usize> =
        rows.iter().enumerate().filter(|(_, r)| !r.shadow).map(|(j, r)| (r.index, j)).collect();
    for (index, k) in shadows {
        let Some(&j) = owners.get(&index) else {
            // Its row left already (a cancelled prompt): the shadow leaves at the next step.
            rows[k].done = Some(Finish::Stop);
            continue;
        };
        if rows[j].generated.len() > rows[k].generated.len() {
            let t = *rows[j].generated.last().expect("a row that grew has a token");
            rows[k].generated.push(t);
        }
        if rows[j].done.is_some() {
            rows[k].done = Some(Finish::Stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_favours_what_the_source_makes_likelier_among_plausible_tokens() {
        // Token 0: likely with and without the source; 1: a bit less likely, but only with it;
        // 2: implausible with the source, far likelier than without it.
        let mut with = vec![5.0, 4.5, 0.0];
        let without = vec![5.0, 1.0, -20.0];
        contrast(&mut with, &without, 0.5);
        assert_eq!(with[0], 5.0);
        assert_eq!(with[1], 1.5 * 4.5 - 0.5);
        assert!(with[1] > with[0], "the source's token wins");
        assert_eq!(with[2], 10.0 - IMPLAUSIBLE_PENALTY, "implausible stays behind");
        assert!(with[2].is_finite());
        // Weight 0 leaves every plausible token as it was.
        let mut same = vec![5.0, 4.5, 0.0];
        contrast(&mut same, &without, 0.0);
        assert_eq!(&same[..2], &[5.0, 4.5]);
    }
}
