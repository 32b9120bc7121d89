//! A tiny random-weight llama (2 layers, 64 hidden, grouped-query attention) with the test kit's
//! tokenizer, written by the same code as real imports: tests run the whole engine on it
//! without downloading anything.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::decoder::{KvLayout, LayerWeights, Linear, LlamaConfig, LlamaWeights};
use crate::model::families::FAMILIES;
use crate::model::import::{ImportOptions, ModelConfig, Origin, WeightFormat, write_model};
use crate::testkit;

/// ChatML, as SmolLM2 uses it.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn random_linear(rng: &mut StdRng, n_in: usize, n_out: usize, format: WeightFormat) -> Linear {
    match format {
        WeightFormat::Fp32 | WeightFormat::Fp16 | WeightFormat::Int8 => {
            Linear::F32((0..n_in * n_out).map(|_| rng.random_range(-0.15f32..0.15)).collect())
        }
        WeightFormat::Q4 => {
            let blocks = n_out * n_in / 32;
            Linear::Q4 {
                packed: (0..blocks * 16).map(|_| rng.random()).collect(),
                scales: (0..blocks).map(|_| rng.random_range(0.005f32..0.03)).collect(),
                mins: (0..blocks).map(|_| rng.random_range(-0.25f32..-0.05)).collect(),
            }
        }
    }
}

/// The tiny model's shape for a vocabulary size.
pub fn tiny_config(vocab_size: usize) -> LlamaConfig {
    LlamaConfig {
        vocab_size,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        intermediate_size: 128,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 2048,
        ..Default::default()
    }
}

/// Random weights of the tiny model.
pub fn tiny_weights(cfg: &LlamaConfig, seed: u64, format: WeightFormat) -> LlamaWeights {
    let cfg = cfg.clone();
    let mut rng = StdRng::seed_from_u64(seed);
    let (h, d, f) = (cfg.hidden_size, cfg.head_dim(), cfg.intermediate_size);
    let (nh, kvh) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let norm = |rng: &mut StdRng| (0..h).map(|_| rng.random_range(0.8f32..1.2)).collect::<Vec<_>>();
    let layers = (0..cfg.num_hidden_layers)
        .map(|_| LayerWeights {
            attn_norm: norm(&mut rng),
            q: random_linear(&mut rng, h, nh * d, format),
            k: random_linear(&mut rng, h, kvh * d, format),
            v: random_linear(&mut rng, h, kvh * d, format),
            o: random_linear(&mut rng, nh * d, h, format),
            ffn_norm: norm(&mut rng),
            gate: random_linear(&mut rng, h, f, format),
            up: random_linear(&mut rng, h, f, format),
            down: random_linear(&mut rng, f, h, format),
            qkv_bias: None,
            qk_norm: None,
            post_norms: None,
        })
        .collect();
    LlamaWeights {
        // Small embeddings keep the tied head's logits spread out, so sampling has choices.
        embed: Linear::F32((0..cfg.vocab_size * h).map(|_| rng.random_range(-0.25f32..0.25)).collect()),
        layers,
        final_norm: norm(&mut rng),
        output: None,
    }
}

/// Writes a tiny random model directory (model.onnx, config.json, tokenizer files) with the
/// cache layout that imports default to ([`KvLayout::Shared`]); with `dequantize`, 4-bit weights
/// are written as their exact f32 values.
pub fn write_tiny_model(out: &Path, seed: u64, format: WeightFormat, dequantize: bool) -> anyhow::Result<ModelConfig> {
    write_tiny_model_with(out, seed, format, dequantize, KvLayout::Shared)
}

/// [`write_tiny_model`] with a chosen cache layout.
pub fn write_tiny_model_with(
    out: &Path,
    seed: u64,
    format: WeightFormat,
    dequantize: bool,
    layout: KvLayout,
) -> anyhow::Result<ModelConfig> {
    let tok = testkit::tiny_tokenizer();
    let cfg = tiny_config(tok.get_vocab_size(true));
    let mut weights = tiny_weights(&cfg, seed, format);
    let mut written = format;
    if dequantize {
        weights = weights.dequantized();
        written = WeightFormat::Fp32;
    }
    let format = written;
    let id = |t: &str| tok.token_to_id(t);
    let origin = Origin {
        source: "tiny random model",
        special: (id("<|im_start|>"), id("<|im_end|>"), id("<|im_end|>")),
        family: FAMILIES[0],
        tensors: vec![],
    };
    let opts = ImportOptions { weights: format, kv_cache: layout, external_data: false };
    let config = write_model(out, &cfg, weights, &opts, &origin)?;
    tok.save(out.join("tokenizer.json"), false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tc = serde_json::json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "add_bos_token": false, "chat_template": CHATML,
    });
    std::fs::write(out.join("tokenizer_config.json"), serde_json::to_vec_pretty(&tc)?)?;
    std::fs::write(out.join("chat_template.jinja"), CHATML)?;
    Ok(config)
}
