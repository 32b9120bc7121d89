//! Qwen 3: llama's shape with norms on Q and K per head (found from the tensors).

use super::{Family, same_shape};

pub const FAMILY: Family = Family {
    gguf: "qwen3",
    model_type: "qwen3",
    hf_class: "Qwen3ForCausalLM",
    aliases: &[],
    permuted_qk: false,
    hf_sandwich_norms: false,
    gguf_config: same_shape,
    hf_config: same_shape,
};
