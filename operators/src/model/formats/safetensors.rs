//! Safetensors: a Hugging Face folder's weight files (`model.safetensors`, or the shards listed in
//! `model.safetensors.index.json`), memory-mapped, each tensor read as f32 from f32, f16 or bf16.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

/// The memory-mapped safetensors files of a folder and, per tensor name, the file holding it.
pub struct Shards {
    maps: Vec<memmap2::Mmap>,
    index: HashMap<String, usize>,
}

impl Shards {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let files: Vec<String> = match std::fs::read(dir.join("model.safetensors.index.json")) {
            Ok(b) => {
                let idx: Json = serde_json::from_slice(&b).context("parsing model.safetensors.index.json")?;
                let map = idx["weight_map"].as_object().context("the index has no weight_map")?;
                let mut files: Vec<String> = map.values().filter_map(Json::as_str).map(str::to_string).collect();
                files.sort();
                files.dedup();
                files
            }
            Err(_) => vec!["model.safetensors".to_string()],
        };
        let (mut maps, mut index) = (vec![], HashMap::new());
        for (i, f) in files.iter().enumerate() {
            let path = dir.join(f);
            let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: read-only map of a file the import does not write.
            let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
            let st = SafeTensors::deserialize(&map).with_context(|| format!("parsing {}", path.display()))?;
            index.extend(st.names().into_iter().map(|n| (n.to_string(), i)));
            maps.push(map);
        }
        Ok(Shards { maps, index })
    }

    /// The tensors' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Each tensor's element count and type (from the headers; no weight is read).
    pub fn headers(&self) -> anyhow::Result<Vec<(usize, Dtype)>> {
        let mut out = Vec::with_capacity(self.index.len());
        for (name, &i) in &self.index {
            let t = SafeTensors::deserialize(&self.maps[i])?.tensor(name)?;
            out.push((t.shape().iter().product(), t.dtype()));
        }
        Ok(out)
    }

    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// A tensor as f32, row-major in its own shape.
    pub fn f32(&self, name: &str) -> anyhow::Result<Vec<f32>> {
        let i = *self.index.get(name).with_context(|| format!("no tensor {name}"))?;
        let st = SafeTensors::deserialize(&self.maps[i])?;
        let t = st.tensor(name)?;
        let b = t.data();
        let values = match t.dtype() {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => bail!("tensor {name} is {other:?} (f32, f16 and bf16 are supported)"),
        };
        // Each tensor is read once: its mapped pages need not stay resident (see Gguf::release).
        let start = b.as_ptr() as usize - self.maps[i].as_ptr() as usize;
        crate::model::formats::gguf::release_range(&self.maps[i], start, b.len());
        Ok(values)
    }
}
