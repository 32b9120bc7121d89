//! Builds a Hugging Face `tokenizer.json` from a GGUF file's vocabulary and merges.

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

use super::gguf::{Gguf, Value};

/// GGUF token types that are never split or normalized (control and user-defined tokens).
const SPECIAL_TYPES: [u64; 2] = [3, 4];

/// The `tokenizer.json` document for a GGUF byte-level BPE (`tokenizer.ggml.model = gpt2`).
pub fn tokenizer_json(g: &Gguf) -> anyhow::Result<Json> {
    let model = g.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        bail!("tokenizer model {model:?} is not supported (byte-level BPE `gpt2` is)");
    }
    let tokens = g.get("tokenizer.ggml.tokens")?.as_array().context("tokenizer.ggml.tokens is not an array")?;
    let merges = g.get("tokenizer.ggml.merges")?.as_array().context("tokenizer.ggml.merges is not an array")?;
    let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        let t = t.as_str().context("a token is not a string")?;
        vocab.insert(t.to_string(), json!(id));
        if SPECIAL_TYPES.contains(&types.get(id).copied().unwrap_or(1)) {
            added.push(json!({
                "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true
            }));
        }
    }
    let merges: Vec<&str> = merges.iter().filter_map(Value::as_str).collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre = match g.str("tokenizer.ggml.pre").unwrap_or("default") {
        // SmolLM2 splits numbers into single digits before the GPT-2 split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
        "gpt2" | "default" => byte_level.clone(),
        other => bail!("pre-tokenizer {other:?} is not supported yet (smollm, gpt2 are)"),
    };
    let unk = g
        .metadata
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(Value::as_u64)
        .and_then(|i| tokens.get(i as usize))
        .and_then(Value::as_str);
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges
        }
    }))
}

/// The chat template stored in the GGUF, if any.
pub fn chat_template(g: &Gguf) -> Option<String> {
    g.metadata.get("tokenizer.chat_template").and_then(Value::as_str).map(str::to_string)
}
