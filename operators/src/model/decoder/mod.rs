//! A llama-like decoder's shape and weights (the families differ in settings and optional
//! tensors), and the KV cache layouts its graph can have; `export` writes the graph.

pub mod blocks;
pub mod export;
pub mod quant;

use serde::{Deserialize, Serialize};

/// Shape of a llama-like decoder, with the settings of the families that differ from llama.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub intermediate_size: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    pub max_position_embeddings: usize,
    /// Per-head width where it is not hidden / heads (Qwen3's 128 with a 1024 hidden and 16 heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Keys a sliding-window layer attends to, its own position included (Gemma 3: 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    /// With a sliding window: the last layer of every `n` is global, the others local (Gemma 3: 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<usize>,
    /// With a sliding window: per layer, whether it is local (overrides the pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_layers: Option<Vec<bool>>,
    /// Rotary base of the sliding-window layers (Gemma 3: 10000; global layers use `rope_theta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f32>,
    /// `gelu_pytorch_tanh` (Gemma) or, when absent, SiLU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<String>,
    /// Query scale is `query_pre_attn_scalar^-1/2` (Gemma) instead of `head_dim^-1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f32>,
    /// Embeddings are multiplied by √hidden (Gemma).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_embeddings: bool,
    /// Linear rotary scaling: global layers rotate by position / factor (Gemma 3 4B and up: 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_linear_factor: Option<f32>,
    /// Per rotary frequency, a divisor of it (llama.cpp's `rope_freqs`; Llama 3.1's "llama3"
    /// scaling), applied in global layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f32>>,
}

impl LlamaConfig {
    /// Checks a shape read from a file before anything divides or allocates by it (a hostile
    /// `num_attention_heads: 0` would divide by zero), and drops a `head_dim` equal to
    /// hidden / heads.
    pub fn validated(mut self) -> anyhow::Result<Self> {
        // Far above any real model's (Gemma 3's vocabulary is 262,144), and small enough that
        // products of two of them fit in any index.
        const MAX: usize = 1 << 24;
        let sizes = [
            ("vocabulary size", self.vocab_size),
            ("hidden size", self.hidden_size),
            ("layer count", self.num_hidden_layers),
            ("attention head count", self.num_attention_heads),
            ("key/value head count", self.num_key_value_heads),
            ("feed-forward size", self.intermediate_size),
        ];
        for (name, v) in sizes.into_iter().chain(self.head_dim.map(|d| ("head size", d))) {
            anyhow::ensure!((1..=MAX).contains(&v), "{name} {v} is out of range (1 to {MAX})");
        }
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        anyhow::ensure!(heads.is_multiple_of(kv), "{heads} attention heads do not share {kv} key/value heads evenly");
        anyhow::ensure!(
            self.head_dim.is_some() || self.hidden_size.is_multiple_of(heads),
            "hidden size {} is not a multiple of {heads} attention heads, and no head size is given",
            self.hidden_size
        );
        let d = self.head_dim.unwrap_or(self.hidden_size / heads);
        anyhow::ensure!(heads * d <= MAX, "{heads} attention heads of size {d} are out of range");
        // The graph holds rotary tables of positions × head size / 2 values: at most 2^27 (a
        // 1M-token context with heads of 128 is 2^26).
        let positions = self.max_position_embeddings;
        anyhow::ensure!(
            positions.checked_mul(d / 2).is_some_and(|n| n <= 1 << 27),
            "a context of {positions} positions with heads of {d} is out of range"
        );
        self.head_dim = self.head_dim.filter(|&d| d * heads != self.hidden_size);
        Ok(self)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The window of layer `i`, `None` for a global layer.
    pub fn window(&self, i: usize) -> Option<usize> {
        let w = self.sliding_window?;
        if let Some(local) = &self.sliding_layers {
            return local.get(i).copied().unwrap_or(true).then_some(w);
        }
        match self.sliding_window_pattern {
            Some(n) if (i + 1).is_multiple_of(n) => None,
            _ => Some(w),
        }
    }

    /// The rotary base of layer `i` (see [`LlamaConfig::inv_freq`] for its frequencies).
    pub fn rope_base(&self, i: usize) -> f32 {
        match (self.window(i), self.rope_local_base_freq) {
            (Some(_), Some(local)) => local,
            _ => self.rope_theta,
        }
    }

    /// The rotary frequencies of layer `i` (`head_dim / 2` of them): its base's, divided in global
    /// layers by the linear factor and the per-frequency factors.
    pub fn inv_freq(&self, i: usize) -> Vec<f32> {
        let d = self.head_dim();
        let base = self.rope_base(i);
        let local = self.window(i).is_some() && self.rope_local_base_freq.is_some();
        (0..d / 2)
            .map(|j| {
                let f = base.powf(-(2.0 * j as f32) / d as f32);
                if local {
                    return f;
                }
                let per = self.rope_freq_factors.as_ref().and_then(|v| v.get(j)).copied().unwrap_or(1.0);
                f / self.rope_linear_factor.unwrap_or(1.0) / per
            })
            .collect()
    }

    /// The attention scale.
    pub fn attention_scale(&self) -> f32 {
        1.0 / self.query_pre_attn_scalar.unwrap_or(self.head_dim() as f32).sqrt()
    }
}

/// Llama 3.1's "llama3" rotary scaling as per-frequency divisors, as llama.cpp's converter writes
/// them into `rope_freqs`: 1 for short wavelengths, `factor` for long ones, smoothly between.
pub fn llama3_freq_factors(base: f32, head_dim: usize, factor: f64, low: f64, high: f64, old_ctx: f64) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    (0..head_dim / 2)
        .map(|j| {
            let freq = (base as f64).powf(-(2.0 * j as f64) / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor as f32
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// How a decoder graph keeps its KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvLayout {
    /// optimum's layout: `past_key_values.N.*` hold `[batch, kv_heads, past, head_dim]` and
    /// `present.N.*` return past + new (a copy of the whole cache per layer and step); rows are
    /// left-padded, with `position_ids`.
    #[default]
    Standard,
    /// One buffer per layer, `[batch, kv_heads, capacity, head_dim]`, that the caller passes as
    /// both `past_key_values.N.*` and `present.N.*`: each step writes only its new position.
    /// Rows are right-padded (a row's tokens start at position 0); `attention_mask` marks them
    /// and sets each row's position, so there is no `position_ids` input (the layout of
    /// onnxruntime-genai's GQA models). Attention is wrapflow's
    /// `ai.wrapflow:GroupQueryAttention` (the engine's attention operator), so only wrapflow runs it.
    Shared,
    /// [`KvLayout::Shared`] with ONNX Runtime's own `com.microsoft:GroupQueryAttention`: the same
    /// inputs and outputs, runnable by any ONNX Runtime (onnxruntime-genai, other languages);
    /// its decode step is slower on CPU (benchmarks/RESULTS.md).
    SharedOrt,
}

/// A linear layer's weight, `out × in`.
pub enum Linear {
    /// Row-major `[out, in]`.
    F32(Vec<f32>),
    /// Row-major `[out, in]` in f16 (`--weights fp16`): the graph multiplies it in f16.
    F16(Vec<half::f16>),
    /// 4-bit blocks of 32: `[out, in/32, 16]` packed bytes (element `2i` in the low nibble of
    /// byte `i`), a scale and a minimum per block: `w = scale * q + min` (GGUF's Q4_1).
    Q4 { packed: Vec<u8>, scales: Vec<f32>, mins: Vec<f32> },
}

impl Linear {
    /// Layers over the same input stacked into one (outputs concatenated in order).
    pub fn stack(parts: &[&Linear]) -> Linear {
        match parts[0] {
            Linear::F32(_) => Linear::F32(parts.iter().flat_map(|p| p.to_f32()).collect()),
            Linear::F16(_) => {
                let halves: Option<Vec<&[half::f16]>> =
                    parts.iter().map(|p| if let Linear::F16(w) = p { Some(&w[..]) } else { None }).collect();
                match halves {
                    Some(h) => Linear::F16(h.concat()),
                    None => Linear::F32(parts.iter().flat_map(|p| p.to_f32()).collect()),
                }
            }
            Linear::Q4 { .. } => {
                let (mut packed, mut scales, mut mins) = (vec![], vec![], vec![]);
                for p in parts {
                    if let Linear::Q4 { packed: pk, scales: sc, mins: mn } = p {
                        packed.extend_from_slice(pk);
                        scales.extend_from_slice(sc);
                        mins.extend_from_slice(mn);
                    } else {
                        // Mixed formats: stack their f32 values instead.
                        return Linear::F32(parts.iter().flat_map(|p| p.to_f32()).collect());
                    }
                }
                Linear::Q4 { packed, scales, mins }
            }
        }
    }

    /// The layer cut into layers of `sizes` output rows each, in order (for fused tensors: Phi-3's
    /// QKV and gate/up), 4-bit blocks kept as they are.
    pub fn split_rows(&self, n_in: usize, sizes: &[usize]) -> Vec<Linear> {
        let mut start = 0;
        sizes
            .iter()
            .map(|&rows| {
                let r = start..start + rows;
                start += rows;
                match self {
                    Linear::F32(w) => Linear::F32(w[r.start * n_in..r.end * n_in].to_vec()),
                    Linear::F16(w) => Linear::F16(w[r.start * n_in..r.end * n_in].to_vec()),
                    Linear::Q4 { packed, scales, mins } => {
                        let blocks = n_in / 32;
                        Linear::Q4 {
                            packed: packed[r.start * blocks * 16..r.end * blocks * 16].to_vec(),
                            scales: scales[r.start * blocks..r.end * blocks].to_vec(),
                            mins: mins[r.start * blocks..r.end * blocks].to_vec(),
                        }
                    }
                }
            })
            .collect()
    }

    /// The same weights as f32 (`w = scale * (q - zero)` for 4-bit blocks), row-major `[out, in]`.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Linear::F32(w) => w.clone(),
            Linear::F16(w) => w.iter().map(|x| x.to_f32()).collect(),
            Linear::Q4 { packed, scales, mins } => packed
                .chunks_exact(16)
                .zip(scales.iter().zip(mins))
                .flat_map(|(blk, (s, m))| {
                    blk.iter().flat_map(move |b| [s * (b & 0xF) as f32 + m, s * (b >> 4) as f32 + m])
                })
                .collect(),
        }
    }
}

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: Vec<f32>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    /// Q, K and V biases, concatenated in that order (Qwen2).
    pub qkv_bias: Option<Vec<f32>>,
    /// RMSNorm weights `[head_dim]` applied to each query and key head before rotary (Qwen3).
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// RMSNorms on the attention and feed-forward outputs before their residuals (Gemma 3).
    pub post_norms: Option<(Vec<f32>, Vec<f32>)>,
}

pub struct LlamaWeights {
    /// `[vocab, hidden]` (f32, or f16 for `--weights fp16`), also the output head when `output`
    /// is `None` (tied).
    pub embed: Linear,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Vec<f32>,
    /// A separate output head `[vocab, hidden]` (Llama 3 8B, Qwen2.5 7B, Mistral).
    pub output: Option<Linear>,
}

impl LlamaWeights {
    /// Every linear layer as f32: the reference that 4-bit weights are checked against.
    pub fn dequantized(&self) -> LlamaWeights {
        let f = |l: &Linear| Linear::F32(l.to_f32());
        LlamaWeights {
            embed: f(&self.embed),
            final_norm: self.final_norm.clone(),
            output: self.output.as_ref().map(f),
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    attn_norm: l.attn_norm.clone(),
                    q: f(&l.q),
                    k: f(&l.k),
                    v: f(&l.v),
                    o: f(&l.o),
                    ffn_norm: l.ffn_norm.clone(),
                    gate: f(&l.gate),
                    up: f(&l.up),
                    down: f(&l.down),
                    qkv_bias: l.qkv_bias.clone(),
                    qk_norm: l.qk_norm.clone(),
                    post_norms: l.post_norms.clone(),
                })
                .collect(),
        }
    }
}
