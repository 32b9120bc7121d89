//! Sentence embeddings through the same runtime as generation: a model directory written by
//! [`crate::model::encoders::bert::import_embedder`] (or any export with `input_ids`/`attention_mask` in and
//! `sentence_embedding` or `last_hidden_state` out) gives unit vectors.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::engine::runtime::{SessionConfig, session};

/// A loaded sentence embedder.
pub struct Embedder {
    session: Session,
    pub dir: PathBuf,
    tokenizer: Tokenizer,
    /// Feed `token_type_ids` (exports from other tools have it).
    token_types: bool,
    pooled: bool,
    /// `blake3:` hash of model.onnx.
    pub weights_hash: String,
}

/// Cosine of two vectors (a dot product for unit vectors, but robust to any).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

impl Embedder {
    /// Loads `dir` (`model.onnx`, `tokenizer.json`); inputs longer than `max_seq` word pieces are
    /// truncated (the import sets 512).
    pub fn load(dir: &Path, cfg: &SessionConfig) -> anyhow::Result<Self> {
        crate::engine::runtime::environment()?;
        let model = dir.join("model.onnx");
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow!("loading {}/tokenizer.json: {e}", dir.display()))?;
        let max_seq = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|c| c["wrapflow"]["max_seq_length"].as_u64().or(c["max_position_embeddings"].as_u64()))
            .unwrap_or(512) as usize;
        let pad = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..pad }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq, ..Default::default() }))
            .map_err(|e| anyhow!("{e}"))?;
        let session = session(&model, cfg)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let token_types = inputs.contains(&"token_type_ids");
        let pooled = session.outputs().iter().any(|o| o.name() == "sentence_embedding");
        let weights_hash = crate::model::formats::onnx::file::model_hash(&model)?;
        Ok(Embedder { session, dir: dir.to_path_buf(), tokenizer, token_types, pooled, weights_hash })
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&mut self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow!("tokenizing: {e}"))?;
        let (b, t) = (enc.len(), enc[0].len());
        let ids: Vec<i64> = enc.iter().flat_map(|e| e.get_ids().iter().map(|&v| v as i64)).collect();
        let mask: Vec<i64> = enc.iter().flat_map(|e| e.get_attention_mask().iter().map(|&v| v as i64)).collect();
        let shape = vec![b as i64, t as i64];
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            ("input_ids".into(), Tensor::from_array((shape.clone(), ids))?.into()),
            ("attention_mask".into(), Tensor::from_array((shape.clone(), mask.clone()))?.into()),
        ];
        if self.token_types {
            inputs.push(("token_type_ids".into(), Tensor::from_array((shape, vec![0i64; b * t]))?.into()));
        }
        let out = self.session.run(inputs)?;
        if self.pooled {
            let (s, data) = out["sentence_embedding"].try_extract_tensor::<f32>()?;
            let h = s[1] as usize;
            return Ok(data.chunks_exact(h).map(<[f32]>::to_vec).collect());
        }
        // Mean pooling and L2 norm here for exports without the pooled output.
        let (s, data) =
            out.get("last_hidden_state").context("no last_hidden_state output")?.try_extract_tensor::<f32>()?;
        let h = s[2] as usize;
        Ok((0..b)
            .map(|i| {
                let mut v = vec![0f32; h];
                let mut n = 0f32;
                for j in 0..t {
                    if mask[i * t + j] == 1 {
                        n += 1.0;
                        let row = &data[(i * t + j) * h..(i * t + j + 1) * h];
                        v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
                    }
                }
                let norm = v.iter().map(|x| (x / n.max(1e-9)).powi(2)).sum::<f32>().sqrt().max(1e-12);
                v.iter().map(|x| x / n.max(1e-9) / norm).collect()
            })
            .collect())
    }
}
