//! The rephrasing engine: ONNX Runtime setup, model loading and batched generation.

pub mod attention;
pub mod backend;
pub mod decode;
pub mod encoders;
pub mod guards;
pub mod runtime;

pub use crate::fidelity::numbers::number_forms;
pub use backend::remote::{RemoteBackend, RemoteConfig};
pub use backend::{Answer, Backend, Lineage, LocalBackend, Request, SharedBackend, shared};
pub use decode::decoder::Decoder;
pub use decode::generate::{
    AnswerCheck, Batcher, Completion, Finish, GenerationConfig, Prompt, SoftStop, Timing, generate, sample, sample_at,
};
pub use encoders::embed::{Embedder, cosine};
pub use encoders::entail::Entailer;
pub use guards::constrain::{NumberGuard, TokenTable};
pub use guards::leak::{LEAK_TOKENS, LeakGuard};
pub use guards::names::NameGuard;
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
    render_chat(template, messages, true, &dec.eos_token)
}

/// Renders chat `messages` with a Jinja chat `template` as Transformers' `apply_chat_template`
/// does (trimmed and left-stripped blocks, Python string methods, `raise_exception`, `tojson`,
/// `tools` none); with `add_generation_prompt` the text ends with the assistant's turn opened.
/// `bos_token` renders empty: prompts get BOS from [`prompt_ids`] where the model wants it, so a
/// template cannot double it. There is no `strftime_now`, so templates that date their system
/// prompt use their own fixed default and the same input gives the same prompt on any day.
pub fn render_chat(
    template: &str,
    messages: &serde_json::Value,
    add_generation_prompt: bool,
    eos_token: &str,
) -> anyhow::Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template)?;
    let ctx = minijinja::context! {
        messages => messages, add_generation_prompt => add_generation_prompt, bos_token => "",
        eos_token => eos_token, tools => (), documents => ()
    };
    Ok(env.get_template("chat")?.render(ctx)?)
}
