//! A decoder-only language model directory loaded for generation: the ONNX session (optimum's
//! input/output layout), the tokenizer and the chat template.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use serde_json::Value as Json;
use tokenizers::Tokenizer;

use crate::engine::guards::constrain::TokenTable;
use crate::engine::runtime::{SessionConfig, session};
use crate::model::decoder::KvLayout;

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
    /// How the graph keeps its cache: `config.json`'s `wrapflow.kv_cache`, else `shared` for a
    /// graph without `position_ids` (onnxruntime-genai's GQA models) and `standard` otherwise.
    pub layout: KvLayout,
    /// Token ids that end a generation.
    pub eos: Vec<u32>,
    /// The token every prompt starts with, where the tokenizer config says to add BOS.
    pub bos_prefix: Option<u32>,
    /// The end-of-sequence token's text, for chat templates that write it after a turn.
    pub eos_token: String,
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
        crate::engine::runtime::environment()?;
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
        let eos_token = tok_cfg.get("eos_token").and_then(Json::as_str).unwrap_or_default().to_string();
        if let Some(t) = tokenizer.token_to_id(&eos_token) {
            eos.push(t);
        }
        eos.sort_unstable();
        eos.dedup();
        // Models whose tokenizer adds BOS (Gemma, Llama) are trained on prompts that start with it.
        let bos_prefix = match tok_cfg.get("add_bos_token").and_then(Json::as_bool) {
            Some(true) => tok_cfg
                .get("bos_token")
                .and_then(Json::as_str)
                .and_then(|t| tokenizer.token_to_id(t))
                .or_else(|| num(&config, "bos_token_id").map(|v| v as u32)),
            _ => None,
        };
        if eos.is_empty() {
            bail!("{}: no eos_token_id in config.json nor eos_token in tokenizer_config.json", dir.display());
        }
        let session = session(&model, cfg)?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let declared = config.pointer("/wrapflow/kv_cache").and_then(|v| serde_json::from_value(v.clone()).ok());
        let layout =
            declared.unwrap_or(if names.contains(&"position_ids") { KvLayout::Standard } else { KvLayout::Shared });
        let mut wanted = vec!["input_ids", "attention_mask", "past_key_values.0.key"];
        if layout == KvLayout::Standard {
            wanted.push("position_ids");
        }
        for want in wanted {
            if !names.contains(&want) {
                bail!(
                    "{} has no input {want} (inputs: {names:?}); wrapflow needs optimum's decoder-with-past layout",
                    model.display()
                );
            }
        }
        let weights_hash = crate::model::formats::onnx::file::model_hash(&model)?;
        Ok(Decoder {
            session,
            dir: dir.to_path_buf(),
            tokenizer,
            layers,
            kv_heads,
            head_dim,
            vocab,
            layout,
            eos,
            bos_prefix,
            eos_token,
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

    /// A prompt's token ids, starting with BOS where the model's tokenizer adds it.
    pub fn encode_prompt(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        crate::engine::prompt_ids(&self.tokenizer, self.bos_prefix, text)
    }

    /// The logits after `ids` (one prompt, no cache), in either layout: what checks of an import
    /// compare against a reference forward pass.
    pub fn prompt_logits(&mut self, ids: &[u32]) -> anyhow::Result<Vec<f32>> {
        let n = ids.len();
        let ids64: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        if self.layout == KvLayout::Standard {
            let cache = self.empty_cache(1)?;
            return Ok(self.forward(1, ids64, vec![1; n], (0..n as i64).collect(), &cache)?.0);
        }
        let bufs = vec![vec![0f32; self.kv_heads * n * self.head_dim]; 2 * self.layers];
        let mut kv = SharedKv { bufs, slots: 1, cap: n };
        self.forward_shared(1, ids64, vec![1; n], &mut kv, 0)
    }

    /// Runs a [`KvLayout::Shared`] model on `ids` (`[batch, seq]`, right-padded) for the rows in
    /// slots `first..first + batch` of `kv`, which the model reads and writes in place; returns
    /// each row's logits at its last real token (`[batch × vocab]`).
    pub(super) fn forward_shared(
        &mut self,
        batch: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        kv: &mut SharedKv,
        first: usize,
    ) -> anyhow::Result<Vec<f32>> {
        let seq = ids.len() / batch;
        let total = mask.len() / batch;
        let stride = self.kv_heads * kv.cap * self.head_dim;
        let shape = [batch as i64, self.kv_heads as i64, kv.cap as i64, self.head_dim as i64];
        anyhow::ensure!(first + batch <= kv.slots && total <= kv.cap, "KV buffer too small");
        let mem = ort::memory::MemoryInfo::default();
        let alloc = ort::memory::Allocator::default();
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            ("input_ids".into(), Tensor::from_array((vec![batch as i64, seq as i64], ids))?.into()),
            ("attention_mask".into(), Tensor::from_array((vec![batch as i64, total as i64], mask))?.into()),
        ];
        let mut outputs = ort::session::OutputSelector::default();
        for (k, buf) in kv.bufs.iter_mut().enumerate() {
            let (l, kind) = (k / 2, if k % 2 == 0 { "key" } else { "value" });
            let data = buf[first * stride..(first + batch) * stride].as_mut_ptr();
            // SAFETY: `data` covers `batch × stride` floats of `buf`, which is neither moved nor
            // freed before these values are dropped at the end of this call.
            let (past, present) = unsafe { (alias(&mem, &alloc, data, &shape)?, alias(&mem, &alloc, data, &shape)?) };
            inputs.push((format!("past_key_values.{l}.{kind}"), past.into()));
            outputs = outputs.preallocate(format!("present.{l}.{kind}"), present);
        }
        let options = ort::session::RunOptions::new()?.with_outputs(outputs);
        let out = self.session.run_with_options(inputs, &options)?;
        let (shape, data) = out["logits"].try_extract_tensor::<f32>()?;
        let v = shape[2] as usize;
        Ok(data[..batch * v].to_vec())
    }
}

/// The shared-buffer KV cache ([`KvLayout::Shared`]) that `Decoder::forward_shared` reads
/// and writes in place; `kv.rs` manages its slots.
pub struct SharedKv {
    /// `2 × layers` buffers (key, value per layer), each `[slots, kv_heads, cap, head_dim]`.
    pub(super) bufs: Vec<Vec<f32>>,
    pub(super) slots: usize,
    pub(super) cap: usize,
}

/// A tensor over `data` (`shape`, f32, CPU) that does not own it: the shared KV buffer is handed
/// to ONNX Runtime as both an input and a preallocated output, which ort's safe constructors
/// cannot express.
///
/// # Safety
/// `data` must hold `shape`'s element count of f32 and outlive the returned value.
unsafe fn alias(
    mem: &ort::memory::MemoryInfo,
    alloc: &ort::memory::Allocator,
    data: *mut f32,
    shape: &[i64; 4],
) -> anyhow::Result<DynValue> {
    use ort::AsPointer;
    let len = shape.iter().product::<i64>() as usize * std::mem::size_of::<f32>();
    let api = ort::api();
    let mut value = std::ptr::null_mut();
    // SAFETY: the caller guarantees `data`; the other pointers are live for the call.
    let status = unsafe {
        (api.CreateTensorWithDataAsOrtValue)(
            mem.ptr(),
            data.cast(),
            len,
            shape.as_ptr(),
            shape.len(),
            ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
            &mut value,
        )
    };
    if !status.0.is_null() {
        // SAFETY: a non-null status holds a message and is ours to release.
        let msg = unsafe { std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0)) }.to_string_lossy().into_owned();
        unsafe { (api.ReleaseStatus)(status.0) };
        anyhow::bail!("cannot wrap the KV buffer as a tensor: {msg}");
    }
    let value = std::ptr::NonNull::new(value).context("ONNX Runtime returned no tensor")?;
    // SAFETY: `value` is a tensor just created on `mem`'s device; the allocator is the default
    // CPU one (never asked to free `data`, which the tensor does not own).
    Ok(unsafe { DynValue::from_ptr(value, Some(alloc)) })
}
