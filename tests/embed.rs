//! The sentence embedder (all-MiniLM-L6-v2 imported by our own importer) against an independent
//! numpy forward pass, and its pooling, padding and truncation behaviour. `scripts/test.sh`
//! fetches the model (WRAPFLOW_TEST_MINILM) and a Python with numpy (WRAPFLOW_TEST_PYTHON).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;
use wrapflow::cli::judge::Judge;
use wrapflow::operators::engine::{Embedder, Entailer, SessionConfig, cosine};
use wrapflow::operators::model::encoders::bert::{MAX_SEQ, import_cross_encoder, import_embedder};
use wrapflow::operators::model::encoders::tiny_bert::write_tiny_cross_encoder;
use wrapflow::operators::stages::gates::claims as gate_claims;
use wrapflow::plan::Plan;

fn env(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test.sh")),
    )
}

fn embedder(dir: &TempDir) -> Embedder {
    import_embedder(&env("WRAPFLOW_TEST_MINILM"), dir.path(), MAX_SEQ).unwrap();
    Embedder::load(dir.path(), &SessionConfig { intra_threads: 1, ..Default::default() }).unwrap()
}

/// The numpy forward pass of `scripts/reference_embed.py` on a tokenized batch.
fn reference(model: &Path, batch: &Value) -> Vec<Vec<f32>> {
    let mut child = Command::new(env("WRAPFLOW_TEST_PYTHON"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reference_embed.py"))
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(batch.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed");
    serde_json::from_slice(&out.stdout).unwrap()
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
    let reference = reference(&env("WRAPFLOW_TEST_MINILM"), &batch);
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

/// A user's cross-encoder (here a tiny random BERT with three NLI labels) imported by
/// `wrapflow model import`: its logits on text pairs against the numpy reference, then the
/// `entailment` gate of a plan keeps exactly the rewrites whose every claim reaches
/// `min_entailment`, reading each claim against the whole source as the model does directly.
#[test]
fn a_cross_encoder_matches_numpy_and_its_gate_rejects_exactly_the_claims_below_the_bar() {
    let dir = TempDir::new().unwrap();
    let (hf, nli) = (dir.path().join("hf"), dir.path().join("nli"));
    write_tiny_cross_encoder(&hf, &env("WRAPFLOW_TEST_MINILM").join("tokenizer.json"), 7).unwrap();
    let (_, labels) = import_cross_encoder(&hf, &nli, MAX_SEQ).unwrap();
    assert_eq!(labels, ["contradiction", "entailment", "neutral"]);
    let mut e = Entailer::load(&nli, &SessionConfig { intra_threads: 1, ..Default::default() }).unwrap();
    let (source, claims) = (TEXTS[3], &TEXTS[..3]);
    let ours = e.logits(source, claims).unwrap();
    let tok = tokenizers::Tokenizer::from_file(nli.join("tokenizer.json")).unwrap();
    let enc = tok.encode_batch(claims.iter().map(|c| (source, *c)).collect::<Vec<_>>(), true).unwrap();
    assert!(enc[0].get_type_ids().contains(&1), "the claim is the second segment");
    let batch = serde_json::json!({
        "input_ids": enc.iter().map(|x| x.get_ids().to_vec()).collect::<Vec<_>>(),
        "attention_mask": enc.iter().map(|x| x.get_attention_mask().to_vec()).collect::<Vec<_>>(),
        "token_type_ids": enc.iter().map(|x| x.get_type_ids().to_vec()).collect::<Vec<_>>(),
    });
    let want = reference(&hf, &batch);
    assert_eq!((ours.len(), want.len()), (3, 3));
    for (a, b) in ours.iter().zip(&want) {
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(a.len() == 3 && diff < 1e-4, "logits {a:?} against the reference {b:?}");
    }
    let probs = e.entailment(source, claims).unwrap();
    for (p, l) in probs.iter().zip(&ours) {
        let sum: f32 = l.iter().map(|x| x.exp()).sum();
        assert!((p - l[1].exp() / sum).abs() < 1e-6, "entailment is the softmax of label 1");
    }

    // Evidence far longer than the model reads loses its end, not the claim, and still scores.
    let long = TEXTS[3].repeat(20);
    let cut = e.entailment(&long, &[TEXTS[0]]).unwrap();
    assert!(cut.len() == 1 && cut[0].is_finite() && (0.0..=1.0).contains(&cut[0]), "{cut:?}");
    let pair = tok.encode((long.as_str(), TEXTS[0]), true).unwrap();
    let claim_tokens = tok.encode(TEXTS[0], true).unwrap().len() - 2;
    assert_eq!(pair.len(), MAX_SEQ, "the pair fills the model's length");
    assert_eq!(
        pair.get_type_ids().iter().filter(|&&t| t == 1).count(),
        claim_tokens + 1,
        "the claim whole, with its [SEP]"
    );

    // The gate: rewrites of one and two claims, a bar between the claims' probabilities.
    let rewrites = [TEXTS[0], TEXTS[1], TEXTS[2], &format!("{} {}", TEXTS[0], TEXTS[2]), "What rose? Oil prices."];
    let read: Vec<Vec<f32>> = rewrites
        .iter()
        .map(|r| {
            let c = gate_claims(r, false);
            e.entailment(source, &c.iter().map(String::as_str).collect::<Vec<_>>()).unwrap()
        })
        .collect();
    let mut all: Vec<f32> = read.iter().flatten().copied().collect();
    all.sort_by(f32::total_cmp);
    let bar = (all[all.len() / 2 - 1] + all[all.len() / 2]) / 2.0;
    let plan = format!(
        "TOKENIZER '{nli}/tokenizer.json';\n\
         CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION 'unused.jsonl';\nINPUT raw;\nCHUNK;\n\
         STYLE plain WITH (system = 'Rewrite.', user = '{{chunk}}', gates = 'empty, entailment');\n\
         STYLE loose WITH (system = 'Rewrite.', user = '{{chunk}}', gates = 'empty');\n\
         REPHRASE WITH (model = 'unused', styles = 'plain,loose');\n\
         GATES WITH (entailment = '{nli}', min_entailment = {bar});\nSINK 'unused';\n",
        nli = nli.display()
    );
    let plan = Plan::parse("entail.sql", &plan, &[]).unwrap();
    let mut judge = Judge::new(&plan, None).unwrap();
    let (mut kept, mut failed) = (0, 0);
    for (r, probs) in rewrites.iter().zip(&read) {
        let v = judge.verdict(source, r, "plain").unwrap();
        let scores = &v["gates"]["entailment"];
        let got: Vec<f64> = scores.as_array().unwrap().iter().map(|c| c["entailment"].as_f64().unwrap()).collect();
        assert_eq!(got.len(), probs.len(), "{v}");
        assert!(got.iter().zip(probs).all(|(a, b)| (*a as f32 - b).abs() < 1e-6), "{got:?} against {probs:?}");
        let low = probs.iter().copied().fold(f32::INFINITY, f32::min);
        assert_eq!(v["accepted"], low >= bar as f32, "{v}");
        if low < bar {
            let worst = &scores[probs.iter().position(|&p| p == low).unwrap()]["claim"];
            assert!(v["reason"].as_str().unwrap().contains(worst.as_str().unwrap()), "{v}");
            failed += 1;
        } else {
            kept += 1;
        }
        let loose = judge.verdict(source, r, "loose").unwrap();
        assert!(loose["accepted"] == true && loose["gates"].get("entailment").is_none(), "{loose}");
    }
    assert!(kept > 0 && failed > 0, "the bar splits the rewrites: {read:?} at {bar}");
}
