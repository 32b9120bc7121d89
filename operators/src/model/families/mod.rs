//! The decoder families wrapflow imports. Each is one file: its names (GGUF architecture,
//! Hugging Face `model_type` and class) and what it changes in the llama-shaped decoder
//! ([`crate::model::decoder`]): its shape's extra settings read from a GGUF or a `config.json`,
//! how its tensors are stored. Adding a family is its file plus one line in `families!` below
//! (which declares its module and lists it in [`FAMILIES`]); the weight maps (`import`,
//! `import::hf`) and the graph builder read only what a `Family` says.

use anyhow::Context;
use serde_json::Value as Json;

use crate::model::decoder::LlamaConfig;
use crate::model::formats::gguf::Gguf;

/// A decoder family.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    /// Its GGUF `general.architecture`.
    pub gguf: &'static str,
    /// The `model_type` and class an import writes into `config.json`.
    pub model_type: &'static str,
    pub hf_class: &'static str,
    /// Other `model_type`s a Hugging Face folder of this graph may carry.
    pub aliases: &'static [&'static str],
    /// llama.cpp stores llama's Q and K rows permuted for its interleaved rotary (see
    /// `decoder::quant::unpermute_rows`); the other families use the "rotate half" form as they are.
    pub permuted_qk: bool,
    /// Hugging Face stores its RMSNorm weights as `w - 1` (the norm multiplies by `1 + w`; GGUF
    /// files and wrapflow's graph store `1 + w`), names the norm before the MLP
    /// `pre_feedforward_layernorm` and has norms after attention and the MLP.
    pub hf_sandwich_norms: bool,
    /// Sets what the family adds to the shape from a GGUF's metadata (`key(k)` is `arch.k`).
    pub gguf_config: fn(&Gguf, &mut LlamaConfig) -> anyhow::Result<()>,
    /// The same from a `config.json`.
    pub hf_config: fn(&Json, &mut LlamaConfig) -> anyhow::Result<()>,
}

/// Declares each family's module and lists its `FAMILY` in [`FAMILIES`], in order.
macro_rules! families {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every family wrapflow imports. Mistral 7B GGUFs carry `llama` (llama.cpp converts
        /// Mistral as llama), so they import as llama.
        pub const FAMILIES: &[Family] = &[$($module::FAMILY),*];
    };
}

families! {
    llama,
    qwen2,
    qwen3,
    phi3,
    gemma3,
}

/// A family that changes nothing of llama's shape beyond what every config says.
fn same_shape<T>(_: &T, _: &mut LlamaConfig) -> anyhow::Result<()> {
    Ok(())
}

/// The family of a GGUF's architecture, or an error naming the ones wrapflow imports.
pub fn by_gguf(arch: &str) -> anyhow::Result<Family> {
    FAMILIES.iter().find(|f| f.gguf == arch).copied().with_context(|| {
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.gguf).collect();
        // llama.cpp's converters (gguf 0.19) write Mistral 7B (MistralForCausalLM) as `llama`;
        // their `mistral3` (YaRN rotary, attention temperature) and `mistral4` (latent
        // attention) are other graphs.
        let hint = match arch {
            "mistral" => {
                " (llama.cpp writes Mistral 7B as `llama`: this file was not written by llama.cpp's converter)"
            }
            "mistral3" | "mistral4" => {
                " (Mistral 3 and 4 use YaRN rotary scaling and other attention: not llama-shaped)"
            }
            _ => "",
        };
        format!("architecture {arch:?} is not supported ({} are){hint}", names.join(", "))
    })
}

/// The family of a `config.json` `model_type`.
pub fn by_model_type(model_type: &str) -> anyhow::Result<Family> {
    let of = |f: &&Family| f.model_type == model_type || f.aliases.contains(&model_type);
    FAMILIES.iter().find(of).copied().with_context(|| {
        let names: Vec<&str> =
            FAMILIES.iter().flat_map(|f| std::iter::once(f.model_type).chain(f.aliases.iter().copied())).collect();
        format!("model_type {model_type:?} is not supported ({} are)", names.join(", "))
    })
}
