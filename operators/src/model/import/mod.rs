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

pub mod hf;
pub mod inspect;

use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::model::decoder::export::build;
pub use crate::model::decoder::quant::WeightFormat;
use crate::model::decoder::quant::{TypeAction, import_actions};
use crate::model::decoder::quant::{dequantize, dequantized_as, linear, unpermute_rows};
use crate::model::decoder::{KvLayout, LayerWeights, Linear, LlamaConfig, LlamaWeights};
use crate::model::families::{Family, by_gguf};
use crate::model::formats::gguf::{Gguf, TensorInfo};
use crate::model::formats::onnx::graph::Graph;

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
    /// Per GGUF tensor type, what the import did with its tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TypeAction>,
    /// The weight files the import wrote (`model.onnx`, and `model.onnx.data` when external):
    /// `weights_hash` covers these and no leftover of an earlier import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// The decoder shape stored in a GGUF (keys under its architecture's prefix).
pub fn llama_config(g: &Gguf) -> anyhow::Result<LlamaConfig> {
    let arch = g.str("general.architecture")?;
    let fam = by_gguf(arch)?;
    let key = |k: &str| format!("{arch}.{k}");
    let u = |k: &str| g.u64(&key(k)).map(|v| v as usize);
    let f = |k: &str, default: f64| g.metadata.get(&key(k)).and_then(|v| v.as_f64()).unwrap_or(default);
    let vocab = g.get("tokenizer.ggml.tokens")?.as_array().map(|a| a.len()).context("no vocabulary")?;
    let (hidden, heads) = (u("embedding_length")?, u("attention.head_count")?);
    let head_dim = u("attention.key_length").ok();
    if let (Some(k), Ok(v)) = (head_dim, u("attention.value_length")) {
        ensure!(k == v, "key length {k} differs from value length {v}: not supported");
    }
    let mut cfg = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        num_hidden_layers: u("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: u("attention.head_count_kv").unwrap_or(heads),
        intermediate_size: u("feed_forward_length")?,
        rope_theta: f("rope.freq_base", 10000.0) as f32,
        rms_norm_eps: f("attention.layer_norm_rms_epsilon", 1e-5) as f32,
        max_position_embeddings: u("context_length").unwrap_or(2048),
        head_dim,
        ..Default::default()
    }
    .validated()?;
    let scaling = g.metadata.get(&key("rope.scaling.type")).and_then(|v| v.as_str()).unwrap_or("none");
    let factor = f("rope.scaling.factor", 1.0);
    match scaling {
        "linear" if factor != 1.0 => cfg.rope_linear_factor = Some(factor as f32),
        "none" | "linear" => {}
        _ if factor == 1.0 => {}
        other => bail!(
            "rope scaling {other:?} (factor {factor}) is not supported (none, linear and llama3's rope_freqs are)"
        ),
    }
    if let Ok(t) = g.tensor("rope_freqs.weight") {
        let factors = dequantize(g, t)?;
        ensure!(
            factors.len() == cfg.head_dim() / 2,
            "rope_freqs has {} values for head size {}",
            factors.len(),
            cfg.head_dim()
        );
        cfg.rope_freq_factors = Some(factors);
    }
    (fam.gguf_config)(g, &mut cfg)?;
    Ok(cfg)
}

/// Reads every weight of a GGUF decoder in the requested format.
pub fn llama_weights(g: &Gguf, cfg: &LlamaConfig, format: WeightFormat) -> anyhow::Result<LlamaWeights> {
    let fam = by_gguf(g.str("general.architecture")?)?;
    if g.tensor("rope_factors_long.weight").is_ok() || g.tensor("rope_factors_short.weight").is_ok() {
        bail!("LongRoPE scaling (rope_factors_long/short, as in Phi-3 128k models) is not supported");
    }
    // Every tensor must have the shape the config gives it (GGUF order: input dimension
    // first): a hostile or broken file is an error here, never an index out of bounds later.
    let t = |name: &str, dims: &[usize]| -> anyhow::Result<&TensorInfo> {
        let t = g.tensor(name)?;
        ensure!(
            t.dims.iter().map(|&x| x as usize).eq(dims.iter().copied()),
            "tensor {name} has shape {:?}; this model's config needs {dims:?}",
            t.dims
        );
        Ok(t)
    };
    let d = cfg.head_dim();
    let q_src = unpermute_rows(cfg.num_attention_heads * d, cfg.num_attention_heads);
    let k_src = unpermute_rows(cfg.num_key_value_heads * d, cfg.num_key_value_heads);
    let (q_src, k_src) = if fam.permuted_qk { (Some(&q_src[..]), Some(&k_src[..])) } else { (None, None) };
    let mut layers = Vec::new();
    for i in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let (q_rows, kv_rows) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
        let optional = |name: String, len: usize| -> anyhow::Result<Option<Vec<f32>>> {
            if g.tensor(&name).is_err() {
                return Ok(None);
            }
            dequantize(g, t(&name, &[len])?).map(Some)
        };
        let biases = [
            optional(format!("blk.{i}.attn_q.bias"), q_rows)?,
            optional(format!("blk.{i}.attn_k.bias"), kv_rows)?,
            optional(format!("blk.{i}.attn_v.bias"), kv_rows)?,
        ];
        let qkv_bias = match biases {
            [Some(q), Some(k), Some(v)] => Some([q, k, v].concat()),
            [None, None, None] => None,
            _ => bail!("layer {i} has biases on some of Q, K and V only"),
        };
        let qk_norm = match (optional(p("attn_q_norm"), d)?, optional(p("attn_k_norm"), d)?) {
            (Some(q), Some(k)) => Some((q, k)),
            (None, None) => None,
            _ => bail!("layer {i} has a norm on one of Q and K only"),
        };
        let post_norms = match (optional(p("post_attention_norm"), h)?, optional(p("post_ffw_norm"), h)?) {
            (Some(a), Some(f)) => Some((a, f)),
            (None, None) => None,
            _ => bail!("layer {i} has a norm after one of attention and feed-forward only"),
        };
        // Phi-3 fuses Q, K and V into one tensor, and the gate and up projections into another.
        let [q, k, v] = match g.tensor(&p("attn_qkv")) {
            Ok(_) => {
                let fused = t(&p("attn_qkv"), &[h, q_rows + 2 * kv_rows])?;
                split3(linear(g, fused, format, None)?.split_rows(h, &[q_rows, kv_rows, kv_rows]))
            }
            Err(_) => [
                linear(g, t(&p("attn_q"), &[h, q_rows])?, format, q_src)?,
                linear(g, t(&p("attn_k"), &[h, kv_rows])?, format, k_src)?,
                linear(g, t(&p("attn_v"), &[h, kv_rows])?, format, None)?,
            ],
        };
        let (gate, up) = match g.tensor(&p("ffn_gate")) {
            Ok(_) => (
                linear(g, t(&p("ffn_gate"), &[h, f])?, format, None)?,
                linear(g, t(&p("ffn_up"), &[h, f])?, format, None)?,
            ),
            Err(_) => {
                let fused = linear(g, t(&p("ffn_up"), &[h, 2 * f])?, format, None)?;
                let [gate, up, _] = split3(fused.split_rows(h, &[f, f, 0]));
                (gate, up)
            }
        };
        layers.push(LayerWeights {
            attn_norm: dequantize(g, t(&p("attn_norm"), &[h])?)?,
            q,
            k,
            v,
            o: linear(g, t(&p("attn_output"), &[q_rows, h])?, format, None)?,
            ffn_norm: dequantize(g, t(&p("ffn_norm"), &[h])?)?,
            gate,
            up,
            down: linear(g, t(&p("ffn_down"), &[f, h])?, format, None)?,
            qkv_bias,
            qk_norm,
            post_norms,
        });
    }
    let (h, vocab) = (cfg.hidden_size, cfg.vocab_size);
    let output = match g.tensor("output.weight") {
        Ok(_) => Some(linear(g, t("output.weight", &[h, vocab])?, format, None)?),
        Err(_) => None,
    };
    Ok(LlamaWeights {
        embed: dequantized_as(g, t("token_embd.weight", &[h, vocab])?, format)?,
        layers,
        final_norm: dequantize(g, t("output_norm.weight", &[h])?)?,
        output,
    })
}

/// How to write an imported model. The default is the command line's: fp32 weights, the shared
/// KV cache, weights inside model.onnx while they fit.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    pub weights: WeightFormat,
    pub kv_cache: KvLayout,
    /// Keep the weights in `model.onnx.data` beside `model.onnx` even when the model is small
    /// enough to hold them (it always does past protobuf's 2 GiB limit).
    pub external_data: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { weights: WeightFormat::Fp32, kv_cache: KvLayout::Shared, external_data: false }
    }
}

/// What [`write_model`] records about where a model came from.
pub struct Origin<'a> {
    /// The file or directory imported.
    pub source: &'a str,
    /// BOS, EOS and padding token ids.
    pub special: (Option<u32>, Option<u32>, Option<u32>),
    pub family: Family,
    /// What the import did per tensor type (empty for models not read from a file).
    pub tensors: Vec<TypeAction>,
}

fn split3(parts: Vec<Linear>) -> [Linear; 3] {
    parts.try_into().unwrap_or_else(|_| unreachable!("three sizes give three parts"))
}

/// Writes model.onnx (with model.onnx.data when external) and config.json for a config and
/// weights, returning the config written. The weights go to disk layer by layer as the graph is
/// built, so the import holds them once.
pub fn write_model(
    out: &Path,
    cfg: &LlamaConfig,
    weights: LlamaWeights,
    opts: &ImportOptions,
    origin: &Origin,
) -> anyhow::Result<ModelConfig> {
    let tied = weights.output.is_none();
    let Origin { source, special, family, tensors } = origin;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let int8 = opts.weights == WeightFormat::Int8;
    let (graph, doc) = build(cfg, weights, opts.kv_cache, int8, Graph::spilling(out)?);
    let written = graph.write(out, doc, &[("source", source.to_string())], opts.external_data)?;
    let mut files = vec!["model.onnx".to_string()];
    if written.external {
        files.push(crate::model::formats::onnx::file::DATA_FILE.to_string());
    } else if out.join(crate::model::formats::onnx::file::DATA_FILE).exists() {
        // Not removed: the import did not write it. Not read either: the model holds its weights.
        tracing::warn!(
            "{} is left from an earlier import: this model does not use it (delete it)",
            out.join(crate::model::formats::onnx::file::DATA_FILE).display()
        );
    }
    let config = ModelConfig {
        llama: cfg.clone(),
        model_type: family.model_type.into(),
        architectures: vec![family.hf_class.into()],
        tie_word_embeddings: tied,
        bos_token_id: special.0,
        eos_token_id: special.1,
        pad_token_id: special.2,
        wrapflow: Some(ImportInfo {
            source: source.to_string(),
            weights: opts.weights,
            weights_hash: written.hash,
            kv_cache: opts.kv_cache,
            tensors: tensors.clone(),
            files,
        }),
    };
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(config)
}

/// Imports a GGUF file into `out`.
pub fn import(gguf: &Path, out: &Path, opts: &ImportOptions) -> anyhow::Result<ModelConfig> {
    let g = Gguf::open(gguf)?;
    let cfg = llama_config(&g)?;
    let weights = llama_weights(&g, &cfg, opts.weights)?;
    let id = |k: &str| g.metadata.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
    let special =
        (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"), id("tokenizer.ggml.padding_token_id"));
    let source = gguf.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let origin = Origin {
        source: &source,
        special,
        family: by_gguf(g.str("general.architecture")?)?,
        tensors: import_actions(&g, opts.weights),
    };
    let config = write_model(out, &cfg, weights, opts, &origin)?;
    crate::model::write_tokenizer_files(&g, out)?;
    Ok(config)
}
