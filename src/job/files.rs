//! The files a run depends on besides its plan text and parameters (tokenizers, the rephrasing
//! model, the embedder), by content hash: a resumed run whose files changed would mix two
//! vocabularies or two models in one output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::plan::Plan;

/// The files a plan names, by what names them.
fn named(plan: &Plan) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    let mut add = |what: String, path: &str| {
        if !path.is_empty() && !out.iter().any(|(_, p)| p.as_path() == Path::new(path)) {
            out.push((what, path.into()));
        }
    };
    if let Some(t) = &plan.tokenizer {
        add("TOKENIZER".into(), t);
    }
    if let Some(t) = &plan.chunk.0.tokenizer {
        add("the CHUNK tokenizer".into(), t);
    }
    let mut model_dir = |what: &str, dir: &str| {
        add(format!("the {what} tokenizer"), &format!("{dir}/tokenizer.json"));
        add(format!("the {what}"), &format!("{dir}/model.onnx"));
    };
    for (r, _) in plan.rephrase.iter().filter(|(r, _)| r.endpoint.is_empty()) {
        model_dir("REPHRASE model", &r.model);
    }
    if !plan.gates.embedder.is_empty() {
        model_dir("GATES embedder", &plan.gates.embedder);
    }
    if !plan.gates.grounding_model.is_empty() {
        model_dir("GATES grounding model", &plan.gates.grounding_model);
    }
    if !plan.gates.entailment.is_empty() {
        model_dir("GATES entailment model", &plan.gates.entailment);
    }
    for (name, cfg, _) in &plan.mixes {
        add(format!("the MIX {name} tokenizer"), &cfg.tokenizer);
    }
    out
}

/// The content hash (blake3; a model's with its external data) of each file the plan names,
/// keyed by what names it and its path. A named file that is not there is left to the stage that
/// reads it to report.
pub fn hashes(plan: &Plan) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (what, path) in named(plan) {
        if path.is_file() {
            let hash = wrapflow_operators::model::formats::onnx::file::model_hash(&path)
                .with_context(|| format!("hashing {what} {}", path.display()))?;
            out.insert(format!("{what} ({})", path.display()), hash);
        }
    }
    Ok(out)
}

/// What changed between the files a run began with and those of now, for people (nothing when
/// the run recorded none: a marker of an older wrapflow).
pub fn changed(then: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    if then.is_empty() {
        return vec![];
    }
    let names: BTreeSet<&String> = then.keys().chain(now.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        match (then.get(n), now.get(n)) {
            (Some(a), Some(b)) if a != b => out.push(format!("{n} changed (was {a}, now {b})")),
            (Some(_), None) => out.push(format!("{n} is gone or no longer named")),
            (None, Some(_)) => out.push(format!("{n} is newly named")),
            _ => {}
        }
    }
    out
}
