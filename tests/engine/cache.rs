//! The KV cache: cached decoding against full recomputation, padded rows, the shared buffer
//! against the standard layout, and prompts prefilled from the prefix cache.

use tempfile::TempDir;
use wrapflow::operators::engine::{Completion, Decoder, GenerationConfig, Prompt, SessionConfig, Timing, generate};
use wrapflow::operators::model::decoder::KvLayout;
use wrapflow::operators::model::import::WeightFormat;
use wrapflow::operators::model::tiny::write_tiny_model_with;

use super::{encode, logits, max_diff, prompts, run, tiny, tiny_standard};

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny_standard(dir.path(), WeightFormat::Fp32, false);
    let ids = encode(&d, "The city council met on Tuesday to discuss the new budget.");
    assert!(ids.len() > 8);
    let k = 4;
    let cache = d.empty_cache(1).unwrap();
    let to_i64 = |v: &[u32]| v.iter().map(|&t| t as i64).collect::<Vec<_>>();
    let (_, mut cache) = d.forward(1, to_i64(&ids[..k]), vec![1; k], (0..k as i64).collect(), &cache).unwrap();
    for t in k..ids.len() {
        let (step, present) = d.forward(1, vec![ids[t] as i64], vec![1; t + 1], vec![t as i64], &cache).unwrap();
        cache = present;
        let full = logits(&mut d, &[ids[..=t].to_vec()]);
        let diff = max_diff(&step, &full[0]);
        assert!(diff < 1e-4, "position {t}: cached and full logits differ by {diff}");
    }
}

#[test]
fn a_left_padded_row_equals_the_prompt_alone() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny_standard(dir.path(), WeightFormat::Fp32, false);
    let a = encode(&d, "Local businesses welcomed the news.");
    let b = encode(&d, "Scientists at the university have found a new way to measure the age of trees.");
    assert_ne!(a.len(), b.len());
    let batch = logits(&mut d, &[a.clone(), b.clone()]);
    let alone_a = logits(&mut d, std::slice::from_ref(&a));
    let alone_b = logits(&mut d, std::slice::from_ref(&b));
    assert!(max_diff(&batch[0], &alone_a[0]) < 5e-5, "{}", max_diff(&batch[0], &alone_a[0]));
    assert!(max_diff(&batch[1], &alone_b[0]) < 5e-5);
}

#[test]
fn the_shared_buffer_cache_generates_what_the_standard_cache_does() {
    let (a, b, c) = (TempDir::new().unwrap(), TempDir::new().unwrap(), TempDir::new().unwrap());
    let mut shared = tiny(a.path(), WeightFormat::Fp32, false);
    assert_eq!(shared.layout, KvLayout::Shared);
    write_tiny_model_with(c.path(), 42, WeightFormat::Fp32, false, KvLayout::SharedOrt).unwrap();
    let mut shared_ort = Decoder::load(c.path(), &SessionConfig::default()).unwrap();
    assert_eq!(shared_ort.layout, KvLayout::SharedOrt);
    let mut standard = tiny_standard(b.path(), WeightFormat::Fp32, false);
    let mut ps = prompts(&shared);
    // Two long prompts whose generations cross the buffer's first capacity (256 positions), so
    // the buffer grows while other rows are live.
    let long = wrapflow::operators::testkit::SAMPLE_TEXT.repeat(8);
    for (i, cut) in [(0, 240), (1, 251)] {
        let ids = encode(&shared, &long)[..cut].to_vec();
        ps.insert(3 + i * 4, Prompt { id: format!("long{i}"), ids, max_new_tokens: Some(30), ..Default::default() });
    }
    let greedy = GenerationConfig { max_new_tokens: 20, batch_size: 4, ignore_eos: true, ..Default::default() };
    let sampled = GenerationConfig { temperature: 1.0, top_p: 0.9, seed: 5, ..greedy.clone() };
    for cfg in [greedy, sampled] {
        let want = run(&mut standard, &cfg, ps.clone());
        // Rows join and leave at different steps and in different slots at each batch size;
        // wrapflow's attention operator and ONNX Runtime's give the same tokens.
        for batch in [1, 3, 5] {
            for (name, dec) in [("wrapflow", &mut shared), ("onnxruntime", &mut shared_ort)] {
                let got = run(dec, &GenerationConfig { batch_size: batch, ..cfg.clone() }, ps.clone());
                assert_eq!(got, want, "{name} attention, batch {batch}, temperature {}", cfg.temperature);
            }
        }
    }
}

#[test]
fn prompts_prefilled_from_cached_prefixes_decode_as_fresh_prefills() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny(dir.path(), WeightFormat::Fp32, false);
    // One long shared head (a style's instructions and example), different chunks, and each
    // prompt twice (a retry).
    let head = encode(&d, wrapflow::operators::testkit::SAMPLE_TEXT);
    assert!(head.len() > 64);
    let tails = ["The council met on Tuesday.", "Local businesses welcomed the news.", "Scientists found a way."];
    let ids: Vec<Vec<u32>> = tails.iter().map(|t| [head.clone(), encode(&d, t)].concat()).collect();
    let prompts: Vec<Prompt> = ids
        .iter()
        .chain(&ids)
        .enumerate()
        .map(|(i, ids)| Prompt { id: i.to_string(), ids: ids.clone(), ..Default::default() })
        .collect();
    let ((fresh, t_fresh), (reused, t_reused)) = without_and_with_cache(&mut d, &prompts, 24, 2);
    assert_eq!(t_fresh.reused_tokens, 0);
    // The first prompt runs whole; the other two share the head; the repeats all but one token.
    let least = head.len() + ids.iter().map(|p| p.len() - 1).sum::<usize>();
    assert!(t_reused.reused_tokens as usize >= least, "{} reused, at least {least}", t_reused.reused_tokens);
    assert_eq!(t_reused.prefill_tokens + t_reused.reused_tokens, t_fresh.prefill_tokens);
    for (a, b) in fresh.iter().zip(&reused) {
        assert_eq!(a.token_ids, b.token_ids, "prompt {}: greedy tokens differ with a reused prefix", a.id);
    }
}

/// Prompts that join the batch together and start alike (a run's first batch, in a few styles)
/// run their common start once: one runs whole, the others copy its prefix, and decode the same
/// tokens as without the cache.
#[test]
fn prompts_of_one_join_that_start_alike_run_their_common_start_once() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny(dir.path(), WeightFormat::Fp32, false);
    let head = encode(&d, wrapflow::operators::testkit::SAMPLE_TEXT);
    let tails =
        ["The council met.", "Businesses welcomed it.", "Scientists found a way.", "It rained.", "A road.", "Trees."];
    let ids: Vec<Vec<u32>> = tails.iter().map(|t| [head.clone(), encode(&d, t)].concat()).collect();
    // All six in the first join.
    let prompts: Vec<Prompt> = ids.iter().map(|ids| Prompt { ids: ids.clone(), ..Default::default() }).collect();
    let ((fresh, t_fresh), (reused, t_reused)) = without_and_with_cache(&mut d, &prompts, 12, 6);
    assert_eq!(t_fresh.prefill_tokens as usize, ids.iter().map(Vec::len).sum::<usize>());
    let once = ids[0].len() + ids[1..].iter().map(|p| p.len() - head.len()).sum::<usize>();
    assert_eq!(t_reused.prefill_tokens as usize, once, "the head once, then each tail");
    assert_eq!(
        fresh.iter().map(|c| &c.token_ids).collect::<Vec<_>>(),
        reused.iter().map(|c| &c.token_ids).collect::<Vec<_>>()
    );
}

/// Generates `prompts` to `max_new_tokens` each at `batch_size`, without a prefix cache and with
/// one: the completions in prompt order and the timing of each run.
fn without_and_with_cache(
    d: &mut Decoder,
    prompts: &[Prompt],
    max_new_tokens: usize,
    batch_size: usize,
) -> ((Vec<Completion>, Timing), (Vec<Completion>, Timing)) {
    let mut run = |prefix_cache_mb: usize| {
        let cfg =
            GenerationConfig { max_new_tokens, batch_size, ignore_eos: true, prefix_cache_mb, ..Default::default() };
        let mut out = vec![];
        let timing = generate(d, prompts.to_vec(), &cfg, |c| out.push(c)).unwrap();
        out.sort_by_key(|c| c.index);
        (out, timing)
    };
    (run(0), run(64))
}

/// A prompt marked `ahead` (a retry, whose prompt the prefix cache still holds) joins the batch
/// before prompts queued earlier without the mark, after those queued with it, and decodes the
/// same tokens.
#[test]
fn prompts_marked_ahead_join_before_the_others_in_their_own_order() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny(dir.path(), WeightFormat::Fp32, false);
    let cfg = GenerationConfig { batch_size: 1, max_new_tokens: 4, ignore_eos: true, ..Default::default() };
    let ps = prompts(&d);
    let mut order = |ahead: &[bool]| {
        let mut b = wrapflow::operators::engine::Batcher::new(cfg.clone());
        let (mut done, mut tokens) = (vec![], vec![vec![]; ps.len()]);
        // The first prompt starts alone, then the rest queue while it decodes.
        b.push(ps[0].clone());
        b.step(&mut d, &mut |_| panic!("nothing ends in the first step")).unwrap();
        for (p, &a) in ps.iter().zip(ahead).skip(1) {
            b.push(Prompt { ahead: a, ..p.clone() });
        }
        while !b.is_idle() {
            b.step(&mut d, &mut |c| {
                done.push(c.index);
                tokens[c.index] = c.token_ids;
            })
            .unwrap();
        }
        (done, tokens)
    };
    let n = ps.len();
    let (plain, want) = order(&vec![false; n]);
    assert_eq!(plain, (0..n).collect::<Vec<_>>());
    let marked: Vec<bool> = (0..n).map(|i| i == 3 || i == 7 || i == 8).collect();
    let (first, tokens) = order(&marked);
    assert_eq!(first, [0, 3, 7, 8, 1, 2, 4, 5, 6, 9]);
    assert_eq!(tokens, want, "the order changes no output");
}
