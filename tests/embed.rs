//! The sentence embedder (all-MiniLM-L6-v2 imported by our own importer) against an independent
//! numpy forward pass, and its pooling, padding and truncation behaviour. `scripts/test.sh`
//! fetches the model (WRAPFLOW_TEST_MINILM) and a Python with numpy (WRAPFLOW_TEST_PYTHON).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;
use wrapflow::operators::engine::{Embedder, SessionConfig, cosine};
use wrapflow::operators::model::bert::{MAX_SEQ, import_embedder};

fn env(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test.sh")),
    )
}

fn embedder(dir: &TempDir) -> Embedder {
    import_embedder(&env("WRAPFLOW_TEST_MINILM"), dir.path(), MAX_SEQ).unwrap();
    Embedder::load(dir.path(), &SessionConfig { intra_threads: 1, ..Default::default() }).unwrap()
}

const TEXTS: [&str; 4] = [
    "The council will spend 12 million pounds on new homes.",
    "Twelve million pounds of council money will go to building houses.",
    "The striker scored twice in the second half.",
    "Oil prices rose sharply on Monday after the cartel agreed to cut production by 1.5 million barrels a day, \
     its largest reduction since the financial crisis, while analysts warned that demand in Asia remained weak.",
];

#[test]
fn embeddings_match_an_independent_numpy_forward_pass() {
    let dir = TempDir::new().unwrap();
    let mut e = embedder(&dir);
    let ours = e.embed(&TEXTS).unwrap();
    // The same padded batch through the reference.
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let enc = tok.encode_batch(TEXTS.to_vec(), true).unwrap();
    let lens: Vec<usize> = enc.iter().map(|x| x.len()).collect();
    assert!(lens.iter().all(|&l| l == lens[0]), "the imported tokenizer pads a batch to its longest row");
    assert!(lens[0] < 128, "padding is to the batch's longest row, not to a fixed 128: {}", lens[0]);
    let batch = serde_json::json!({
        "input_ids": enc.iter().map(|x| x.get_ids().to_vec()).collect::<Vec<_>>(),
        "attention_mask": enc.iter().map(|x| x.get_attention_mask().to_vec()).collect::<Vec<_>>(),
    });
    let mut child = Command::new(env("WRAPFLOW_TEST_PYTHON"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reference_embed.py"))
        .arg(env("WRAPFLOW_TEST_MINILM"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(batch.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed");
    let reference: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reference.len(), ours.len());
    for (a, b) in ours.iter().zip(&reference) {
        assert_eq!(a.len(), 384);
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "embedding differs from the reference by {diff}");
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "unit length: {norm}");
    }
    // Meaning: the paraphrase is closer than the unrelated sentence.
    let (para, other) = (cosine(&ours[0], &ours[1]), cosine(&ours[0], &ours[2]));
    assert!(para > 0.6 && other < 0.3 && para > other + 0.3, "paraphrase {para}, unrelated {other}");
}

#[test]
fn a_row_embeds_the_same_alone_or_padded_and_long_inputs_are_not_cut_at_128() {
    let dir = TempDir::new().unwrap();
    let mut e = embedder(&dir);
    let alone = e.embed(&TEXTS[..1]).unwrap();
    let batch = e.embed(&TEXTS).unwrap();
    assert!(cosine(&alone[0], &batch[0]) > 0.99999);
    // Two texts that share their first ~150 word pieces and then differ: a 128-piece truncation
    // (the shipped tokenizer's) would make them identical.
    let head =
        "The committee reviewed the annual report on regional transport budgets and passenger numbers. ".repeat(10);
    let a = format!("{head} The final section praises the new rail line and its punctual trains.");
    let b = format!("{head} The final section is about football, a striker and a penalty in extra time.");
    let v = e.embed(&[&a, &b]).unwrap();
    assert!(cosine(&v[0], &v[1]) < 0.9999, "the tails after 128 pieces count: {}", cosine(&v[0], &v[1]));
}

#[test]
fn an_appended_sentence_the_source_does_not_support_scores_below_the_support_gate() {
    use wrapflow::operators::stages::gates::{GateConfig, support};
    let dir = TempDir::new().unwrap();
    let mut e = embedder(&dir);
    let src = "The biochemist Hans Krebs discovered the citric acid cycle in 1937 at the University of \
               Sheffield. The cycle explains how cells turn food into energy. He shared the Nobel Prize \
               in 1953.";
    let faithful = "In 1937, at Sheffield, Hans Krebs found the citric acid cycle. It shows how cells get \
                    energy from food. In 1953 he shared a Nobel Prize.";
    let invented = format!("{faithful} He later discovered the double helix structure of DNA with Watson.");
    let min = GateConfig::default().min_sentence_support;
    let good = support(&mut e, src, faithful).unwrap();
    let bad = support(&mut e, src, &invented).unwrap();
    eprintln!("faithful {good:?}\ninvented {bad:?}");
    assert_eq!(good.len(), 3);
    assert!(good.iter().all(|(_, c)| *c >= min), "every faithful sentence is supported: {good:?}");
    let (last, cos) = bad.last().unwrap();
    assert!(last.contains("double helix") && *cos < min, "{bad:?}");
}
