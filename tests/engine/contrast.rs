//! Context-aware decoding (`engine::decode::contrast`) against the model run on each prefix on
//! its own, with and without the source.

use tempfile::TempDir;
use wrapflow::operators::engine::{GenerationConfig, Prompt};
use wrapflow::operators::model::import::WeightFormat;

use super::{logits, prompts, run, tiny, tiny_standard};

/// The contrasted greedy choice, written out: among tokens within ln 10 of the best with the
/// source, the largest `(1 + w)·with − w·without`.
fn choose(with: &[f32], without: &[f32], w: f32) -> u32 {
    let best = with.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (0..with.len())
        .filter(|&t| with[t] >= best - std::f32::consts::LN_10)
        .max_by(|&a, &b| {
            let (x, y) = ((1.0 + w) * with[a] - w * without[a], (1.0 + w) * with[b] - w * without[b]);
            x.total_cmp(&y).then(b.cmp(&a))
        })
        .unwrap() as u32
}

#[test]
fn context_aware_decoding_takes_the_contrasted_choice_at_every_step_in_any_batch() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny_standard(dir.path(), WeightFormat::Fp32, false);
    let weight = 1.0;
    // Each prompt's contrast: the prompt without its first half (the "source").
    let ps: Vec<Prompt> = prompts(&d)
        .into_iter()
        .map(|p| Prompt { contrast: p.ids[p.ids.len() / 2..].to_vec(), context_weight: weight, ..p })
        .collect();
    let cfg = GenerationConfig { max_new_tokens: 10, batch_size: 3, ignore_eos: true, ..Default::default() };
    let got = run(&mut d, &cfg, ps.clone());
    for (p, out) in ps.iter().zip(&got) {
        assert_eq!(out.len(), p.max_new_tokens.unwrap());
        let mut want: Vec<u32> = vec![];
        while want.len() < out.len() {
            let with: Vec<u32> = p.ids.iter().chain(&want).copied().collect();
            let without: Vec<u32> = p.contrast.iter().chain(&want).copied().collect();
            let l = logits(&mut d, &[with, without]);
            want.push(choose(&l[0], &l[1], weight));
        }
        assert_eq!(out, &want, "prompt {}", p.id);
    }
    // The same tokens one prompt at a time and in the shared-buffer layout.
    assert_eq!(run(&mut d, &GenerationConfig { batch_size: 1, ..cfg.clone() }, ps.clone()), got);
    let shared_dir = TempDir::new().unwrap();
    let mut shared = tiny(shared_dir.path(), WeightFormat::Fp32, false);
    assert_eq!(run(&mut shared, &GenerationConfig { batch_size: 4, ..cfg.clone() }, ps.clone()), got);
    // The contrast changes what is written; at weight 0 it is ignored.
    let plain: Vec<Prompt> = ps.iter().map(|p| Prompt { contrast: vec![], context_weight: 0.0, ..p.clone() }).collect();
    let greedy = run(&mut d, &cfg, plain);
    assert_ne!(greedy, got, "contrasting changed no token");
    let off: Vec<Prompt> = ps.iter().map(|p| Prompt { context_weight: 0.0, ..p.clone() }).collect();
    assert_eq!(run(&mut d, &cfg, off), greedy);
}
