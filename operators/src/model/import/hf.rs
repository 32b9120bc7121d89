//! Hugging Face decoder folders: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), `tokenizer.json` and `tokenizer_config.json`, with f32, f16
//! or bf16 weights, imported to the same model directory as a GGUF of the same family. A folder
//! with `model.onnx` instead of safetensors (a decoder already exported, e.g. by optimum) is read
//! through [`OnnxTensors`] under the same names.

use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde_json::Value as Json;

use crate::model::decoder::quant::in_format;
use crate::model::decoder::{LayerWeights, LlamaConfig, LlamaWeights, llama3_freq_factors};
use crate::model::families::{Family, by_model_type as family};
use crate::model::formats::onnx::read::OnnxTensors;
use crate::model::formats::safetensors::Shards;
use crate::model::import::inspect::Inspection;
use crate::model::import::{ImportOptions, ModelConfig, Origin, WeightFormat, write_model};

/// Where a folder's weights are: safetensors files, or the initializers of a decoder already
/// exported to ONNX (`model.onnx`, e.g. optimum's standard past/present layout).
enum Weights {
    Safetensors(Shards),
    Onnx(OnnxTensors),
}

impl Weights {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let safetensors = ["model.safetensors", "model.safetensors.index.json"].iter().any(|f| dir.join(f).is_file());
        if !safetensors && dir.join("model.onnx").is_file() {
            return Ok(Weights::Onnx(OnnxTensors::open(dir)?));
        }
        Ok(Weights::Safetensors(Shards::open(dir)?))
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Weights::Safetensors(s) => s.has(name),
            Weights::Onnx(o) => o.has(name),
        }
    }

    fn f32(&self, name: &str) -> anyhow::Result<Vec<f32>> {
        match self {
            Weights::Safetensors(s) => s.f32(name),
            Weights::Onnx(o) => o.f32(name),
        }
    }
}

/// The decoder shape in a `config.json` (Gemma 3's multimodal configs keep it in `text_config`).
fn config(c: &Json, fam: Family) -> anyhow::Result<LlamaConfig> {
    let u = |k: &str| c.get(k).and_then(Json::as_u64).map(|v| v as usize);
    let f = |k: &str| c.get(k).and_then(Json::as_f64);
    let need = |k: &str| u(k).with_context(|| format!("config.json has no {k}"));
    let (hidden, heads) = (need("hidden_size")?, need("num_attention_heads")?);
    let mut cfg = LlamaConfig {
        vocab_size: need("vocab_size")?,
        hidden_size: hidden,
        num_hidden_layers: need("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: u("num_key_value_heads").unwrap_or(heads),
        intermediate_size: need("intermediate_size")?,
        rope_theta: f("rope_theta").unwrap_or(10000.0) as f32,
        rms_norm_eps: f("rms_norm_eps").unwrap_or(1e-6) as f32,
        max_position_embeddings: u("max_position_embeddings").unwrap_or(2048),
        head_dim: u("head_dim"),
        ..Default::default()
    }
    .validated()?;
    rope_scaling(c, &mut cfg)?;
    (fam.hf_config)(c, &mut cfg)?;
    Ok(cfg)
}

/// `rope_scaling` of a config.json: none, linear, or Llama 3.1's "llama3" (as per-frequency
/// factors); anything else is refused rather than run with the wrong rotary.
fn rope_scaling(c: &Json, cfg: &mut LlamaConfig) -> anyhow::Result<()> {
    let Some(rs) = c.get("rope_scaling").filter(|v| !v.is_null()) else { return Ok(()) };
    let kind = rs.get("rope_type").or(rs.get("type")).and_then(Json::as_str).unwrap_or("default");
    let num = |k: &str| rs.get(k).and_then(Json::as_f64).with_context(|| format!("rope_scaling has no {k}"));
    match kind {
        "default" => {}
        "linear" => cfg.rope_linear_factor = Some(num("factor")? as f32).filter(|&f| f != 1.0),
        "llama3" => {
            let factors = llama3_freq_factors(
                cfg.rope_theta,
                cfg.head_dim(),
                num("factor")?,
                num("low_freq_factor")?,
                num("high_freq_factor")?,
                num("original_max_position_embeddings")?,
            );
            cfg.rope_freq_factors = Some(factors);
        }
        other => bail!("rope scaling {other:?} is not supported (default, linear and llama3 are)"),
    }
    Ok(())
}

/// Reads the layer weights of a Hugging Face folder.
fn weights(s: &Weights, cfg: &LlamaConfig, fam: Family, format: WeightFormat) -> anyhow::Result<LlamaWeights> {
    // Gemma's RMSNorm multiplies by (1 + w); GGUF files and wrapflow's graph store 1 + w.
    let sandwich = fam.hf_sandwich_norms;
    // Every tensor must hold what the config says it holds: a broken or hostile folder is an
    // error here, never a slice out of bounds later.
    let sized = |name: &str, len: usize| -> anyhow::Result<Vec<f32>> {
        let w = s.f32(name)?;
        ensure!(w.len() == len, "tensor {name} holds {} values; this model's config needs {len}", w.len());
        Ok(w)
    };
    let (h, d, f) = (cfg.hidden_size, cfg.head_dim(), cfg.intermediate_size);
    let norm = |name: &str, len: usize| -> anyhow::Result<Vec<f32>> {
        let w = sized(name, len)?;
        Ok(if sandwich { w.iter().map(|v| v + 1.0).collect() } else { w })
    };
    let lin = |name: &str, rows: usize| sized(name, rows * h).map(|w| in_format(w, format));
    let (q_rows, kv_rows) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
    let mut layers = vec![];
    for i in 0..cfg.num_hidden_layers {
        let p = |n: &str| format!("model.layers.{i}.{n}");
        let [q, k, v] = if s.has(&p("self_attn.qkv_proj.weight")) {
            let parts =
                lin(&p("self_attn.qkv_proj.weight"), q_rows + 2 * kv_rows)?.split_rows(h, &[q_rows, kv_rows, kv_rows]);
            parts.try_into().unwrap_or_else(|_| unreachable!())
        } else {
            [
                lin(&p("self_attn.q_proj.weight"), q_rows)?,
                lin(&p("self_attn.k_proj.weight"), kv_rows)?,
                lin(&p("self_attn.v_proj.weight"), kv_rows)?,
            ]
        };
        let (gate, up) = if s.has(&p("mlp.gate_up_proj.weight")) {
            let mut parts = lin(&p("mlp.gate_up_proj.weight"), 2 * f)?.split_rows(h, &[f, f]).into_iter();
            (parts.next().context("gate")?, parts.next().context("up")?)
        } else {
            (lin(&p("mlp.gate_proj.weight"), f)?, lin(&p("mlp.up_proj.weight"), f)?)
        };
        let qkv_bias = if s.has(&p("self_attn.q_proj.bias")) {
            Some(
                [
                    sized(&p("self_attn.q_proj.bias"), q_rows)?,
                    sized(&p("self_attn.k_proj.bias"), kv_rows)?,
                    sized(&p("self_attn.v_proj.bias"), kv_rows)?,
                ]
                .concat(),
            )
        } else {
            None
        };
        let qk_norm = match s.has(&p("self_attn.q_norm.weight")) {
            true => Some((norm(&p("self_attn.q_norm.weight"), d)?, norm(&p("self_attn.k_norm.weight"), d)?)),
            false => None,
        };
        // Gemma 3 names its pre-MLP norm `pre_feedforward_layernorm` and norms both outputs.
        let (ffn_norm, post_norms) = if sandwich {
            let post =
                (norm(&p("post_attention_layernorm.weight"), h)?, norm(&p("post_feedforward_layernorm.weight"), h)?);
            (norm(&p("pre_feedforward_layernorm.weight"), h)?, Some(post))
        } else {
            (norm(&p("post_attention_layernorm.weight"), h)?, None)
        };
        layers.push(LayerWeights {
            attn_norm: norm(&p("input_layernorm.weight"), h)?,
            q,
            k,
            v,
            o: sized(&p("self_attn.o_proj.weight"), h * q_rows).map(|w| in_format(w, format))?,
            ffn_norm,
            gate,
            up,
            down: sized(&p("mlp.down_proj.weight"), h * f).map(|w| in_format(w, format))?,
            qkv_bias,
            qk_norm,
            post_norms,
        });
    }
    let vocab = cfg.vocab_size;
    let output = if s.has("lm_head.weight") { Some(lin("lm_head.weight", vocab)?) } else { None };
    Ok(LlamaWeights {
        embed: in_format(sized("model.embed_tokens.weight", vocab * h)?, format),
        layers,
        final_norm: norm("model.norm.weight", h)?,
        output,
    })
}

/// Reads a folder's `config.json`, the decoder config inside it (Gemma 3's multimodal configs keep
/// it in `text_config`), and its `model_type`.
fn read_config(dir: &Path) -> anyhow::Result<(Json, Json, String)> {
    let raw: Json = serde_json::from_slice(&std::fs::read(dir.join("config.json")).context("reading config.json")?)
        .context("parsing config.json")?;
    let c = raw.get("text_config").filter(|t| t.is_object()).unwrap_or(&raw).clone();
    let model_type =
        c.get("model_type").or(raw.get("model_type")).and_then(Json::as_str).unwrap_or_default().to_string();
    Ok((raw, c, model_type))
}

/// What a Hugging Face folder holds and whether wrapflow imports it, from its config and the
/// safetensors headers (no weights are read).
pub fn inspect_folder(dir: &Path) -> anyhow::Result<Inspection> {
    let (_, c, model_type) = read_config(dir)?;
    let shards = Shards::open(dir)?;
    let (mut parameters, mut tensor_types) = (0u64, std::collections::BTreeMap::new());
    for (elements, dtype) in shards.headers()? {
        parameters += elements as u64;
        *tensor_types.entry(format!("{dtype:?}")).or_insert(0) += 1;
    }
    let u = |k: &str| c.get(k).and_then(Json::as_u64);
    let tok_cfg: Json = std::fs::read(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let importable = family(&model_type).and_then(|fam| {
        config(&c, fam)?;
        ensure!(dir.join("tokenizer.json").is_file(), "no tokenizer.json");
        // The import needs weights: at least the token embeddings.
        ensure!(
            shards.names().any(|n| n.ends_with("embed_tokens.weight")),
            "no weights: the safetensors files hold {} tensors and no token embeddings (embed_tokens.weight)",
            shards.names().count()
        );
        Ok(format!("yes, as {} (--weights fp32; 4-bit needs a GGUF of the model)", fam.model_type))
    });
    Ok(Inspection {
        file: dir.display().to_string(),
        architecture: model_type,
        name: None,
        parameters,
        layers: u("num_hidden_layers"),
        hidden: u("hidden_size"),
        heads: u("num_attention_heads"),
        kv_heads: u("num_key_value_heads").or(u("num_attention_heads")),
        context: u("max_position_embeddings"),
        vocabulary: u("vocab_size").map(|v| v as usize),
        tensor_types,
        tokenizer: dir.join("tokenizer.json").is_file().then(|| "tokenizer.json".to_string()),
        chat_template: tok_cfg.get("chat_template").is_some_and(|t| !t.is_null())
            || dir.join("chat_template.jinja").is_file(),
        importable: importable.map_err(|e| format!("{e:#}")),
    })
}

/// Imports a Hugging Face decoder folder into `out`.
pub fn import_folder(dir: &Path, out: &Path, opts: &ImportOptions) -> anyhow::Result<ModelConfig> {
    let format = opts.weights;
    let (raw, c, model_type) = read_config(dir)?;
    let c = &c;
    let fam = family(&model_type)?;
    ensure!(
        format != WeightFormat::Q4,
        "--weights {format:?} from a Hugging Face folder would need quantizing, which wrapflow does not do yet: \
         use --weights fp32 or fp16, or a GGUF of the model"
    );
    // A folder wrapflow wrote keeps its decoder's exact settings (rotary factors, windows) in
    // its own fields.
    let cfg = match raw.get("wrapflow") {
        Some(_) => serde_json::from_value::<LlamaConfig>(c.clone())
            .context("reading the decoder settings of wrapflow's config.json")?
            .validated()?,
        None => config(c, fam)?,
    };
    let weights = weights(&Weights::open(dir)?, &cfg, fam, format)?;
    let id = |k: &str| match raw.get(k).or(c.get(k)) {
        Some(Json::Array(a)) => a.first().and_then(Json::as_u64).map(|v| v as u32),
        Some(v) => v.as_u64().map(|v| v as u32),
        None => None,
    };
    let source = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let origin = Origin {
        source: &source,
        special: (id("bos_token_id"), id("eos_token_id"), id("pad_token_id")),
        family: fam,
        tensors: vec![],
    };
    let config = write_model(out, &cfg, weights, opts, &origin)?;
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
        if dir.join(f).is_file() {
            std::fs::copy(dir.join(f), out.join(f)).with_context(|| format!("copying {f}"))?;
        }
    }
    ensure!(out.join("tokenizer.json").is_file(), "{} has no tokenizer.json", dir.display());
    Ok(config)
}
