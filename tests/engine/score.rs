//! Teacher-forced scoring (`engine::score`) against the model run on each prefix on its own.

use tempfile::TempDir;
use wrapflow::operators::engine::decode::score::{continuation_logprobs, lm_grounding};
use wrapflow::operators::model::import::WeightFormat;

use super::{encode, tiny, tiny_standard};

fn log_softmax(logits: &[f32], id: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    logits[id as usize] - max - sum.ln()
}

#[test]
fn batched_teacher_forced_logprobs_equal_each_prefix_run_alone_in_both_cache_layouts() {
    for standard in [false, true] {
        let dir = TempDir::new().unwrap();
        let mut d = if standard {
            tiny_standard(dir.path(), WeightFormat::Fp32, false)
        } else {
            tiny(dir.path(), WeightFormat::Fp32, false)
        };
        let rows = vec![
            (encode(&d, "The council met to discuss the roads"), encode(&d, " and the river bridge.")),
            (encode(&d, "Sales"), encode(&d, " rose sharply in the third quarter of the year")),
            (encode(&d, "A short one"), encode(&d, " ok")),
        ];
        let got = continuation_logprobs(&mut d, &rows).unwrap();
        assert_eq!(got.len(), rows.len());
        for ((ctx, cont), lp) in rows.iter().zip(&got) {
            assert_eq!(lp.len(), cont.len());
            for (t, &id) in cont.iter().enumerate() {
                let prefix: Vec<u32> = ctx.iter().chain(&cont[..t]).copied().collect();
                let want = log_softmax(&d.prompt_logits(&prefix).unwrap(), id);
                assert!((lp[t] - want).abs() < 1e-3, "standard={standard} token {t}: {} against {want}", lp[t]);
            }
        }
        // The grounding score reads each claim twice, with and without its source.
        let scores = lm_grounding(&mut d, "The council met.", "The council met. It discussed roads.").unwrap();
        assert_eq!(
            scores.iter().map(|s| s.claim.as_str()).collect::<Vec<_>>(),
            ["The council met.", "It discussed roads."]
        );
        assert!(scores.iter().all(|s| s.tokens > 0 && s.mean_with.is_finite() && s.mean_gain.is_finite()));
    }
}
