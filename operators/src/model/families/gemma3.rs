//! Gemma 3: sliding-window attention on most layers (local layers with their own rotary base),
//! GELU (tanh) in the MLP, embeddings scaled by √hidden, norms after attention and the MLP, and
//! Hugging Face norm weights stored as `w - 1`.

use anyhow::Context;
use serde_json::Value as Json;

use super::Family;
use crate::model::decoder::LlamaConfig;
use crate::model::formats::gguf::{Gguf, Value};

pub const FAMILY: Family = Family {
    gguf: "gemma3",
    model_type: "gemma3_text",
    hf_class: "Gemma3ForCausalLM",
    aliases: &["gemma3"],
    permuted_qk: false,
    hf_sandwich_norms: true,
    gguf_config,
    hf_config,
};

/// llama.cpp's own defaults where a file leaves them out: local layers rotate with base 10000,
/// and every sixth layer is global.
fn gguf_config(g: &Gguf, cfg: &mut LlamaConfig) -> anyhow::Result<()> {
    let key = |k: &str| format!("gemma3.{k}");
    let f = |k: &str, default: f64| g.metadata.get(&key(k)).and_then(|v| v.as_f64()).unwrap_or(default);
    cfg.sliding_window = Some(g.u64(&key("attention.sliding_window"))? as usize);
    match g.metadata.get(&key("attention.sliding_window_pattern")) {
        Some(Value::Array(layers)) => {
            cfg.sliding_layers = Some(layers.iter().map(|v| v == &Value::Bool(true)).collect())
        }
        other => cfg.sliding_window_pattern = Some(other.and_then(|v| v.as_u64()).unwrap_or(6) as usize),
    }
    cfg.rope_local_base_freq = Some(f("rope.freq_base_swa", 10000.0) as f32);
    cfg.rms_norm_eps = f("attention.layer_norm_rms_epsilon", 1e-6) as f32;
    common(cfg);
    Ok(())
}

fn hf_config(c: &Json, cfg: &mut LlamaConfig) -> anyhow::Result<()> {
    let u = |k: &str| c.get(k).and_then(Json::as_u64).map(|v| v as usize);
    let f = |k: &str| c.get(k).and_then(Json::as_f64);
    cfg.sliding_window = Some(u("sliding_window").context("config.json has no sliding_window")?);
    match c.get("layer_types").and_then(Json::as_array) {
        Some(types) => {
            cfg.sliding_layers = Some(types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect())
        }
        None => cfg.sliding_window_pattern = Some(u("sliding_window_pattern").unwrap_or(6)),
    }
    cfg.rope_local_base_freq = Some(f("rope_local_base_freq").unwrap_or(10000.0) as f32);
    cfg.query_pre_attn_scalar = f("query_pre_attn_scalar").map(|v| v as f32);
    common(cfg);
    Ok(())
}

fn common(cfg: &mut LlamaConfig) {
    cfg.hidden_activation = Some("gelu_pytorch_tanh".into());
    cfg.scale_embeddings = true;
}
