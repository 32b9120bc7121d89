//! Two REPHRASE statements in one plan: each rephrases its own styles with its own model.

use super::*;

/// The accepted rows of a run as (doc, chunk, style) → (text, model, weights, settings).
type Rows = BTreeMap<(String, u64, String), (String, String, String, String)>;

fn rows(out: &Path) -> Rows {
    let field = |x: &serde_json::Map<String, Value>, k: &str| x[k].as_str().unwrap().to_string();
    read_parquet_rows(&out.join("synthetic"))
        .iter()
        .map(|x| {
            let key = (field(x, "doc_id"), x["chunk_index"].as_u64().unwrap(), field(x, "style"));
            (key, (field(x, "text"), field(x, "model"), field(x, "weights_hash"), field(x, "generation")))
        })
        .collect()
}

fn weights(model: &Path) -> String {
    format!("blake3:{}", blake3::hash(&std::fs::read(model.join("model.onnx")).unwrap()).to_hex())
}

#[test]
fn two_rephrase_stages_in_one_plan_write_their_styles_as_each_would_alone() {
    let s = setup(6);
    let second = s.dir.path().join("tiny-llama-b");
    write_tiny_model(&second, 8, WeightFormat::Fp32, false).unwrap();
    let first = format!(
        "REPHRASE WITH (model = '{}', styles = 'echo,hard', batch_size = 4, seed = 3, temperature = 0.8, top_k = 20);",
        s.model.display()
    );
    // `again` keeps only the empty-output gate, as echo does: the random model's rows pass it.
    let other = format!(
        "STYLE again WITH (system = 'Say it again.', user = '<text>\n{{chunk}}\n</text>', max_new_tokens = 10, gates = 'empty');\n\
         REPHRASE WITH (model = '{}', styles = 'again,qa', batch_size = 2, seed = 5);",
        second.display()
    );
    let base = plan(&s);
    let line = base.lines().find(|l| l.starts_with("REPHRASE")).unwrap();
    // MIX wrap takes echo rows: the plan without echo mixes only what it has.
    let with = |rephrase: &str| base.replace(line, rephrase).replace("styles = 'echo', shard_tokens", "shard_tokens");
    let run = |text: String, dir: &str| {
        let out = s.dir.path().join(dir);
        let m = run_plan(&text, &[("output", out.to_str().unwrap())], 1).unwrap();
        (rows(&out), m.rephrase.expect("a rephrase section"), read_rejects(&out.join("rejects")))
    };
    let (both, r, rejects) = run(with(&format!("{first}\n{other}")), "both");
    let (alone_a, ra, _) = run(with(&first), "a");
    let (alone_b, rb, _) = run(with(&other), "b");

    // Each style's rows are the ones its REPHRASE writes alone, with its model's lineage.
    assert!(!alone_a.is_empty() && !alone_b.is_empty());
    let mut union = alone_a.clone();
    union.extend(alone_b.clone());
    assert_eq!(both, union, "rows of the two-model run differ from those of each model alone");
    let (wa, wb) = (weights(&s.model), weights(&second));
    assert_ne!(wa, wb);
    for ((_, _, style), (_, _, hash, settings)) in &both {
        let settings: Value = serde_json::from_str(settings).unwrap();
        let want = if style == "again" || style == "qa" { (&wb, 5) } else { (&wa, 3) };
        assert_eq!((hash, settings["seed"].as_u64().unwrap()), want, "style {style}");
    }

    // The manifest names both models and their styles; counts add up and reconcile.
    let models: Vec<(&str, &str, Vec<String>)> =
        r.models.iter().map(|m| (m.model.as_str(), m.weights_hash.as_str(), m.styles.clone())).collect();
    let a = (s.model.to_str().unwrap(), wa.as_str(), vec!["echo".to_string(), "hard".into()]);
    assert_eq!(models, [a, (second.to_str().unwrap(), wb.as_str(), vec!["again".to_string(), "qa".into()])]);
    assert_eq!(r.style_order, ["echo", "hard", "again", "qa"]);
    assert_eq!(
        (r.tasks, r.accepted, r.rejected),
        (ra.tasks + rb.tasks, ra.accepted + rb.accepted, ra.rejected + rb.rejected)
    );
    assert_eq!(r.accepted, both.len() as u64);
    assert_eq!(rejects.iter().filter(|x| x["stage"] == "gate").count() as u64, r.rejected);
}
