//! Llama (and Mistral 7B, which llama.cpp writes as `llama`): the shape every family starts from.

use super::{Family, same_shape};

pub const FAMILY: Family = Family {
    gguf: "llama",
    model_type: "llama",
    hf_class: "LlamaForCausalLM",
    aliases: &["mistral"],
    permuted_qk: true,
    hf_sandwich_norms: false,
    gguf_config: same_shape,
    hf_config: same_shape,
};
