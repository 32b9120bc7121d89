//! A tiny random-weight BERT cross-encoder (2 layers, 32 hidden, three NLI labels) as a Hugging
//! Face folder (`config.json`, `model.safetensors` with `bert.`-prefixed names, the given
//! `tokenizer.json`): tests import and run it as a user's own checker would be.

use std::path::Path;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, TensorView};

/// Writes the folder into `out` for the vocabulary of `tokenizer_json` (a BERT WordPiece one).
pub fn write_tiny_cross_encoder(out: &Path, tokenizer_json: &Path, seed: u64) -> anyhow::Result<()> {
    let tok: serde_json::Value = serde_json::from_slice(&std::fs::read(tokenizer_json)?)?;
    let vocab = tok["model"]["vocab"].as_object().context("tokenizer.json has no vocabulary")?.len();
    let (h, layers, inter, positions) = (32usize, 2usize, 64usize, 512usize);
    let mut w = Random { rng: StdRng::seed_from_u64(seed), h, tensors: vec![] };
    w.add("bert.embeddings.word_embeddings.weight", &[vocab, h], 0.5, 0.0);
    w.add("bert.embeddings.position_embeddings.weight", &[positions, h], 0.1, 0.0);
    w.add("bert.embeddings.token_type_embeddings.weight", &[2, h], 0.5, 0.0);
    w.norm("bert.embeddings.LayerNorm");
    for i in 0..layers {
        let p = format!("bert.encoder.layer.{i}");
        for m in ["query", "key", "value"] {
            w.linear(&format!("{p}.attention.self.{m}"), h, h);
        }
        w.linear(&format!("{p}.attention.output.dense"), h, h);
        w.norm(&format!("{p}.attention.output.LayerNorm"));
        w.linear(&format!("{p}.intermediate.dense"), h, inter);
        w.linear(&format!("{p}.output.dense"), inter, h);
        w.norm(&format!("{p}.output.LayerNorm"));
    }
    w.linear("bert.pooler.dense", h, h);
    w.linear("classifier", h, 3);
    let tensors = w.tensors;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, d)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), d)?)))
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("model.safetensors"), safetensors::serialize(views, None)?)?;
    let config = serde_json::json!({
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "vocab_size": vocab, "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": 4,
        "intermediate_size": inter, "max_position_embeddings": positions, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu",
        "id2label": {"0": "contradiction", "1": "entailment", "2": "neutral"},
        "label2id": {"contradiction": 0, "entailment": 1, "neutral": 2},
    });
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    std::fs::copy(tokenizer_json, out.join("tokenizer.json"))?;
    Ok(())
}

/// Random tensors, named as Hugging Face names them.
struct Random {
    rng: StdRng,
    h: usize,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Random {
    fn add(&mut self, name: &str, shape: &[usize], scale: f32, offset: f32) {
        let n = shape.iter().product();
        let data = (0..n).map(|_| offset + self.rng.random_range(-scale..scale)).collect();
        self.tensors.push((name.to_string(), shape.to_vec(), data));
    }

    fn norm(&mut self, p: &str) {
        let h = self.h;
        self.add(&format!("{p}.weight"), &[h], 0.2, 1.0);
        self.add(&format!("{p}.bias"), &[h], 0.1, 0.0);
    }

    fn linear(&mut self, p: &str, n_in: usize, n_out: usize) {
        self.add(&format!("{p}.weight"), &[n_out, n_in], 0.3, 0.0);
        self.add(&format!("{p}.bias"), &[n_out], 0.1, 0.0);
    }
}
