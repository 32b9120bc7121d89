//! A decoder-only language model directory loaded for generation: the ONNX session (optimum's
//! input/output layout), the tokenizer and the chat template.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use serde_json::Value as Json;
use tokenizers::Tokenizer;

use super::constrain::TokenTable;
use super::runtime::{SessionConfig, session};

/// The KV cache of a batch: per layer, key and value `[batch, kv_heads, len, head_dim]`.
pub type Cache = Vec<DynValue>;

/// A loaded model.
pub struct Decoder {
    session: Session,
    pub dir: PathBuf,
    pub tokenizer: Tokenizer,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// Token ids that end a generation.
    pub eos: Vec<u32>,
    pub chat_template: Option<String>,
    /// `blake3:` hash of model.onnx.
    pub weights_hash: String,
    tokens: OnceLock<TokenTable>,
}

fn num(cfg: &Json, key: &str) -> Option<usize> {
    cfg.get(key).and_then(Json::as_u64).map(|v| v as usize)
}

impl Decoder {
    /// Loads `dir`: `model.onnx` (or `decoder_model_merged.onnx`, `decoder_with_past_model.onnx`),
    /// `config.json`, `tokenizer.json`, and the chat template from `tokenizer_config.json` or
    /// `chat_template.jinja`.
    pub fn load(dir: &Path, cfg: &SessionConfig) -> anyhow::Result<Self> {
        // The runtime first: a missing library is the one error to report, whatever the model.
        super::runtime::environment()?;
        let read_json = |name: &str| -> anyhow::Result<Json> {
            let p = dir.join(name);
            serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("parsing {}", p.display()))
        };
        let config = read_json("config.json")?;
        let model = ["model.onnx", "decoder_model_merged.onnx", "decoder_with_past_model.onnx"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .with_context(|| format!("no model.onnx in {}", dir.display()))?;
        let heads = num(&config, "num_attention_heads").context("config.json: num_attention_heads")?;
        let hidden = num(&config, "hidden_size").context("config.json: hidden_size")?;
        let layers = num(&config, "num_hidden_layers").context("config.json: num_hidden_layers")?;
        let kv_heads = num(&config, "num_key_value_heads").unwrap_or(heads);
        let head_dim = num(&config, "head_dim").unwrap_or(hidden / heads);
        let vocab = num(&config, "vocab_size").context("config.json: vocab_size")?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("loading {}/tokenizer.json: {e}", dir.display()))?;
        let tok_cfg = read_json("tokenizer_config.json").unwrap_or(Json::Null);
        let chat_template = tok_cfg
            .get("chat_template")
            .and_then(Json::as_str)
            .map(str::to_string)
            .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
        let mut eos: Vec<u32> = match config.get("eos_token_id") {
            Some(Json::Array(a)) => a.iter().filter_map(Json::as_u64).map(|v| v as u32).collect(),
            Some(v) => v.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            None => vec![],
        };
        if let Some(t) = tok_cfg.get("eos_token").and_then(Json::as_str).and_then(|t| tokenizer.token_to_id(t)) {
            eos.push(t);
        }
        eos.sort_unstable();
        eos.dedup();
        if eos.is_empty() {
            bail!("{}: no eos_token_id in config.json nor eos_token in tokenizer_config.json", dir.display());
        }
        let session = session(&model, cfg)?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for want in ["input_ids", "attention_mask", "position_ids", "past_key_values.0.key"] {
            if !names.contains(&want) {
                bail!(
                    "{} has no input {want} (inputs: {names:?}); wrapflow needs optimum's decoder-with-past layout",
                    model.display()
                );
            }
        }
        let weights_hash = format!("blake3:{}", blake3::hash(&std::fs::read(&model)?).to_hex());
        Ok(Decoder {
            session,
            dir: dir.to_path_buf(),
            tokenizer,
            layers,
            kv_heads,
            head_dim,
            vocab,
            eos,
            chat_template,
            weights_hash,
            tokens: OnceLock::new(),
        })
    }

    /// Every token's text, built on first use (constrained decoding needs it).
    pub fn token_table(&self) -> &TokenTable {
        self.tokens.get_or_init(|| TokenTable::new(&self.tokenizer, self.vocab))
    }

    /// An empty cache for `batch` rows.
    pub fn empty_cache(&self, batch: usize) -> anyhow::Result<Cache> {
        (0..2 * self.layers)
            .map(|_| {
                let t = Tensor::<f32>::from_array((
                    vec![batch as i64, self.kv_heads as i64, 0, self.head_dim as i64],
                    Vec::<f32>::new(),
                ))?;
                Ok(t.into_dyn())
            })
            .collect()
    }

    /// Runs the model on `ids` (`[batch, seq]`) after `cache`; returns the last position's
    /// logits (`[batch × vocab]`, row-major) and the grown cache.
    pub fn forward(
        &mut self,
        batch: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        positions: Vec<i64>,
        cache: &Cache,
    ) -> anyhow::Result<(Vec<f32>, Cache)> {
        let seq = ids.len() / batch;
        let total = mask.len() / batch;
        let ids = Tensor::from_array((vec![batch as i64, seq as i64], ids))?;
        let mask = Tensor::from_array((vec![batch as i64, total as i64], mask))?;
        let pos = Tensor::from_array((vec![batch as i64, seq as i64], positions))?;
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            ("input_ids".into(), ids.into()),
            ("attention_mask".into(), mask.into()),
            ("position_ids".into(), pos.into()),
        ];
        for l in 0..self.layers {
            inputs.push((format!("past_key_values.{l}.key"), (&cache[2 * l]).into()));
            inputs.push((format!("past_key_values.{l}.value"), (&cache[2 * l + 1]).into()));
        }
        let mut out = self.session.run(inputs)?;
        let logits = out.remove("logits").context("model has no logits output")?;
        let (shape, data) = logits.try_extract_tensor::<f32>()?;
        let (s, v) = (shape[1] as usize, shape[2] as usize);
        // Exports with full-sequence logits: keep the last position of each row.
        let last: Vec<f32> =
            (0..batch).flat_map(|b| data[(b * s + s - 1) * v..(b * s + s) * v].iter().copied()).collect();
        let mut present = Vec::with_capacity(2 * self.layers);
        for l in 0..self.layers {
            for kind in ["key", "value"] {
                present.push(
                    out.remove(format!("present.{l}.{kind}"))
                        .with_context(|| format!("no present.{l}.{kind} output"))?,
                );
            }
        }
        Ok((last, present))
    }
}
