//! Models without a model hub: reading GGUF files and writing what wrapflow runs from them.
//!
//! By role, with no cycle between folders: [`formats`] (GGUF, ONNX, safetensors: files, no
//! architectures; uses no other folder), [`decoder`] (the decoder's shape, weights and ONNX graph,
//! with its quantisations; uses `formats`), [`families`] (what each decoder family changes in it;
//! uses `decoder`, `formats`), [`text`] (tokenizers; uses `formats`), [`encoders`] (the BERT
//! embedder and cross-encoder; uses `formats`) and [`import`] (a GGUF or a Hugging Face folder to
//! a model directory, and `wrapflow model inspect`; uses all but `encoders`).

pub mod decoder;
pub mod encoders;
pub mod families;
pub mod formats;
#[cfg(test)]
mod hostile;
pub mod import;
pub mod text;
#[cfg(any(test, feature = "testkit"))]
pub mod tiny;

use std::path::Path;

use anyhow::Context;

/// Writes `tokenizer.json`, `chat_template.jinja` (when the GGUF has one) and `tokenizer_config.json`
/// for the GGUF at `gguf` into `out`.
pub fn import_tokenizer(gguf: &Path, out: &Path) -> anyhow::Result<()> {
    write_tokenizer_files(&formats::gguf::Gguf::open(gguf)?, out)
}

/// The tokenizer files of a parsed GGUF.
pub fn write_tokenizer_files(g: &formats::gguf::Gguf, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tok = text::tokenizer::tokenizer_json(g)?;
    std::fs::write(out.join("tokenizer.json"), serde_json::to_vec(&tok)?)?;
    let token = |key: &str| -> Option<String> {
        let id = g.metadata.get(key)?.as_u64()? as usize;
        g.metadata.get("tokenizer.ggml.tokens")?.as_array()?.get(id)?.as_str().map(str::to_string)
    };
    let template = text::tokenizer::chat_template(g);
    if let Some(t) = &template {
        std::fs::write(out.join("chat_template.jinja"), t)?;
    }
    let config = serde_json::json!({
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": g.metadata.get("tokenizer.ggml.add_bos_token").map(|v| v == &formats::gguf::Value::Bool(true)).unwrap_or(false),
        "chat_template": template,
    });
    std::fs::write(out.join("tokenizer_config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}
