//! `wrapflow model inspect`: what a GGUF file holds and whether (and how) wrapflow imports it,
//! read from its header alone, so a 7B file is inspected in a moment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::model::decoder::quant::{is_linear, keeps_four_bits};
use crate::model::families::by_gguf as family;
use crate::model::formats::gguf::ggml::{self, type_name};
use crate::model::formats::gguf::{Gguf, TensorInfo, Value};
use crate::model::import::llama_config;

/// A GGUF file as `model inspect` describes it.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub file: String,
    pub architecture: String,
    pub name: Option<String>,
    pub parameters: u64,
    pub layers: Option<u64>,
    pub hidden: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub context: Option<u64>,
    pub vocabulary: Option<usize>,
    pub tensor_types: BTreeMap<String, usize>,
    pub tokenizer: Option<String>,
    pub chat_template: bool,
    /// `Ok(how)` or `Err(the one thing that stops it)`.
    pub importable: Result<String, String>,
}

/// Reads a GGUF's header and says what it is and whether wrapflow imports it.
pub fn inspect(path: &Path) -> anyhow::Result<Inspection> {
    let g = Gguf::open(path)?;
    let arch = g.str("general.architecture").unwrap_or("(none)").to_string();
    let meta = |k: &str| g.metadata.get(&format!("{arch}.{k}")).and_then(Value::as_u64);
    let mut tensor_types = BTreeMap::new();
    for t in &g.tensors {
        *tensor_types.entry(type_name(t.ggml_type)).or_insert(0) += 1;
    }
    let tokenizer = g.str("tokenizer.ggml.model").ok().map(|m| match g.str("tokenizer.ggml.pre") {
        Ok(pre) => format!("{m} (pre-tokenizer {pre})"),
        Err(_) => m.to_string(),
    });
    Ok(Inspection {
        file: path.display().to_string(),
        name: g.str("general.name").ok().map(str::to_string),
        parameters: g.tensors.iter().map(TensorInfo::elements).fold(0, u64::saturating_add),
        layers: meta("block_count"),
        hidden: meta("embedding_length"),
        heads: meta("attention.head_count"),
        kv_heads: meta("attention.head_count_kv").or(meta("attention.head_count")),
        context: meta("context_length"),
        vocabulary: g.metadata.get("tokenizer.ggml.tokens").and_then(Value::as_array).map(<[Value]>::len),
        tensor_types,
        tokenizer,
        chat_template: g.metadata.contains_key("tokenizer.chat_template"),
        importable: importable(&g).map_err(|e| format!("{e:#}")),
        architecture: arch,
    })
}

/// Everything an import checks before reading weights, in the order it checks it.
pub(crate) fn importable(g: &Gguf) -> anyhow::Result<String> {
    let fam = family(g.str("general.architecture")?)?;
    llama_config(g)?;
    for t in &g.tensors {
        ggml::block_size(t.ggml_type).map_err(|e| anyhow::anyhow!("tensor {}: {e}", t.name))?;
    }
    crate::model::text::tokenizer::tokenizer_json(g)?;
    let four = g.tensors.iter().filter(|t| is_linear(&t.name) && keeps_four_bits(t.ggml_type)).count();
    let linear = g.tensors.iter().filter(|t| is_linear(&t.name)).count();
    Ok(format!(
        "yes, as {} (--weights fp32 dequantizes every tensor; --weights q4 keeps {four} of {linear} linear \
         weights 4-bit)",
        fam.model_type
    ))
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        writeln!(f, "file          {}", self.file)?;
        writeln!(
            f,
            "architecture  {}{}",
            self.architecture,
            self.name.as_ref().map_or(String::new(), |n| format!(" ({n})"))
        )?;
        writeln!(f, "parameters    {:.1} M", self.parameters as f64 / 1e6)?;
        writeln!(
            f,
            "layers        {}, hidden {}, heads {} / {} KV",
            opt(self.layers),
            opt(self.hidden),
            opt(self.heads),
            opt(self.kv_heads)
        )?;
        writeln!(f, "context       {}", opt(self.context))?;
        let types: Vec<String> = self.tensor_types.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
        writeln!(f, "tensor types  {}", types.join(", "))?;
        let vocab = self.vocabulary.map_or(String::new(), |v| format!(", {v} tokens"));
        writeln!(f, "tokenizer     {}{vocab}", self.tokenizer.as_deref().unwrap_or("none"))?;
        writeln!(
            f,
            "chat template {}",
            if self.chat_template { "yes" } else { "no (a base model: write styles as plain few-shot text)" }
        )?;
        match &self.importable {
            Ok(how) => write!(f, "import        {how}"),
            Err(why) => write!(f, "import        no: {why}"),
        }
    }
}
