//! The dataset card (`README.md`) of a run and of its remix, read by Hugging Face's `datasets`
//! (from PyPI, installed by `scripts/test.sh`): every configuration loads with the rows the
//! manifest counts, and the card says what made them.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::common::*;
use super::{plan, setup};

/// What `datasets` finds in `out`: configuration names, rows of each, and the card's metadata.
fn load_with_datasets(out: &Path, cache: &Path) -> Value {
    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    let script = r#"
import json, sys
import datasets
from huggingface_hub import DatasetCard
out, cache = sys.argv[1], sys.argv[2]
res = {"configs": {}}
for name in datasets.get_dataset_config_names(out):
    res["configs"][name] = datasets.load_dataset(out, name, split="train", cache_dir=cache).num_rows
meta = DatasetCard.load(out + "/README.md").data
res["license"], res["language"], res["size"] = meta.license, meta.language, meta.size_categories
res["default"] = [c["config_name"] for c in meta.configs if c.get("default")]
print(json.dumps(res))
"#;
    let res = Command::new(python)
        .args(["-c", script])
        .arg(out)
        .arg(cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", cache)
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    serde_json::from_slice(&res.stdout).unwrap()
}

#[test]
fn the_dataset_card_loads_with_datasets_and_says_what_made_the_run_and_its_remix() {
    let s = setup(6);
    let text = plan(&s).replace(
        "SINK '${output}' WITH (shard_rows = 40);",
        "SINK '${output}' WITH (shard_rows = 40, license = 'cc-by-4.0', language = 'en', \
         pretty_name = 'Tiny WRAP', description = 'Rephrased test documents.');",
    );
    let out = s.dir.path().join("out");
    let m = run_plan(&text, &[("output", out.to_str().unwrap())], 1).unwrap();
    let r = m.rephrase.as_ref().unwrap();
    let wrap = m.mixes.iter().find(|x| x.summary.name == "wrap").unwrap();
    let got = load_with_datasets(&out, &s.dir.path().join("hf"));
    let want = serde_json::json!({"real": m.counts.chunks, "synthetic": r.accepted, "mix_wrap": wrap.summary.rows});
    assert_eq!(got["configs"], want, "the Megatron mixture `tok` is not a configuration");
    assert_eq!((&got["license"], &got["language"]), (&Value::from("cc-by-4.0"), &serde_json::json!(["en"])));
    assert_eq!(got["size"], serde_json::json!(["n<1K"]));
    assert_eq!(got["default"], serde_json::json!(["mix_wrap"]), "the first mixture is what a trainer loads");

    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    // Markdown tables pad their cells: compare with runs of spaces as one.
    let flat = card.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    let must = [
        "# Tiny WRAP".to_string(),
        "Rephrased test documents.".into(),
        m.plan.hash.clone(),
        r.models[0].weights_hash.clone(),
        "system: Repeat the text.".into(),
        "\"min_cosine\": 0.2".into(),
        "cover p10".into(),
        format!("| style tasks | {} |", r.tasks),
        "`mix/tok/`".into(),
        format!("| real | | | 50.00% | {:.2}% |", wrap.summary.achieved[0] * 100.0),
        "DEDUP ON text;".into(),
    ];
    for needle in &must {
        assert!(flat.contains(needle.as_str()), "the card lacks {needle:?}:\n{card}");
    }
    assert!(!m.rejects.by_reason.is_empty());
    for (reason, n) in &m.rejects.by_reason {
        assert!(flat.contains(&format!("| {reason} | {n} |")), "reject reason {reason}:\n{card}");
    }

    // A remix's card: its own mixtures only, and the run its rows come from.
    let mixes = s.dir.path().join("mixes.sql");
    std::fs::write(&mixes, "MIX one_two WITH (ratio = '1:2', styles = 'echo', shortfall = 'report');\n").unwrap();
    let remix = s.dir.path().join("remix");
    let res = Command::new(env!("CARGO_BIN_EXE_wrapflow"))
        .args(["remix", out.to_str().unwrap(), mixes.to_str().unwrap(), "--out", remix.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let rm: Value = serde_json::from_slice(&std::fs::read(remix.join("remix.json")).unwrap()).unwrap();
    let got = load_with_datasets(&remix, &s.dir.path().join("hf2"));
    assert_eq!(got["configs"], serde_json::json!({"mix_one_two": rm["mixes"][0]["rows"]}));
    let card = std::fs::read_to_string(remix.join("README.md")).unwrap();
    assert!(card.contains(&format!("from the rows of the run in `{}`", out.display())), "{card}");
    assert!(card.contains(rm["mixes_hash"].as_str().unwrap()) && card.contains(&r.models[0].weights_hash), "{card}");
}
