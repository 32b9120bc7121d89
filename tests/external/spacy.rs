//! C4's sentence count (`c4_sentences`, the 5-sentence rule of `c4_clean`) against spaCy itself
//! (`spacy.blank("en")` with its sentencizer, run by tests/fixtures/spacy_sentences.py) on every
//! line of the BBC News corpus that C4's line rules keep (WRAPFLOW_TEST_BBC from scripts/test.sh).

use std::path::Path;

use wrapflow::operators::sql::c4::c4_sentences;

#[test]
fn c4_sentence_counts_agree_with_spacy_on_real_lines() {
    let bbc = std::env::var("WRAPFLOW_TEST_BBC").expect("WRAPFLOW_TEST_BBC is not set: run scripts/test.sh");
    let mut docs: Vec<Vec<String>> = Vec::new();
    for line in std::fs::read_to_string(bbc).unwrap().lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let lines = doc["text"].as_str().unwrap().lines().map(str::trim);
        // The lines C4 counts sentences of: at least 3 words and a terminal mark.
        let kept = lines.filter(|l| {
            l.split_whitespace().count() >= 3 && l.ends_with(['.', '?', '!', '"', '\'']) && !l.ends_with("...")
        });
        docs.push(kept.map(String::from).collect());
    }
    let lines: Vec<&String> = docs.iter().flatten().collect();
    assert!(lines.len() > 10_000, "{} lines", lines.len());
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("lines.json");
    std::fs::write(&file, serde_json::to_vec(&lines).unwrap()).unwrap();
    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spacy_sentences.py");
    let out = std::process::Command::new(python).arg(script).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spacy: Vec<usize> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spacy.len(), lines.len());

    let ours: Vec<usize> = lines.iter().map(|l| c4_sentences(l)).collect();
    let differ: Vec<(usize, usize, &str)> =
        (0..lines.len()).filter(|&i| ours[i] != spacy[i]).map(|i| (ours[i], spacy[i], lines[i].as_str())).collect();
    eprintln!(
        "{} of {} lines differ from spaCy; first: {:#?}",
        differ.len(),
        lines.len(),
        &differ[..differ.len().min(5)]
    );
    assert!(differ.len() * 1000 <= lines.len(), "more than 0.1% of lines differ");
    // The document decision C4 takes from the count: at least 5 sentences.
    let (mut at, mut decided_apart) = (0, 0);
    for doc in &docs {
        let (o, s): (usize, usize) = (ours[at..at + doc.len()].iter().sum(), spacy[at..at + doc.len()].iter().sum());
        decided_apart += usize::from((o >= 5) != (s >= 5));
        at += doc.len();
    }
    assert_eq!(decided_apart, 0, "documents kept or dropped otherwise than with spaCy's count");
}
