//! The blocks that decoder graphs are made of: norms, linear layers (f32 or 4-bit), attention
//! inputs, the feed-forward block and the output head, each as ONNX nodes.

use crate::model::decoder::{LayerWeights, Linear, LlamaConfig};
use crate::model::formats::onnx::graph::{Dim, Graph, attr_f, attr_i, attr_ints};
use crate::model::formats::onnx::proto::dtype;

pub(super) struct Builder<'a> {
    pub g: Graph,
    pub cfg: &'a LlamaConfig,
    /// f32 linear layers become int8 ones ([`Builder::linear_int8`]).
    pub int8: bool,
}

impl Builder<'_> {
    /// The token embedding of `ids` (scaled by √hidden where the family does): the table's
    /// initializer name and the embedded values.
    /// An f16 table (`--weights fp16`) is gathered in f16 and cast to f32. Returns the table's
    /// initializer name, whether it is f16, and the embedded values.
    pub fn embedding(&mut self, table: Linear, ids: &str) -> (String, bool, String) {
        let dims = [self.cfg.vocab_size as i64, self.cfg.hidden_size as i64];
        let (embed, half) = match table {
            Linear::F16(t) => (self.g.init_f16("model.embed_tokens.weight", &dims, &t), true),
            other => (self.g.init_f32("model.embed_tokens.weight", &dims, &other.to_f32()), false),
        };
        let mut x = self.g.op("Gather", &[&embed, ids], vec![attr_i("axis", 0)]);
        if half {
            x = self.cast(&x, dtype::FLOAT);
        }
        if self.cfg.scale_embeddings {
            let s = self.g.const_f32((self.cfg.hidden_size as f32).sqrt());
            x = self.g.op("Mul", &[&x, &s], vec![]);
        }
        (embed, half, x)
    }

    /// RMSNorm over the last axis, whose width is `w`'s.
    pub fn rms_norm(&mut self, x: &str, w: &[f32], name: &str) -> String {
        let w = self.g.init_f32(name, &[w.len() as i64], w);
        let two = self.g.const_f32(2.0);
        let eps = self.g.const_f32(self.cfg.rms_norm_eps);
        // Pow → ReduceMean → Add → Sqrt → Div → Mul: ONNX Runtime fuses it into one kernel.
        let sq = self.g.op("Pow", &[x, &two], vec![]);
        let mean = self.g.op("ReduceMean", &[&sq], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)]);
        let var = self.g.op("Add", &[&mean, &eps], vec![]);
        let rms = self.g.op("Sqrt", &[&var], vec![]);
        let normed = self.g.op("Div", &[x, &rms], vec![]);
        self.g.op("Mul", &[&normed, &w], vec![])
    }

    pub fn linear(&mut self, x: &str, w: &Linear, name: &str, n_in: usize, n_out: usize) -> String {
        match w {
            Linear::F32(data) if self.int8 => self.linear_int8(x, data, name, n_in, n_out),
            Linear::F32(data) => {
                let t = transposed(data, n_in, n_out);
                let w = self.g.init_f32(name, &[n_in as i64, n_out as i64], &t);
                self.g.op("MatMul", &[x, &w], vec![])
            }
            Linear::F16(data) => {
                // f16 weights multiply f16 inputs; the result returns to f32 for the residual.
                let t = transposed(data, n_in, n_out);
                let w = self.g.init_f16(name, &[n_in as i64, n_out as i64], &t);
                let x = self.cast(x, dtype::FLOAT16);
                let y = self.g.op("MatMul", &[&x, &w], vec![]);
                self.cast(&y, dtype::FLOAT)
            }
            Linear::Q4 { packed, scales, mins } => {
                // x·wᵀ with w = scale·q + min splits exactly into MatMulNBits on scale·q (integer
                // zero point 0, which keeps ONNX Runtime on its fused kernel; a fractional zero
                // point falls back to dequantizing every call) plus, per block, min × the sum of
                // that block of x: a [in/32, out] MatMul.
                let blocks = n_in / 32;
                let b = self.g.init_u8(&format!("{name}.q4"), &[n_out as i64, blocks as i64, 16], packed.clone());
                let s = self.g.init_f32(&format!("{name}.scales"), &[(n_out * blocks) as i64], scales);
                let zp = self.g.init_u8(
                    &format!("{name}.zero_points"),
                    &[(n_out * blocks.div_ceil(2)) as i64],
                    vec![0; n_out * blocks.div_ceil(2)],
                );
                let attrs = vec![
                    attr_i("K", n_in as i64),
                    attr_i("N", n_out as i64),
                    attr_i("bits", 4),
                    attr_i("block_size", 32),
                    attr_i("accuracy_level", 0),
                ];
                let y = self.g.op_n("MatMulNBits", "com.microsoft", &[x, &b, &s, &zp], 1, attrs).remove(0);
                let mut mt = vec![0f32; blocks * n_out];
                for o in 0..n_out {
                    for k in 0..blocks {
                        mt[k * n_out + o] = mins[o * blocks + k];
                    }
                }
                let mt = self.g.init_f32(&format!("{name}.mins"), &[blocks as i64, n_out as i64], &mt);
                let shape = self.g.const_i64(&[0, 0, blocks as i64, 32], false);
                let last = self.g.const_i64(&[-1], false);
                let xr = self.g.op("Reshape", &[x, &shape], vec![]);
                let xs = self.g.op("ReduceSum", &[&xr, &last], vec![attr_i("keepdims", 0)]);
                let corr = self.g.op("MatMul", &[&xs, &mt], vec![]);
                self.g.op("Add", &[&y, &corr], vec![])
            }
        }
    }

    /// `x·wᵀ` with `w` (`[out, in]`) quantized symmetrically to 7 bits in int8, one scale per
    /// output row, run by `DynamicQuantizeMatMul`, which quantizes `x` to u8 per call and
    /// multiplies in integers. Seven bits (±63, ONNX Runtime's `reduce_range`): AVX2's
    /// `vpmaddubsw` adds two u8 × i8 products in a saturating i16, which ±127 overflows.
    fn linear_int8(&mut self, x: &str, w: &[f32], name: &str, n_in: usize, n_out: usize) -> String {
        const LEVELS: f32 = 63.0;
        let scales: Vec<f32> = w
            .chunks_exact(n_in)
            .map(|row| row.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE) / LEVELS)
            .collect();
        let mut q = vec![0i8; n_in * n_out];
        for (o, row) in w.chunks_exact(n_in).enumerate() {
            for (i, v) in row.iter().enumerate() {
                q[i * n_out + o] = (v / scales[o]).round().clamp(-LEVELS, LEVELS) as i8;
            }
        }
        let b = self.g.init_i8(&format!("{name}.int8"), &[n_in as i64, n_out as i64], &q);
        let s = self.g.init_f32(&format!("{name}.scales"), &[n_out as i64], &scales);
        self.g.op_n("DynamicQuantizeMatMul", "com.microsoft", &[x, &b, &s], 1, vec![]).remove(0)
    }

    /// `x + y`, `y` normed first where the family norms block outputs (Gemma 3).
    pub fn residual(&mut self, x: &str, y: &str, post_norm: Option<&[f32]>, name: &str) -> String {
        let y = match post_norm {
            Some(w) => self.rms_norm(y, w, &format!("{name}.weight")),
            None => y.to_string(),
        };
        self.g.op("Add", &[x, &y], vec![])
    }

    /// The feed-forward block with its residual: `x + down(act(gate(n)) * up(n))`, `n` = norm(x),
    /// `act` SiLU or (Gemma) GELU with the tanh approximation.
    pub fn mlp(&mut self, x: &str, lw: &LayerWeights, p: &str) -> String {
        let (h, f) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let xn = self.rms_norm(x, &lw.ffn_norm, &format!("{p}.post_attention_layernorm.weight"));
        let gate = self.linear(&xn, &lw.gate, &format!("{p}.mlp.gate_proj"), h, f);
        let up = self.linear(&xn, &lw.up, &format!("{p}.mlp.up_proj"), h, f);
        let act = match self.cfg.hidden_activation.as_deref() {
            Some("gelu_pytorch_tanh") => self.gelu_tanh(&gate),
            _ => {
                let sig = self.g.op("Sigmoid", &[&gate], vec![]);
                self.g.op("Mul", &[&gate, &sig], vec![])
            }
        };
        let act = self.g.op("Mul", &[&act, &up], vec![]);
        let down = self.linear(&act, &lw.down, &format!("{p}.mlp.down_proj"), f, h);
        let post = lw.post_norms.as_ref().map(|n| &n.1[..]);
        self.residual(x, &down, post, &format!("{p}.post_feedforward_layernorm"))
    }

    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    fn gelu_tanh(&mut self, x: &str) -> String {
        let g = &mut self.g;
        let (c, k, half, one) = (
            g.const_f32((2.0 / std::f32::consts::PI).sqrt()),
            g.const_f32(0.044715),
            g.const_f32(0.5),
            g.const_f32(1.0),
        );
        let x2 = g.op("Mul", &[x, x], vec![]);
        let x3 = g.op("Mul", &[&x2, x], vec![]);
        let kx3 = g.op("Mul", &[&x3, &k], vec![]);
        let inner = g.op("Add", &[x, &kx3], vec![]);
        let inner = g.op("Mul", &[&inner, &c], vec![]);
        let t = g.op("Tanh", &[&inner], vec![]);
        let t = g.op("Add", &[&t, &one], vec![]);
        let hx = g.op("Mul", &[x, &half], vec![]);
        g.op("Mul", &[&hx, &t], vec![])
    }

    /// Final norm and the output head (tied to `embed` unless the weights have their own) on one
    /// position per row (`[batch, hidden]`): the `logits` output, `[batch, 1, vocab]`.
    /// `half_embed`: the tied table is f16.
    pub fn head(
        &mut self,
        x_last: &str,
        (embed, half_embed): (&str, bool),
        final_norm: &[f32],
        output: Option<&Linear>,
        batch: Dim,
    ) {
        let (h, vocab) = (self.cfg.hidden_size, self.cfg.vocab_size);
        let x = self.rms_norm(x_last, final_norm, "model.norm.weight");
        let logits = match output {
            Some(w) => {
                let ax1 = self.g.const_i64(&[1], false);
                let x = self.g.op("Unsqueeze", &[&x, &ax1], vec![]);
                self.linear(&x, w, "lm_head", h, vocab)
            }
            None => {
                let x = if half_embed { self.cast(&x, dtype::FLOAT16) } else { x };
                let mut logits = self.g.op("Gemm", &[&x, embed], vec![attr_i("transB", 1), attr_f("alpha", 1.0)]);
                if half_embed {
                    logits = self.cast(&logits, dtype::FLOAT);
                }
                let ax1 = self.g.const_i64(&[1], false);
                self.g.op("Unsqueeze", &[&logits, &ax1], vec![])
            }
        };
        self.g.output(&logits, "logits", dtype::FLOAT, &[batch, Dim::Fixed(1), Dim::Fixed(vocab as i64)]);
    }

    fn cast(&mut self, x: &str, to: i32) -> String {
        self.g.op("Cast", &[x], vec![attr_i("to", to as i64)])
    }

    /// Adds a bias vector to `x`'s last axis.
    pub fn bias(&mut self, x: &str, bias: &[f32], name: &str) -> String {
        let b = self.g.init_f32(name, &[bias.len() as i64], bias);
        self.g.op("Add", &[x, &b], vec![])
    }

    /// RMSNorm of each `heads × head_dim` head of `x` (`[batch, seq, heads·head_dim]`), Qwen3's
    /// query and key norm.
    pub fn head_norm(&mut self, x: &str, w: &[f32], heads: usize, name: &str) -> String {
        let d = self.cfg.head_dim() as i64;
        let split = self.g.const_i64(&[0, 0, heads as i64, d], false);
        let merge = self.g.const_i64(&[0, 0, heads as i64 * d], false);
        let xh = self.g.op("Reshape", &[x, &split], vec![]);
        let xh = self.rms_norm(&xh, w, name);
        self.g.op("Reshape", &[&xh, &merge], vec![])
    }

    /// Q, K and V of a normed input as one packed `[batch, seq, (heads + 2 kv_heads)·head_dim]`
    /// tensor, biases and head norms applied: what `GroupQueryAttention` takes.
    pub fn packed_qkv(&mut self, xn: &str, lw: &LayerWeights, p: &str) -> String {
        let (h, nh, kvh, d) =
            (self.cfg.hidden_size, self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim());
        let qkv = Linear::stack(&[&lw.q, &lw.k, &lw.v]);
        let mut qkv = self.linear(xn, &qkv, &format!("{p}.self_attn.qkv_proj"), h, (nh + 2 * kvh) * d);
        if let Some(bias) = &lw.qkv_bias {
            qkv = self.bias(&qkv, bias, &format!("{p}.self_attn.qkv_proj.bias"));
        }
        let Some((qn, kn)) = &lw.qk_norm else { return qkv };
        let sizes = self.g.const_i64(&[(nh * d) as i64, (kvh * d) as i64, (kvh * d) as i64], false);
        let parts = self.g.op_n("Split", "", &[&qkv, &sizes], 3, vec![attr_i("axis", -1)]);
        let q = self.head_norm(&parts[0], qn, nh, &format!("{p}.self_attn.q_norm.weight"));
        let k = self.head_norm(&parts[1], kn, kvh, &format!("{p}.self_attn.k_norm.weight"));
        self.g.op("Concat", &[&q, &k, &parts[2]], vec![attr_i("axis", -1)])
    }

    /// Q, K and V of a normed input as three tensors `[batch, seq, heads·head_dim]`, biases and
    /// head norms applied.
    pub fn separate_qkv(&mut self, xn: &str, lw: &LayerWeights, p: &str) -> [String; 3] {
        let (h, nh, kvh, d) =
            (self.cfg.hidden_size, self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim());
        let mut q = self.linear(xn, &lw.q, &format!("{p}.self_attn.q_proj"), h, nh * d);
        let mut k = self.linear(xn, &lw.k, &format!("{p}.self_attn.k_proj"), h, kvh * d);
        let mut v = self.linear(xn, &lw.v, &format!("{p}.self_attn.v_proj"), h, kvh * d);
        if let Some(bias) = &lw.qkv_bias {
            let (bq, rest) = bias.split_at(nh * d);
            let (bk, bv) = rest.split_at(kvh * d);
            q = self.bias(&q, bq, &format!("{p}.self_attn.q_proj.bias"));
            k = self.bias(&k, bk, &format!("{p}.self_attn.k_proj.bias"));
            v = self.bias(&v, bv, &format!("{p}.self_attn.v_proj.bias"));
        }
        if let Some((qn, kn)) = &lw.qk_norm {
            q = self.head_norm(&q, qn, nh, &format!("{p}.self_attn.q_norm.weight"));
            k = self.head_norm(&k, kn, kvh, &format!("{p}.self_attn.k_norm.weight"));
        }
        [q, k, v]
    }

    /// `x * cos + rotate_half(x) * sin` over the last axis.
    pub fn rope(&mut self, x: &str, cos: &str, sin: &str) -> String {
        let halves = self.g.op_n("Split", "", &[x], 2, vec![attr_i("axis", -1)]);
        let neg = self.g.op("Neg", &[&halves[1]], vec![]);
        let rot = self.g.op("Concat", &[&neg, &halves[0]], vec![attr_i("axis", -1)]);
        let a = self.g.op("Mul", &[x, cos], vec![]);
        let b = self.g.op("Mul", &[&rot, sin], vec![]);
        self.g.op("Add", &[&a, &b], vec![])
    }
}

/// A row-major `[out, in]` weight as `[in, out]`, the layout MatMul takes without a Transpose.
fn transposed<T: Copy + Default>(data: &[T], n_in: usize, n_out: usize) -> Vec<T> {
    let mut t = vec![T::default(); data.len()];
    for o in 0..n_out {
        for i in 0..n_in {
            t[i * n_out + o] = data[o * n_in + i];
        }
    }
    t
}
