//! `wrapflow model import`: a llama-architecture GGUF file → a model directory that wrapflow
//! (and any runtime that reads optimum's layout) can run:
//!
//! ```text
//! model.onnx              decoder with KV cache (see `llama`)
//! config.json             Hugging Face LlamaConfig fields + a `wrapflow` section
//! tokenizer.json          built from the GGUF vocabulary and merges
//! tokenizer_config.json   special tokens and the chat template
//! chat_template.jinja
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::gguf::Gguf;
use super::llama::{KvLayout, LayerWeights, LlamaConfig, LlamaWeights, build};
use super::quant::{dequantize, linear, unpermute_rows};

/// Weight formats of an imported model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// Everything dequantized to f32: the quality reference.
    Fp32,
    /// The GGUF's own Q4_1 blocks, run by ONNX Runtime's `MatMulNBits` with f32 compute.
    Q4,
}

impl std::str::FromStr for WeightFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "fp32" => Ok(WeightFormat::Fp32),
            "q4" => Ok(WeightFormat::Q4),
            other => bail!("unknown weight format {other:?} (fp32 or q4)"),
        }
    }
}

impl std::str::FromStr for KvLayout {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "shared" => Ok(KvLayout::Shared),
            "shared-ort" => Ok(KvLayout::SharedOrt),
            "standard" => Ok(KvLayout::Standard),
            other => bail!("unknown KV cache layout {other:?} (shared, shared-ort or standard)"),
        }
    }
}

/// The `config.json` of a model directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(flatten)]
    pub llama: LlamaConfig,
    pub model_type: String,
    pub architectures: Vec<String>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub wrapflow: Option<ImportInfo>,
}

/// Where an imported model came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportInfo {
    pub source: String,
    pub weights: WeightFormat,
    /// blake3 of model.onnx.
    pub weights_hash: String,
    /// How the graph keeps its KV cache (imports before this field: `standard`).
    #[serde(default)]
    pub kv_cache: KvLayout,
}

fn meta_u(g: &Gguf, key: &str) -> anyhow::Result<usize> {
    Ok(g.u64(key)? as usize)
}

/// The llama shape stored in a GGUF.
pub fn llama_config(g: &Gguf) -> anyhow::Result<LlamaConfig> {
    let arch = g.str("general.architecture")?;
    if arch != "llama" {
        bail!("architecture {arch:?} is not supported (llama is)");
    }
    let vocab = g.get("tokenizer.ggml.tokens")?.as_array().map(|a| a.len()).context("no vocabulary")?;
    let f = |k: &str, default: f64| g.metadata.get(k).and_then(|v| v.as_f64()).unwrap_or(default);
    let heads = meta_u(g, "llama.attention.head_count")?;
    Ok(LlamaConfig {
        vocab_size: vocab,
        hidden_size: meta_u(g, "llama.embedding_length")?,
        num_hidden_layers: meta_u(g, "llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: g.u64("llama.attention.head_count_kv").map(|v| v as usize).unwrap_or(heads),
        intermediate_size: meta_u(g, "llama.feed_forward_length")?,
        rope_theta: f("llama.rope.freq_base", 10000.0) as f32,
        rms_norm_eps: f("llama.attention.layer_norm_rms_epsilon", 1e-5) as f32,
        max_position_embeddings: g.u64("llama.context_length").unwrap_or(2048) as usize,
    })
}

/// Reads every weight of a llama GGUF in the requested format.
pub fn llama_weights(g: &Gguf, cfg: &LlamaConfig, format: WeightFormat) -> anyhow::Result<LlamaWeights> {
    let q4 = format == WeightFormat::Q4;
    let t = |name: &str| g.tensor(name);
    let q_src = unpermute_rows(cfg.num_attention_heads * cfg.head_dim(), cfg.num_attention_heads);
    let k_src = unpermute_rows(cfg.num_key_value_heads * cfg.head_dim(), cfg.num_key_value_heads);
    let mut layers = Vec::new();
    for i in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        layers.push(LayerWeights {
            attn_norm: dequantize(g, t(&p("attn_norm"))?)?,
            q: linear(g, t(&p("attn_q"))?, q4, Some(&q_src))?,
            k: linear(g, t(&p("attn_k"))?, q4, Some(&k_src))?,
            v: linear(g, t(&p("attn_v"))?, q4, None)?,
            o: linear(g, t(&p("attn_output"))?, q4, None)?,
            ffn_norm: dequantize(g, t(&p("ffn_norm"))?)?,
            gate: linear(g, t(&p("ffn_gate"))?, q4, None)?,
            up: linear(g, t(&p("ffn_up"))?, q4, None)?,
            down: linear(g, t(&p("ffn_down"))?, q4, None)?,
        });
    }
    if g.tensor("output.weight").is_ok() {
        bail!("a separate output.weight (untied head) is not supported yet");
    }
    Ok(LlamaWeights {
        embed: dequantize(g, t("token_embd.weight")?)?,
        layers,
        final_norm: dequantize(g, t("output_norm.weight")?)?,
    })
}

/// Writes model.onnx and config.json for a config and weights, returning the config written.
pub fn write_model(
    out: &Path,
    cfg: &LlamaConfig,
    weights: &LlamaWeights,
    format: WeightFormat,
    layout: KvLayout,
    source: &str,
    special: (Option<u32>, Option<u32>, Option<u32>),
) -> anyhow::Result<ModelConfig> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let onnx = build(cfg, weights, layout, &[("source", source.to_string())]);
    let hash = format!("blake3:{}", blake3::hash(&onnx).to_hex());
    std::fs::write(out.join("model.onnx"), &onnx)?;
    let config = ModelConfig {
        llama: cfg.clone(),
        model_type: "llama".into(),
        architectures: vec!["LlamaForCausalLM".into()],
        tie_word_embeddings: true,
        bos_token_id: special.0,
        eos_token_id: special.1,
        pad_token_id: special.2,
        wrapflow: Some(ImportInfo { source: source.into(), weights: format, weights_hash: hash, kv_cache: layout }),
    };
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(config)
}

/// Imports a GGUF file into `out` with the given weight format and cache layout.
pub fn import(gguf: &Path, out: &Path, format: WeightFormat, layout: KvLayout) -> anyhow::Result<ModelConfig> {
    let g = Gguf::open(gguf)?;
    let cfg = llama_config(&g)?;
    let weights = llama_weights(&g, &cfg, format)?;
    let id = |k: &str| g.metadata.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
    let special =
        (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"), id("tokenizer.ggml.padding_token_id"));
    let source = gguf.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let config = write_model(out, &cfg, &weights, format, layout, &source, special)?;
    super::write_tokenizer_files(&g, out)?;
    Ok(config)
}
