//! Phi-3: llama's shape with Q, K and V fused in one tensor, and the gate and up projections in another (split by the weight maps).

use super::{Family, same_shape};

pub const FAMILY: Family = Family {
    gguf: "phi3",
    model_type: "phi3",
    hf_class: "Phi3ForCausalLM",
    aliases: &[],
    permuted_qk: false,
    hf_sandwich_norms: false,
    gguf_config: same_shape,
    hf_config: same_shape,
};
