//! A cross-encoder (an NLI or fact-checking classifier) reading claims against their evidence,
//! as MiniCheck, AlignScore and SummaC do: the probability that the first text entails the
//! second. A model directory written by [`crate::model::encoders::bert::import_cross_encoder`], or any
//! ONNX export of a sequence classifier (`input_ids`, `attention_mask`, optionally
//! `token_type_ids` in; `logits` out; BERT, RoBERTa, DeBERTa alike) with its `config.json`
//! (`id2label`) and `tokenizer.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

use crate::engine::runtime::{SessionConfig, session};
use crate::model::encoders::bert::{MAX_SEQ, entailment_label};

/// A loaded cross-encoder.
pub struct Entailer {
    session: Session,
    pub dir: PathBuf,
    tokenizer: Tokenizer,
    token_types: bool,
    /// Index of the entailment (supported) label among the logits.
    entails: usize,
    /// `blake3:` hash of model.onnx.
    pub weights_hash: String,
}

impl Entailer {
    /// Loads `dir` (`model.onnx`, `config.json`, `tokenizer.json`). A pair longer than the model
    /// reads (at most [`MAX_SEQ`] tokens) loses the end of its longer text: the evidence, unless a
    /// claim outgrows its chunk.
    pub fn load(dir: &Path, cfg: &SessionConfig) -> anyhow::Result<Self> {
        crate::engine::runtime::environment()?;
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .with_context(|| format!("reading {}/config.json", dir.display()))?,
        )
        .with_context(|| format!("parsing {}/config.json", dir.display()))?;
        let entails = entailment_label(&config).with_context(|| format!("{}", dir.display()))?;
        let max_seq = config["wrapflow"]["max_seq_length"]
            .as_u64()
            .or(config["max_position_embeddings"].as_u64())
            .map_or(MAX_SEQ, |m| (m as usize).min(MAX_SEQ));
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow!("loading {}/tokenizer.json: {e}", dir.display()))?;
        let pad = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..pad }));
        let truncation =
            TruncationParams { max_length: max_seq, strategy: TruncationStrategy::LongestFirst, ..Default::default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|e| anyhow!("{e}"))?;
        let model = dir.join("model.onnx");
        let session = session(&model, cfg)?;
        anyhow::ensure!(
            session.outputs().iter().any(|o| o.name() == "logits"),
            "{}: the model has no `logits` output (a sequence classifier's ONNX export has)",
            model.display()
        );
        let token_types = session.inputs().iter().any(|i| i.name() == "token_type_ids");
        let weights_hash = crate::model::formats::onnx::file::model_hash(&model)?;
        Ok(Entailer { session, dir: dir.to_path_buf(), tokenizer, token_types, entails, weights_hash })
    }

    /// The probability that `evidence` entails each of `claims`, in order (one batch).
    pub fn entailment(&mut self, evidence: &str, claims: &[&str]) -> anyhow::Result<Vec<f32>> {
        Ok(self.logits(evidence, claims)?.iter().map(|l| softmax_at(l, self.entails)).collect())
    }

    /// The raw logits of each (evidence, claim) pair.
    pub fn logits(&mut self, evidence: &str, claims: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        if claims.is_empty() {
            return Ok(vec![]);
        }
        let pairs: Vec<(&str, &str)> = claims.iter().map(|c| (evidence, *c)).collect();
        let enc = self.tokenizer.encode_batch(pairs, true).map_err(|e| anyhow!("tokenizing: {e}"))?;
        let shape = vec![enc.len() as i64, enc[0].len() as i64];
        let column = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
            enc.iter().flat_map(|e| f(e).iter().map(|&v| v as i64)).collect()
        };
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            ("input_ids".into(), Tensor::from_array((shape.clone(), column(&|e| e.get_ids())))?.into()),
            ("attention_mask".into(), Tensor::from_array((shape.clone(), column(&|e| e.get_attention_mask())))?.into()),
        ];
        if self.token_types {
            inputs.push(("token_type_ids".into(), Tensor::from_array((shape, column(&|e| e.get_type_ids())))?.into()));
        }
        let out = self.session.run(inputs)?;
        let (s, data) = out["logits"].try_extract_tensor::<f32>()?;
        let labels = s[1] as usize;
        anyhow::ensure!(self.entails < labels, "entailment label {} of {labels} logits", self.entails);
        Ok(data.chunks_exact(labels).map(<[f32]>::to_vec).collect())
    }
}

fn softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    (logits[i] - max).exp() / sum
}
