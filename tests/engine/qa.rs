//! A Q&A held to its least number of pairs (`Prompt::qa_min_pairs`) ends neither at the
//! model's end of sequence nor at its soft stop before it has them; without the setting, the
//! same prompts do end there.

use tempfile::TempDir;
use wrapflow::operators::engine::{Completion, Finish, GenerationConfig, Prompt, SoftStop, generate};
use wrapflow::operators::model::import::WeightFormat;

use super::{prompts, tiny};

/// Answer lines with words in them: the pairs a text has answered.
fn pairs(text: &str) -> usize {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("Answer:"))
        .filter(|said| said.chars().any(char::is_alphanumeric))
        .count()
}

#[test]
fn a_qa_ends_only_once_it_has_its_least_pairs() {
    let dir = TempDir::new().unwrap();
    let mut d = tiny(dir.path(), WeightFormat::Fp32, false);
    let cfg = GenerationConfig { max_new_tokens: 128, batch_size: 8, temperature: 4.0, ..Default::default() };
    // Ten prompts, eight seeds each; half of them stop softly at the first "e" after 4 tokens.
    let ps: Vec<Prompt> = (0..8)
        .flat_map(|k| prompts(&d).into_iter().map(move |p| (k, p)))
        .enumerate()
        .map(|(i, (k, p))| Prompt {
            seed: Some(i as u64 * 7 + k),
            max_new_tokens: None,
            qa_format: true,
            continues: "Question:".into(),
            soft_stop: (i % 2 == 0).then(|| SoftStop { after_tokens: 4, at: "e".into() }),
            ..p
        })
        .collect();
    let run = |d: &mut _, ps: Vec<Prompt>| {
        let mut out: Vec<Option<Completion>> = vec![None; ps.len()];
        generate(d, ps, &cfg, |c| {
            let i = c.index;
            out[i] = Some(c);
        })
        .unwrap();
        out.into_iter().map(|c| c.expect("every prompt completes")).collect::<Vec<_>>()
    };
    let early = |cs: &[Completion], how: Finish| cs.iter().filter(|c| c.finish == how && pairs(&c.text) < 2).count();
    let free = run(&mut d, ps.clone());
    assert!(early(&free, Finish::Eos) > 0 && early(&free, Finish::Stop) > 0, "the test needs early ends");
    let held = run(&mut d, ps.into_iter().map(|p| Prompt { qa_min_pairs: 2, ..p }).collect());
    assert_eq!((early(&held, Finish::Eos), early(&held, Finish::Stop)), (0, 0));
    assert!(held.iter().all(|c| c.finish != Finish::Length || c.token_ids.len() == 128));
}
