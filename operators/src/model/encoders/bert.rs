//! BERT as one ONNX graph, two ways. A sentence embedder: encoder, attention-masked mean pooling
//! and L2 normalisation (sentence-transformers' `all-MiniLM-L6-v2` recipe), so one `run` returns
//! unit vectors and a cosine is a dot product; inputs `input_ids`, `attention_mask` (`[batch,
//! seq]`, int64), outputs `last_hidden_state` (`[batch, seq, hidden]`) and `sentence_embedding`
//! (`[batch, hidden]`), token types all 0 (single sentences) folded into the embedding sum as a
//! constant. A cross-encoder (`BertForSequenceClassification`): a text pair with its
//! `token_type_ids`, `logits` (`[batch, labels]`) out of the pooler and classifier.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::model::formats::onnx::graph::{Dim, Graph, attr_f, attr_i, attr_ints};
use crate::model::formats::onnx::proto::dtype;

/// The fields of a Hugging Face `BertConfig` that the graph needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// Named f32 tensors (Hugging Face `BertModel` names, without a `bert.` prefix).
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every f32 tensor of a safetensors file, dropping a leading `bert.` from names.
pub fn read_safetensors(path: &Path) -> anyhow::Result<Tensors> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            continue; // position_ids buffers (I64) and the like
        }
        let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        out.insert(name.trim_start_matches("bert.").to_string(), (view.shape().to_vec(), data));
    }
    Ok(out)
}

struct Builder<'a> {
    g: Graph,
    w: &'a Tensors,
    cfg: &'a BertConfig,
}

impl Builder<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> anyhow::Result<&[f32]> {
        let (s, d) = self.w.get(name).with_context(|| format!("missing tensor {name}"))?;
        if s != shape {
            bail!("tensor {name} has shape {s:?}, expected {shape:?}");
        }
        Ok(d)
    }

    fn init(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<String> {
        let d = self.get(name, shape)?.to_vec();
        let dims: Vec<i64> = shape.iter().map(|&v| v as i64).collect();
        Ok(self.g.init_f32(name, &dims, &d))
    }

    /// `x · Wᵀ + b` for a PyTorch `Linear` stored `[out, in]` (transposed once here).
    fn linear(&mut self, x: &str, name: &str, n_in: usize, n_out: usize) -> anyhow::Result<String> {
        let w = self.get(&format!("{name}.weight"), &[n_out, n_in])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..n_out {
            for i in 0..n_in {
                t[i * n_out + o] = w[o * n_in + i];
            }
        }
        let w = self.g.init_f32(&format!("{name}.weight_t"), &[n_in as i64, n_out as i64], &t);
        let b = self.init(&format!("{name}.bias"), &[n_out])?;
        let y = self.g.op("MatMul", &[x, &w], vec![]);
        Ok(self.g.op("Add", &[&y, &b], vec![]))
    }

    fn layer_norm(&mut self, x: &str, name: &str) -> anyhow::Result<String> {
        let h = self.cfg.hidden_size;
        let w = self.init(&format!("{name}.weight"), &[h])?;
        let b = self.init(&format!("{name}.bias"), &[h])?;
        let eps = self.cfg.layer_norm_eps;
        Ok(self.g.op("LayerNormalization", &[x, &w, &b], vec![attr_i("axis", -1), attr_f("epsilon", eps)]))
    }
}

/// The encoder's output and what its heads read.
struct Encoded {
    x: String,
    maskf: String,
    batch: Dim,
}

/// Word + position + token type embeddings, then LayerNorm.
fn embeddings(b: &mut Builder, ids: &str, batch: &Dim, seq: &Dim, pairs: bool) -> anyhow::Result<String> {
    let (cfg, h) = (b.cfg, b.cfg.hidden_size);
    let word = b.init("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
    let pos_table = b.init("embeddings.position_embeddings.weight", &[cfg.max_position_embeddings, h])?;
    let type_name = "embeddings.token_type_embeddings.weight";
    let type_vocab = b.w.get(type_name).map_or(0, |(s, _)| s[0]);
    let types = if pairs {
        anyhow::ensure!(type_vocab >= 2, "a cross-encoder needs two token types, {type_name} has {type_vocab}");
        let table = b.init(type_name, &[type_vocab, h])?;
        let type_ids = b.g.input("token_type_ids", dtype::INT64, &[batch.clone(), seq.clone()]);
        b.g.op("Gather", &[&table, &type_ids], vec![attr_i("axis", 0)])
    } else {
        let type0 = b.get(type_name, &[type_vocab.max(1), h])?[..h].to_owned();
        b.g.init_f32("embeddings.token_type_0", &[h as i64], &type0)
    };
    let g = &mut b.g;
    let x = g.op("Gather", &[&word, ids], vec![attr_i("axis", 0)]);
    let shape = g.op("Shape", &[ids], vec![]);
    let one = g.const_i64(&[1], true);
    let zero = g.const_i64(&[0], true);
    let len = g.op("Gather", &[&shape, &one], vec![attr_i("axis", 0)]);
    let positions = g.op("Range", &[&zero, &len, &one], vec![]);
    let pe = g.op("Gather", &[&pos_table, &positions], vec![attr_i("axis", 0)]);
    let x = g.op("Add", &[&x, &pe], vec![]);
    let x = g.op("Add", &[&x, &types], vec![]);
    b.layer_norm(&x, "embeddings.LayerNorm")
}

/// Embeddings and transformer layers; with `pairs`, a `token_type_ids` input selects each
/// token's segment embedding (a cross-encoder's two texts), otherwise every token is type 0.
fn encode(b: &mut Builder, pairs: bool) -> anyhow::Result<Encoded> {
    let cfg = b.cfg;
    if cfg.hidden_act != "gelu" {
        bail!("hidden_act {:?} is not supported (gelu only)", cfg.hidden_act);
    }
    let (h, nh) = (cfg.hidden_size, cfg.num_attention_heads);
    let d = h / nh;
    let (batch, seq) = (Dim::Sym("batch_size"), Dim::Sym("sequence_length"));
    let ids = b.g.input("input_ids", dtype::INT64, &[batch.clone(), seq.clone()]);
    let mask = b.g.input("attention_mask", dtype::INT64, &[batch.clone(), seq.clone()]);

    let mut x = embeddings(b, &ids, &batch, &seq, pairs)?;

    // Additive padding bias [batch, 1, 1, seq].
    let g = &mut b.g;
    let maskf = g.op("Cast", &[&mask], vec![attr_i("to", dtype::FLOAT as i64)]);
    let ax12 = g.const_i64(&[1, 2], false);
    let m4 = g.op("Unsqueeze", &[&maskf, &ax12], vec![]);
    let one_f = g.const_f32(1.0);
    let neg = g.const_f32(-1e9);
    let inv = g.op("Sub", &[&one_f, &m4], vec![]);
    let bias = g.op("Mul", &[&inv, &neg], vec![]);
    let shape_heads = g.const_i64(&[0, 0, nh as i64, d as i64], false);
    let shape_merge = g.const_i64(&[0, 0, h as i64], false);
    let scale = g.const_f32(1.0 / (d as f32).sqrt());
    let sqrt2 = g.const_f32(std::f32::consts::SQRT_2);
    let half = g.const_f32(0.5);

    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        let q = b.linear(&x, &format!("{p}.attention.self.query"), h, h)?;
        let k = b.linear(&x, &format!("{p}.attention.self.key"), h, h)?;
        let v = b.linear(&x, &format!("{p}.attention.self.value"), h, h)?;
        let g = &mut b.g;
        let heads = |g: &mut Graph, t: &str, perm: &[i64]| {
            let r = g.op("Reshape", &[t, &shape_heads], vec![]);
            g.op("Transpose", &[&r], vec![attr_ints("perm", perm)])
        };
        let q = heads(g, &q, &[0, 2, 1, 3]);
        let kt = heads(g, &k, &[0, 2, 3, 1]);
        let v = heads(g, &v, &[0, 2, 1, 3]);
        let s = g.op("MatMul", &[&q, &kt], vec![]);
        let s = g.op("Mul", &[&s, &scale], vec![]);
        let s = g.op("Add", &[&s, &bias], vec![]);
        let pr = g.op("Softmax", &[&s], vec![attr_i("axis", -1)]);
        let ctx = g.op("MatMul", &[&pr, &v], vec![]);
        let ctx = g.op("Transpose", &[&ctx], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let ctx = g.op("Reshape", &[&ctx, &shape_merge], vec![]);
        let att = b.linear(&ctx, &format!("{p}.attention.output.dense"), h, h)?;
        let res = b.g.op("Add", &[&att, &x], vec![]);
        let x1 = b.layer_norm(&res, &format!("{p}.attention.output.LayerNorm"))?;
        let up = b.linear(&x1, &format!("{p}.intermediate.dense"), h, cfg.intermediate_size)?;
        // Exact GELU: 0.5·x·(1 + erf(x/√2)).
        let g = &mut b.g;
        let e = g.op("Div", &[&up, &sqrt2], vec![]);
        let e = g.op("Erf", &[&e], vec![]);
        let e = g.op("Add", &[&e, &one_f], vec![]);
        let e = g.op("Mul", &[&up, &e], vec![]);
        let act = g.op("Mul", &[&e, &half], vec![]);
        let down = b.linear(&act, &format!("{p}.output.dense"), cfg.intermediate_size, h)?;
        let res = b.g.op("Add", &[&down, &x1], vec![]);
        x = b.layer_norm(&res, &format!("{p}.output.LayerNorm"))?;
    }
    b.g.output(&x, "last_hidden_state", dtype::FLOAT, &[batch.clone(), seq, Dim::Fixed(h as i64)]);
    Ok(Encoded { x, maskf, batch })
}

/// Serialized ONNX embedder for `cfg` with `weights`.
pub fn build(cfg: &BertConfig, weights: &Tensors, metadata: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
    let h = cfg.hidden_size;
    let mut b = Builder { g: Graph::default(), w: weights, cfg };
    let Encoded { x, maskf, batch } = encode(&mut b, false)?;
    let g = &mut b.g;
    // Mean over real tokens, then unit length.
    let ax2 = g.const_i64(&[2], false);
    let ax1 = g.const_i64(&[1], false);
    let m3 = g.op("Unsqueeze", &[&maskf, &ax2], vec![]);
    let masked = g.op("Mul", &[&x, &m3], vec![]);
    let sum = g.op("ReduceSum", &[&masked, &ax1], vec![attr_i("keepdims", 0)]);
    let count = g.op("ReduceSum", &[&m3, &ax1], vec![attr_i("keepdims", 0)]);
    let tiny = g.const_f32(1e-9);
    let count = g.op("Max", &[&count, &tiny], vec![]);
    let mean = g.op("Div", &[&sum, &count], vec![]);
    // Opset 17's ReduceL2 takes its axes as an attribute.
    let norm = g.op("ReduceL2", &[&mean], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)]);
    let eps = g.const_f32(1e-12);
    let norm = g.op("Max", &[&norm, &eps], vec![]);
    let emb = g.op("Div", &[&mean, &norm], vec![]);
    g.output(&emb, "sentence_embedding", dtype::FLOAT, &[batch, Dim::Fixed(h as i64)]);
    Ok(b.g.into_model_bytes("BERT sentence embedder (mean pooling, L2), exported by wrapflow", metadata))
}

/// Serialized ONNX cross-encoder (Hugging Face `BertForSequenceClassification`): a text pair in
/// (`input_ids`, `attention_mask`, `token_type_ids`), `logits` `[batch, labels]` out from the
/// pooler (tanh of a dense layer over the first token) and the classifier.
pub fn build_cross_encoder(
    cfg: &BertConfig,
    weights: &Tensors,
    labels: usize,
    metadata: &[(&str, String)],
) -> anyhow::Result<Vec<u8>> {
    let h = cfg.hidden_size;
    let mut b = Builder { g: Graph::default(), w: weights, cfg };
    let Encoded { x, batch, .. } = encode(&mut b, true)?;
    let zero = b.g.const_i64(&[0], true);
    let first = b.g.op("Gather", &[&x, &zero], vec![attr_i("axis", 1)]);
    let pooled = b.linear(&first, "pooler.dense", h, h)?;
    let pooled = b.g.op("Tanh", &[&pooled], vec![]);
    let logits = b.linear(&pooled, "classifier", h, labels)?;
    b.g.output(&logits, "logits", dtype::FLOAT, &[batch, Dim::Fixed(labels as i64)]);
    Ok(b.g.into_model_bytes("BERT cross-encoder (sequence classification), exported by wrapflow", metadata))
}

/// Longest input the embedder reads, in word pieces: the shipped tokenizer truncates at 128,
/// which would cut a 300-token chunk short; BERT's position table allows 512.
pub const MAX_SEQ: usize = 512;

/// Imports a sentence-transformers BERT directory (`config.json`, `model.safetensors`,
/// `tokenizer.json`) into `out`: `model.onnx`, `config.json` (with a `wrapflow` section) and a
/// `tokenizer.json` that pads to the longest row of a batch and truncates at `max_seq`.
pub fn import_embedder(src: &Path, out: &Path, max_seq: usize) -> anyhow::Result<BertConfig> {
    let (raw, cfg, weights, source) = read_bert(src)?;
    let max_seq = max_seq.min(cfg.max_position_embeddings);
    let onnx = build(&cfg, &weights, &[("source", source.clone())])?;
    let section = serde_json::json!({"kind": "embedder", "source": source, "max_seq_length": max_seq,
        "pooling": "mean", "normalize": true});
    write_import(src, out, raw, section, &onnx, max_seq)?;
    Ok(cfg)
}

/// Imports a Hugging Face `BertForSequenceClassification` directory (an NLI or fact-checking
/// cross-encoder: `config.json` with `id2label`, `model.safetensors`, `tokenizer.json`) into
/// `out`, as [`import_embedder`] does. Returns the config and the labels in order.
pub fn import_cross_encoder(src: &Path, out: &Path, max_seq: usize) -> anyhow::Result<(BertConfig, Vec<String>)> {
    let (raw, cfg, weights, source) = read_bert(src)?;
    let labels = labels(&raw)?;
    let entails = entailment_label(&raw)?;
    let max_seq = max_seq.min(cfg.max_position_embeddings);
    let onnx = build_cross_encoder(&cfg, &weights, labels.len(), &[("source", source.clone())])?;
    let section = serde_json::json!({"kind": "cross-encoder", "source": source, "max_seq_length": max_seq,
        "entailment_label": entails});
    write_import(src, out, raw, section, &onnx, max_seq)?;
    Ok((cfg, labels))
}

/// Whether a Hugging Face config describes a sequence classifier (a cross-encoder).
pub fn is_classifier(config: &serde_json::Value) -> bool {
    config["architectures"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v.as_str().is_some_and(|s| s.ends_with("ForSequenceClassification"))))
}

/// A classifier's labels in index order, from `id2label`.
pub fn labels(config: &serde_json::Value) -> anyhow::Result<Vec<String>> {
    let map = config["id2label"].as_object().context("config.json has no id2label")?;
    let mut labels = vec![String::new(); map.len()];
    for (k, v) in map {
        let i: usize = k.parse().with_context(|| format!("id2label key {k:?} is not an index"))?;
        *labels.get_mut(i).with_context(|| format!("id2label index {i} out of range"))? =
            v.as_str().unwrap_or_default().into();
    }
    Ok(labels)
}

/// The index of the label that means "the first text supports the second": `wrapflow.
/// entailment_label` in the config when set, else the one label named entailment or supported
/// (any case). Generic names (`LABEL_0`, `LABEL_1`) say nothing: RTE fine-tunes use 0 for
/// entailment, MiniCheck 1 for supported, so such a config needs the index written into it.
pub fn entailment_label(config: &serde_json::Value) -> anyhow::Result<usize> {
    let labels = labels(config)?;
    anyhow::ensure!(labels.len() >= 2, "a classifier of {} label(s) cannot say entailment", labels.len());
    if let Some(i) = config["wrapflow"]["entailment_label"].as_u64() {
        anyhow::ensure!((i as usize) < labels.len(), "entailment_label {i} of {} labels", labels.len());
        return Ok(i as usize);
    }
    let named = |l: &String| {
        let l = l.to_lowercase();
        l.starts_with("entail") || l.starts_with("support")
    };
    match labels.iter().position(named) {
        Some(i) => Ok(i),
        None => bail!(
            "no label of {labels:?} is named entailment or supported: add the index of the one that \
             means the evidence supports the claim to config.json as \"wrapflow\": {{\"entailment_label\": N}}"
        ),
    }
}

type ReadBert = (serde_json::Value, BertConfig, Tensors, String);

fn read_bert(src: &Path) -> anyhow::Result<ReadBert> {
    let bytes =
        std::fs::read(src.join("config.json")).with_context(|| format!("reading {}/config.json", src.display()))?;
    let raw: serde_json::Value = serde_json::from_slice(&bytes)?;
    let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or_default();
    if model_type != "bert" {
        bail!(
            "{}: model_type {model_type:?} is not supported (bert is; other families load from their ONNX export)",
            src.display()
        );
    }
    let cfg: BertConfig = serde_json::from_value(raw.clone())?;
    let weights = read_safetensors(&src.join("model.safetensors"))?;
    let source = src.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((raw, cfg, weights, source))
}

/// Writes `model.onnx`, `config.json` (the source's, with `section` and the weights hash under
/// `wrapflow`) and the source's `tokenizer.json` padding to a batch's longest row and truncating
/// at `max_seq` (the longer text of a pair first).
fn write_import(
    src: &Path,
    out: &Path,
    mut config: serde_json::Value,
    mut section: serde_json::Value,
    onnx: &[u8],
    max_seq: usize,
) -> anyhow::Result<()> {
    section["weights_hash"] = format!("blake3:{}", blake3::hash(onnx).to_hex()).into();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("model.onnx"), onnx)?;
    config["wrapflow"] = section;
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let path = src.join("tokenizer.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut tok: serde_json::Value = serde_json::from_slice(&bytes)?;
    tok["truncation"] =
        serde_json::json!({"direction": "Right", "max_length": max_seq, "strategy": "LongestFirst", "stride": 0});
    if let Some(p) = tok.get_mut("padding").filter(|p| p.is_object()) {
        p["strategy"] = serde_json::json!("BatchLongest");
    }
    std::fs::write(out.join("tokenizer.json"), serde_json::to_vec(&tok)?)?;
    Ok(())
}
