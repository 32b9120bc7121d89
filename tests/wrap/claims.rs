//! The gates that read each claim of a kept row with a model of the user's, in a run on the tiny
//! random models: the `lm` gate (a language model) and the `entailment` gate (a cross-encoder).

use super::*;

#[test]
fn the_lm_gate_rejects_the_rows_whose_claims_its_model_finds_unsupported() {
    let s = setup(3);
    // The same answers judged with the `lm` gate passing everything and passing nothing
    // unsupported (the tiny random model finds most tokens unlikely whatever comes before).
    let run = |share: f64, dir: &str| {
        let text = one_style_plan(
            &s,
            "echo WITH (system = 'Repeat the text.', user = '<text>\n{chunk}\n</text>', max_new_tokens = 12, gates = 'empty, lm')",
            "",
            &format!(", grounding_model = '{}', max_unsupported_share = {share}", s.model.display()),
        );
        let out = s.dir.path().join(dir);
        let m = run_plan(&text, &[("output", out.to_str().unwrap())], 1).unwrap();
        let r = m.rephrase.unwrap();
        let rows = read_parquet_rows(&out.join("synthetic"));
        for x in &rows {
            let u = x["lm_unsupported"].as_f64().expect("a kept row carries its largest unsupported share");
            assert!(u <= share, "{x:?}");
        }
        let stats = r.styles.get("echo").map(|st| st.p90_lm_unsupported);
        assert_eq!(stats.flatten().is_some(), !rows.is_empty(), "the fidelity table has the lm gate's figure");
        let kept: BTreeSet<(String, u64)> = rows
            .iter()
            .map(|x| (x["doc_id"].as_str().unwrap().to_string(), x["chunk_index"].as_u64().unwrap()))
            .collect();
        let lm: Vec<(String, u64, Value)> = read_rejects(&out.join("rejects"))
            .into_iter()
            .filter(|x| x["reason"].as_str().unwrap().starts_with("lm grounding: "))
            .map(|x| {
                let scores: Value = serde_json::from_str(x["scores"].as_str().unwrap()).unwrap();
                (x["doc_id"].as_str().unwrap().to_string(), x["chunk_index"].as_u64().unwrap(), scores)
            })
            .collect();
        assert_eq!(kept.len() as u64, r.accepted);
        assert_eq!(r.accepted + r.rejected, r.tasks, "every task is a row or a reject");
        (kept, lm)
    };
    let (all, none) = run(1.0, "lenient");
    let (kept, lm) = run(0.0, "strict");
    assert!(none.is_empty() && !all.is_empty(), "a share of 1 fails no claim");
    assert!(!lm.is_empty(), "the random model supports few claims");
    assert!(kept.is_subset(&all));
    let rejected: BTreeSet<(String, u64)> = lm.iter().map(|(d, c, _)| (d.clone(), *c)).collect();
    assert_eq!(rejected, all.difference(&kept).cloned().collect(), "the gate takes out what it fails, nothing else");
    for (_, _, scores) in &lm {
        let claims = scores["gates"]["lm"].as_array().expect("the claims' readings are in the scores");
        assert!(claims.iter().any(|c| c["unsupported_share"].as_f64().unwrap() > 0.0), "{scores}");
    }
}

#[test]
fn the_entailment_gate_keeps_the_rows_whose_every_claim_its_cross_encoder_finds_entailed() {
    let s = setup(3);
    let (hf, nli) = (s.dir.path().join("nli-hf"), s.dir.path().join("nli"));
    write_tiny_cross_encoder(&hf, &s.embedder.join("tokenizer.json"), 11).unwrap();
    import_cross_encoder(&hf, &nli, MAX_SEQ).unwrap();
    let bar = 0.33;
    let text = one_style_plan(
        &s,
        "echo WITH (system = 'Repeat the text.', user = '<text>\n{chunk}\n</text>', max_new_tokens = 12, gates = 'empty, entailment')",
        "",
        &format!(", entailment = '{}', min_entailment = {bar}", nli.display()),
    );
    let out = s.dir.path().join("out");
    let r = run_plan(&text, &[("output", out.to_str().unwrap())], 1).unwrap().rephrase.unwrap();
    let rows = read_parquet_rows(&out.join("synthetic"));
    for x in &rows {
        let least = x["entailment"].as_f64().expect("a kept row carries its least entailed claim");
        assert!(least >= bar, "{x:?}");
    }
    let failed: Vec<Value> = read_rejects(&out.join("rejects"))
        .into_iter()
        .filter(|x| x["reason"].as_str().unwrap().starts_with("entailment: "))
        .map(|x| serde_json::from_str(x["scores"].as_str().unwrap()).unwrap())
        .collect();
    for scores in &failed {
        let claims = scores["gates"]["entailment"].as_array().expect("the claims' readings are in the scores");
        assert!(claims.iter().any(|c| c["entailment"].as_f64().unwrap() < bar), "{scores}");
    }
    assert!(!rows.is_empty() && !failed.is_empty(), "the bar splits the random model's rows: {} kept", rows.len());
    assert_eq!((rows.len() + failed.len()) as u64, r.tasks, "every task is a kept row or an entailment reject");
    assert!(r.styles["echo"].p10_entailment.is_some_and(|p| p >= bar - 0.005), "{:?}", r.styles["echo"]);
}
