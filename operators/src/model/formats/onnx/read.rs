//! The weights of a decoder already exported to ONNX (optimum's standard past/present layout, or
//! any of wrapflow's own), under their Hugging Face names, so that `wrapflow model import DIR`
//! rebuilds such a folder in wrapflow's layout (shared KV cache, wrapflow's attention) exactly as
//! it imports a safetensors folder: the graph is rebuilt, only the weights are read.
//!
//! Exporters name a linear layer's weight in one of two ways: after its module (wrapflow's
//! `model.layers.0.self_attn.q_proj`, or `...q_proj.weight`), or anonymously (`onnx::MatMul_1234`,
//! torch's TorchScript exporter, which optimum uses) with the `MatMul` that consumes it named
//! after the module (`/model/layers.0/self_attn/q_proj/MatMul`). A `MatMul` weight is stored
//! `[in, out]`; it is read back transposed, as PyTorch's `[out, in]`. Norms, biases and the
//! embedding keep their module names in every exporter.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use half::f16;
use prost::Message;

use crate::model::formats::onnx::proto::{TensorProto, dtype};

/// A model file's initializers by Hugging Face name.
pub struct OnnxTensors {
    dir: PathBuf,
    inits: Vec<TensorProto>,
    /// Hugging Face name → (index into `inits`, stored `[in, out]`: to be transposed).
    names: HashMap<String, (usize, bool)>,
}

/// The module path a weight belongs to, from a `MatMul`'s name (`/model/layers.0/mlp/up_proj/MatMul`
/// → `model.layers.0.mlp.up_proj`).
fn module_of_node(node: &str) -> Option<String> {
    let path = node.strip_prefix('/')?.strip_suffix("/MatMul")?;
    Some(path.replace('/', "."))
}

/// Whether an initializer's own name says which module it belongs to.
fn named_after_module(name: &str) -> bool {
    name.starts_with("model.") || name.starts_with("lm_head")
}

impl OnnxTensors {
    /// Reads `dir/model.onnx`'s graph. Inline weights are held in memory with it (the whole file,
    /// once); weights kept in external data stay on disk until read.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("model.onnx");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let model = crate::model::formats::onnx::proto::ModelProto::decode(&bytes[..])
            .with_context(|| format!("parsing {} as an ONNX model", path.display()))?;
        drop(bytes);
        let graph = model.graph.with_context(|| format!("{} has no graph", path.display()))?;
        // wrapflow writes Gemma's norms as GGUF keeps them (1 + w) and under its own names.
        ensure!(
            model.producer_name != "wrapflow"
                || !graph.initializer.iter().any(|t| t.name.ends_with("post_attention_norm.weight")),
            "{} was written by wrapflow from a Gemma model: import that model's GGUF or safetensors instead",
            path.display()
        );
        let inits = graph.initializer;
        let index: HashMap<&str, usize> = inits.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
        let mut names = HashMap::new();
        let mut linear = HashSet::new();
        // A MatMul's constant right-hand side is a linear layer's weight, stored [in, out].
        for node in graph.node.iter().filter(|n| n.op_type == "MatMul" && n.input.len() == 2) {
            let Some(&i) = index.get(node.input[1].as_str()) else { continue };
            if inits[i].dims.len() != 2 {
                continue;
            }
            let module = match &inits[i].name {
                n if named_after_module(n) => n.trim_end_matches(".weight").to_string(),
                _ => module_of_node(&node.name).with_context(|| {
                    format!("MatMul {:?} has an anonymous weight and is not named after a module", node.name)
                })?,
            };
            names.insert(format!("{module}.weight"), (i, true));
            linear.insert(i);
        }
        for (i, t) in inits.iter().enumerate() {
            if named_after_module(&t.name) && !linear.contains(&i) {
                names.entry(t.name.clone()).or_insert((i, false));
            }
        }
        ensure!(
            names.contains_key("model.embed_tokens.weight"),
            "{} has no `model.embed_tokens.weight`: not a decoder exported from a Hugging Face model",
            path.display()
        );
        Ok(OnnxTensors { dir: dir.to_path_buf(), inits, names })
    }

    /// Whether the model has a tensor of this Hugging Face name.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// A tensor as f32, row-major in its Hugging Face shape.
    pub fn f32(&self, name: &str) -> anyhow::Result<Vec<f32>> {
        let &(i, transpose) = self.names.get(name).with_context(|| format!("the ONNX model has no tensor {name}"))?;
        let t = &self.inits[i];
        let bytes = self.bytes(t)?;
        let values: Vec<f32> = match t.data_type {
            dtype::FLOAT => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            dtype::FLOAT16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => bail!(
                "initializer {} ({name}) has ONNX type {other}: only f32 and f16 decoders import (a quantized one \
                 needs its GGUF or safetensors)",
                t.name
            ),
        };
        let n: i64 = t.dims.iter().product();
        ensure!(
            values.len() as i64 == n,
            "initializer {} holds {} values for shape {:?}",
            t.name,
            values.len(),
            t.dims
        );
        Ok(match (transpose, t.dims.as_slice()) {
            (true, &[rows, cols]) => {
                let (rows, cols) = (rows as usize, cols as usize);
                let mut out = vec![0f32; values.len()];
                for (r, row) in values.chunks_exact(cols).enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        out[c * rows + r] = *v;
                    }
                }
                out
            }
            _ => values,
        })
    }

    /// An initializer's bytes, inline (borrowed) or read from its external data file.
    fn bytes<'t>(&self, t: &'t TensorProto) -> anyhow::Result<Cow<'t, [u8]>> {
        if t.data_location != 1 {
            ensure!(!t.raw_data.is_empty(), "initializer {} keeps its values in typed fields, not raw data", t.name);
            return Ok(Cow::Borrowed(&t.raw_data));
        }
        let field = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.as_str());
        let location = field("location").with_context(|| format!("initializer {} has no data location", t.name))?;
        ensure!(
            !location.contains("..") && !Path::new(location).is_absolute(),
            "initializer {}'s data location {location:?} is outside the model's folder",
            t.name
        );
        let offset: u64 = field("offset").unwrap_or("0").parse().context("external data offset")?;
        let path = self.dir.join(location);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let length: u64 = match field("length") {
            Some(l) => l.parse().context("external data length")?,
            None => file.metadata()?.len().saturating_sub(offset),
        };
        let mut buf = vec![0u8; length as usize];
        file.read_exact_at(&mut buf, offset).with_context(|| format!("reading {} of {}", t.name, path.display()))?;
        Ok(Cow::Owned(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_from_node_names() {
        assert_eq!(
            module_of_node("/model/layers.3/self_attn/q_proj/MatMul").as_deref(),
            Some("model.layers.3.self_attn.q_proj")
        );
        assert_eq!(module_of_node("/lm_head/MatMul").as_deref(), Some("lm_head"));
        assert_eq!(
            module_of_node("/model/layers.0/self_attn/MatMul_1"),
            None,
            "attention's own products are not layers"
        );
        assert!(named_after_module("model.layers.0.mlp.up_proj") && !named_after_module("onnx::MatMul_1234"));
    }
}
