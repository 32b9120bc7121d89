//! The rephrasing engine: ONNX Runtime setup, model loading and batched generation.

pub mod attention;
pub mod backend;
pub mod constrain;
pub mod decoder;
pub mod embed;
pub mod generate;
mod kv;
pub mod names;
pub mod remote;
pub mod runtime;
pub mod sample;

pub use backend::{Answer, Backend, Lineage, LocalBackend, Request};
pub use constrain::{NumberGuard, TokenTable, number_forms};
pub use decoder::Decoder;
pub use embed::{Embedder, cosine};
pub use generate::{
    Batcher, Completion, Finish, GenerationConfig, Prompt, SoftStop, Timing, generate, sample, sample_at,
};
pub use names::NameGuard;
pub use remote::{RemoteBackend, RemoteConfig};
pub use runtime::{Provider, SessionConfig};

/// `text`'s token ids with `bos` first unless the text already starts with it (a chat template
/// that writes `<bos>` itself).
pub fn prompt_ids(tokenizer: &tokenizers::Tokenizer, bos: Option<u32>, text: &str) -> anyhow::Result<Vec<u32>> {
    let ids = tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?;
    let ids = ids.get_ids();
    Ok(match bos {
        Some(b) if ids.first() != Some(&b) => std::iter::once(b).chain(ids.iter().copied()).collect(),
        _ => ids.to_vec(),
    })
}

/// Renders chat `messages` (`[{"role", "content"}]`) with the model's chat template, ending with
/// the assistant's turn opened.
pub fn chat_prompt(dec: &Decoder, messages: &serde_json::Value) -> anyhow::Result<String> {
    let template = dec.chat_template.as_deref().ok_or_else(|| anyhow::anyhow!("the model has no chat template"))?;
    render_chat(template, messages, true)
}

/// Renders chat `messages` with a Jinja chat `template`; with `add_generation_prompt` the text
/// ends with the assistant's turn opened.
pub fn render_chat(
    template: &str,
    messages: &serde_json::Value,
    add_generation_prompt: bool,
) -> anyhow::Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("chat", template)?;
    let ctx = minijinja::context! {
        messages => messages, add_generation_prompt => add_generation_prompt, bos_token => "", eos_token => ""
    };
    Ok(env.get_template("chat")?.render(ctx)?)
}
