//! Qwen 2 and 2.5: llama's shape with biases on Q, K and V (found from the tensors).

use super::{Family, same_shape};

pub const FAMILY: Family = Family {
    gguf: "qwen2",
    model_type: "qwen2",
    hf_class: "Qwen2ForCausalLM",
    aliases: &[],
    permuted_qk: false,
    hf_sandwich_norms: false,
    gguf_config: same_shape,
    hf_config: same_shape,
};
