//! Builds a Hugging Face `tokenizer.json` from a GGUF file's vocabulary and merges.

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

use crate::model::formats::gguf::{Gguf, Value};

/// Llama 3's split, as llama.cpp writes it (its tokenizer.json's `(?i:'s|...)` spelled out).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types that are never split or normalized (control and user-defined tokens).
const SPECIAL_TYPES: [u64; 2] = [3, 4];

/// The `tokenizer.json` document for a GGUF's tokenizer: byte-level BPE
/// (`tokenizer.ggml.model = gpt2`) or SentencePiece (`llama`).
pub fn tokenizer_json(g: &Gguf) -> anyhow::Result<Json> {
    match g.str("tokenizer.ggml.model")? {
        "gpt2" => byte_level_bpe(g),
        "llama" => sentencepiece(g),
        other => {
            bail!("tokenizer model {other:?} is not supported (byte-level BPE `gpt2` and SentencePiece `llama` are)")
        }
    }
}

/// Control and user-defined tokens as `tokenizer.json` added tokens: matched in the raw text
/// before the model splits it, as llama.cpp does.
fn added_tokens(tokens: &[Value], types: &[u64]) -> Vec<Json> {
    let mut added = vec![];
    for (id, t) in tokens.iter().enumerate() {
        let ty = types.get(id).copied().unwrap_or(1);
        if let (true, Some(t)) = (SPECIAL_TYPES.contains(&ty), t.as_str()) {
            added.push(json!({
                "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == 3
            }));
        }
    }
    added
}

/// Each token's GGUF type (1, normal, where the file has none).
fn token_types(g: &Gguf, n: usize) -> Vec<u64> {
    match g.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => vec![1; n],
    }
}

/// SentencePiece's BPE (llama.cpp's `llama` tokenizer model, as Gemma and Llama 2 use): spaces
/// become `▁`, adjacent pieces merge highest score first, and characters outside the vocabulary
/// fall back to `<0xXX>` byte tokens. As a `tokenizer.json` BPE, the merges are every split of
/// every piece into two pieces, ranked by the merged piece's score (as Hugging Face's converter
/// derives them).
fn sentencepiece(g: &Gguf) -> anyhow::Result<Json> {
    let tokens = g.get("tokenizer.ggml.tokens")?.as_array().context("tokenizer.ggml.tokens is not an array")?;
    let scores: Vec<f64> = match g.metadata.get("tokenizer.ggml.scores") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
        _ => bail!("a SentencePiece vocabulary needs tokenizer.ggml.scores"),
    };
    let types = token_types(g, tokens.len());
    let pieces: Vec<&str> = tokens.iter().map(|t| t.as_str().unwrap_or("")).collect();
    let ids: std::collections::HashMap<&str, usize> = pieces.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut merges: Vec<(f64, &str, &str)> = vec![];
    for (id, piece) in pieces.iter().enumerate() {
        let mut local: Vec<(usize, usize, &str, &str)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, l, r))
            })
            .collect();
        local.sort_unstable();
        merges.extend(local.into_iter().map(|(_, _, l, r)| (scores[id], l, r)));
    }
    // Stable: equal scores keep the order of the merged pieces' ids.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let vocab: serde_json::Map<String, Json> =
        pieces.iter().enumerate().map(|(i, p)| (p.to_string(), json!(i))).collect();
    let unk =
        g.metadata.get("tokenizer.ggml.unknown_token_id").and_then(Value::as_u64).and_then(|i| pieces.get(i as usize));
    let space_prefix = g.metadata.get("tokenizer.ggml.add_space_prefix") == Some(&Value::Bool(true));
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let normalizer = if space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let merges: Vec<Json> = merges.into_iter().map(|(_, l, r)| json!([l, r])).collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, &types),
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges
        }
    }))
}

/// Byte-level BPE (`gpt2`), as GPT-2, Llama 3, Qwen and SmolLM use.
fn byte_level_bpe(g: &Gguf) -> anyhow::Result<Json> {
    let tokens = g.get("tokenizer.ggml.tokens")?.as_array().context("tokenizer.ggml.tokens is not an array")?;
    let merges = g.get("tokenizer.ggml.merges")?.as_array().context("tokenizer.ggml.merges is not an array")?;
    let types = token_types(g, tokens.len());
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
    // Llama 3 and Qwen2 split with their own regex, then map bytes without GPT-2's split.
    let split_then_bytes = |pattern: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})
    };
    let (pre, ignore_merges) = match g.str("tokenizer.ggml.pre").unwrap_or("default") {
        // SmolLM2 splits numbers into single digits before the GPT-2 split.
        "smollm" => (
            json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
            false,
        ),
        "gpt2" | "gpt-2" | "default" => (byte_level.clone(), false),
        // llama.cpp also takes a whole word that is in the vocabulary as it is (ignore_merges).
        "llama3" | "llama-v3" | "llama-bpe" => (split_then_bytes(LLAMA3_SPLIT), true),
        "qwen2" | "deepseek-r1-qwen" => (split_then_bytes(QWEN2_SPLIT), false),
        other => bail!("pre-tokenizer {other:?} is not supported yet (smollm, gpt2, llama-bpe, qwen2 are)"),
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
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges
        }
    }))
}

/// The chat template stored in the GGUF, if any.
pub fn chat_template(g: &Gguf) -> Option<String> {
    g.metadata.get("tokenizer.chat_template").and_then(Value::as_str).map(str::to_string)
}
