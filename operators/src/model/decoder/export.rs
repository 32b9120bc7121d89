//! The decoder as an ONNX graph with a KV cache, in the input/output layout that optimum exports:
//! inputs `input_ids`, `attention_mask`, `position_ids`, `past_key_values.N.key|value`
//! ([batch, kv_heads, past, head_dim]); outputs `logits` and `present.N.key|value`. `logits`
//! holds the last position only ([batch, 1, vocab]): generation needs no more, and full-sequence
//! logits of a 300-token prefill would cost batch × 300 × vocab floats. Readers of this layout
//! take `logits[:, -1, :]`, which works for both.

use crate::model::decoder::blocks::Builder;
use crate::model::decoder::{KvLayout, LlamaConfig, LlamaWeights};
use crate::model::formats::onnx::graph::{Dim, Graph, attr_f, attr_i, attr_ints};
use crate::model::formats::onnx::proto::dtype;

/// The `past_key_values.N.key|value` inputs of every layer.
/// The domain of wrapflow's own operators in the graphs it writes (its attention, which the
/// engine registers under this name).
pub const DOMAIN: &str = "ai.wrapflow";

fn past_inputs(g: &mut Graph, layers: usize, dims: &[Dim]) -> Vec<(String, String)> {
    (0..layers)
        .map(|i| {
            (
                g.input(&format!("past_key_values.{i}.key"), dtype::FLOAT, dims),
                g.input(&format!("past_key_values.{i}.value"), dtype::FLOAT, dims),
            )
        })
        .collect()
}

/// The ONNX decoder for `cfg` with `weights`, keeping its cache in `layout`, built into `g`;
/// returned with the model's doc string. It takes the weights by value and drops each layer's
/// once its nodes hold them (in a [`Graph::spilling`] graph, once they are on disk), so an import
/// never keeps two copies of the model in memory. f16 weights (`--weights fp16`) are multiplied
/// in f16; with `int8`, f32 linear layers are quantized to int8 (`--weights int8`).
pub fn build(
    cfg: &LlamaConfig,
    weights: LlamaWeights,
    layout: KvLayout,
    int8: bool,
    g: Graph,
) -> (Graph, &'static str) {
    let b = Builder { g, cfg, int8 };
    match layout {
        KvLayout::Standard => (build_standard(weights, b), "llama decoder with KV cache, exported by wrapflow"),
        KvLayout::Shared | KvLayout::SharedOrt => {
            let domain = if layout == KvLayout::Shared { DOMAIN } else { "com.microsoft" };
            (
                build_shared(weights, domain, b),
                "llama decoder with a shared-buffer KV cache (GroupQueryAttention), exported by wrapflow",
            )
        }
    }
}

/// A rotary table per distinct set of frequencies: `(frequencies, cos, sin)`.
type RopeTables = Vec<(Vec<f32>, String, String)>;

/// The layers' rotary frequencies, each set once, in layer order (Gemma 3's local and global
/// layers differ).
fn rope_freqs(cfg: &LlamaConfig) -> Vec<Vec<f32>> {
    let mut sets: Vec<Vec<f32>> = vec![];
    for i in 0..cfg.num_hidden_layers {
        let f = cfg.inv_freq(i);
        if !sets.contains(&f) {
            sets.push(f);
        }
    }
    sets
}

/// The table of layer `i` among `tables`.
fn table<'t>(tables: &'t RopeTables, cfg: &LlamaConfig, i: usize) -> (&'t str, &'t str) {
    let f = cfg.inv_freq(i);
    let (_, cos, sin) = tables.iter().find(|t| t.0 == f).expect("a table per set of frequencies");
    (cos, sin)
}

/// [`KvLayout::Shared`]'s rotary tables: cos and sin by position, `[max_position, head_dim / 2]`.
fn cached_rope_tables(g: &mut Graph, cfg: &LlamaConfig) -> RopeTables {
    let (d, positions) = (cfg.head_dim(), cfg.max_position_embeddings.max(1));
    let mut tables = vec![];
    for inv in rope_freqs(cfg) {
        let angle = |p: usize, i: usize| p as f32 * inv[i];
        let cos: Vec<f32> =
            (0..positions).flat_map(|p| (0..d / 2).map(move |i| (p, i))).map(|(p, i)| angle(p, i).cos()).collect();
        let sin: Vec<f32> =
            (0..positions).flat_map(|p| (0..d / 2).map(move |i| (p, i))).map(|(p, i)| angle(p, i).sin()).collect();
        let suffix = if tables.is_empty() { String::new() } else { format!(".{}", tables.len()) };
        let cos = g.init_f32(&format!("rope.cos_cache{suffix}"), &[positions as i64, (d / 2) as i64], &cos);
        let sin = g.init_f32(&format!("rope.sin_cache{suffix}"), &[positions as i64, (d / 2) as i64], &sin);
        tables.push((inv, cos, sin));
    }
    tables
}

/// [`KvLayout::Standard`]'s rotary tables from `position_ids`: `[batch, 1, seq, head_dim]`.
fn position_rope_tables(g: &mut Graph, cfg: &LlamaConfig, pos: &str, ax1: &str, ax2: &str) -> RopeTables {
    let d = cfg.head_dim();
    let posf = g.op("Cast", &[pos], vec![attr_i("to", dtype::FLOAT as i64)]);
    let posf = g.op("Unsqueeze", &[&posf, ax2], vec![]);
    let mut tables = vec![];
    for inv in rope_freqs(cfg) {
        let suffix = if tables.is_empty() { String::new() } else { format!(".{}", tables.len()) };
        let name = g.init_f32(&format!("rope.inv_freq{suffix}"), &[(d / 2) as i64], &inv);
        let freqs = g.op("Mul", &[&posf, &name], vec![]);
        let emb = g.op("Concat", &[&freqs, &freqs], vec![attr_i("axis", -1)]);
        let cos = g.op("Cos", &[&emb], vec![]);
        let cos = g.op("Unsqueeze", &[&cos, ax1], vec![]);
        let sin = g.op("Sin", &[&emb], vec![]);
        let sin = g.op("Unsqueeze", &[&sin, ax1], vec![]);
        tables.push((inv, cos, sin));
    }
    tables
}

/// The [`KvLayout::Shared`] graph. Per row, `seqlens = sum(attention_mask) - 1` is the position
/// of its last token; a prompt (`sequence_length` = mask width) is written to positions 0.., a
/// step (one token) at `seqlens`. The logits are those of each row's last real token.
fn build_shared(weights: LlamaWeights, attention: &str, mut b: Builder) -> Graph {
    let cfg = b.cfg;
    let LlamaWeights { embed: embed_table, layers, final_norm, output } = weights;
    let (h, nh, kvh, d) = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
    let g = &mut b.g;
    let batch = Dim::Sym("batch_size");
    let ids = g.input("input_ids", dtype::INT64, &[batch.clone(), Dim::Sym("sequence_length")]);
    let mask = g.input("attention_mask", dtype::INT64, &[batch.clone(), Dim::Sym("total_sequence_length")]);
    let kv_dims = [batch.clone(), Dim::Fixed(kvh as i64), Dim::Sym("max_sequence_length"), Dim::Fixed(d as i64)];
    let pasts = past_inputs(g, cfg.num_hidden_layers, &kv_dims);
    let (embed, half_embed, mut x) = b.embedding(embed_table, &ids);
    let g = &mut b.g;

    // GroupQueryAttention's inputs from the mask: last positions (int32) and the mask width.
    let ax1 = g.const_i64(&[1], false);
    let one = g.const_i64(&[1], true);
    let lens = g.op("ReduceSum", &[&mask, &ax1], vec![attr_i("keepdims", 0)]);
    let last = g.op("Sub", &[&lens, &one], vec![]);
    let seqlens = g.op("Cast", &[&last], vec![attr_i("to", dtype::INT32 as i64)]);
    let mask_shape = g.op("Shape", &[&mask], vec![]);
    let width = g.op("Gather", &[&mask_shape, &one], vec![attr_i("axis", 0)]);
    let total = g.op("Cast", &[&width], vec![attr_i("to", dtype::INT32 as i64)]);
    let tables = cached_rope_tables(g, cfg);
    let kv_out = [batch.clone(), Dim::Fixed(kvh as i64), Dim::Sym("max_sequence_length"), Dim::Fixed(d as i64)];
    for (i, lw) in layers.into_iter().enumerate() {
        let lw = &lw;
        let p = format!("model.layers.{i}");
        let xn = b.rms_norm(&x, &lw.attn_norm, &format!("{p}.input_layernorm.weight"));
        // One matmul for Q, K and V, in GroupQueryAttention's packed order.
        let qkv = b.packed_qkv(&xn, lw, &p);
        let g = &mut b.g;
        let mut attrs = vec![
            attr_i("num_heads", nh as i64),
            attr_i("kv_num_heads", kvh as i64),
            attr_i("do_rotary", 1),
            attr_i("rotary_interleaved", 0),
            attr_f("scale", cfg.attention_scale()),
        ];
        if let Some(w) = cfg.window(i) {
            // GroupQueryAttention's window counts the keys before the query's own.
            attrs.push(attr_i("local_window_size", w as i64 - 1));
        }
        let (cos, sin) = table(&tables, cfg, i);
        let outs = g.op_n(
            "GroupQueryAttention",
            attention,
            &[&qkv, "", "", &pasts[i].0, &pasts[i].1, &seqlens, &total, cos, sin],
            3,
            attrs,
        );
        g.output(&outs[1], &format!("present.{i}.key"), dtype::FLOAT, &kv_out);
        g.output(&outs[2], &format!("present.{i}.value"), dtype::FLOAT, &kv_out);
        let attn = b.linear(&outs[0], &lw.o, &format!("{p}.self_attn.o_proj"), nh * d, h);
        x = b.residual(&x, &attn, lw.post_norms.as_ref().map(|n| &n.0[..]), &format!("{p}.post_attention_norm"));
        x = b.mlp(&x, lw, &p);
    }
    // Each row's last real token: its `seqlens` in a prompt, 0 in a one-token step.
    let g = &mut b.g;
    let ids_shape = g.op("Shape", &[&ids], vec![]);
    let s_len = g.op("Gather", &[&ids_shape, &one], vec![attr_i("axis", 0)]);
    let s_last = g.op("Sub", &[&s_len, &one], vec![]);
    let at = g.op("Min", &[&last, &s_last], vec![]);
    let at = g.op("Unsqueeze", &[&at, &ax1], vec![]);
    let x_last = g.op("GatherND", &[&x, &at], vec![attr_i("batch_dims", 1)]);
    b.head(&x_last, (&embed, half_embed), &final_norm, output.as_ref(), batch);
    b.g
}

/// [`KvLayout::Standard`]'s additive attention bias `[batch, 1, group × seq, total]`: causal over
/// absolute positions and padding from the mask, query rows tiled per head of a KV group; and,
/// for models with a sliding window, the same bias that also masks keys `window` or more
/// positions back.
fn attention_bias(g: &mut Graph, cfg: &LlamaConfig, ids: &str, mask: &str, ax1: &str) -> (String, Option<String>) {
    let group = (cfg.num_attention_heads / cfg.num_key_value_heads) as i64;
    let ids_shape = g.op("Shape", &[ids], vec![]);
    let mask_shape = g.op("Shape", &[mask], vec![]);
    let one_s = g.const_i64(&[1], true);
    let zero_s = g.const_i64(&[0], true);
    let s_len = g.op("Gather", &[&ids_shape, &one_s], vec![attr_i("axis", 0)]);
    let t_len = g.op("Gather", &[&mask_shape, &one_s], vec![attr_i("axis", 0)]);
    let p_len = g.op("Sub", &[&t_len, &s_len], vec![]);
    let q_pos = g.op("Range", &[&p_len, &t_len, &one_s], vec![]);
    let k_pos = g.op("Range", &[&zero_s, &t_len, &one_s], vec![]);
    let ax0 = g.const_i64(&[0], false);
    let k_row = g.op("Unsqueeze", &[&k_pos, &ax0], vec![]);
    let q_col = g.op("Unsqueeze", &[&q_pos, ax1], vec![]);
    let causal = g.op("LessOrEqual", &[&k_row, &q_col], vec![]);
    let pad = g.op("Cast", &[mask], vec![attr_i("to", dtype::BOOL as i64)]);
    let ax12 = g.const_i64(&[1, 2], false);
    let pad = g.op("Unsqueeze", &[&pad, &ax12], vec![]);
    let allowed = g.op("And", &[&causal, &pad], vec![]);
    let zero_f = g.const_f32(0.0);
    let neg_f = g.const_f32(-1e9);
    let reps = g.const_i64(&[1, 1, group, 1], false);
    let bias = |g: &mut Graph, allowed: &str| {
        let bias = g.op("Where", &[allowed, &zero_f, &neg_f], vec![]);
        g.op("Tile", &[&bias, &reps], vec![])
    };
    let global_bias = bias(g, &allowed);
    // Sliding-window layers also mask keys `window` or more positions back.
    let local_bias = cfg.sliding_window.map(|w| {
        let back = g.op("Sub", &[&q_col, &k_row], vec![]);
        let w = g.const_i64(&[w as i64], true);
        let near = g.op("Less", &[&back, &w], vec![]);
        let allowed = g.op("And", &[&allowed, &near], vec![]);
        bias(g, &allowed)
    });
    (global_bias, local_bias)
}

/// The [`KvLayout::Standard`] graph (optimum's layout).
fn build_standard(weights: LlamaWeights, mut b: Builder) -> Graph {
    let cfg = b.cfg;
    let LlamaWeights { embed: embed_table, layers, final_norm, output } = weights;
    let (h, nh, kvh, d) = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
    let g = &mut b.g;
    let (batch, seq, past, total) = (
        Dim::Sym("batch_size"),
        Dim::Sym("sequence_length"),
        Dim::Sym("past_sequence_length"),
        Dim::Sym("total_sequence_length"),
    );
    let ids = g.input("input_ids", dtype::INT64, &[batch.clone(), seq.clone()]);
    let mask = g.input("attention_mask", dtype::INT64, &[batch.clone(), total.clone()]);
    let pos = g.input("position_ids", dtype::INT64, &[batch.clone(), seq.clone()]);
    let kv_dims = [batch.clone(), Dim::Fixed(kvh as i64), past.clone(), Dim::Fixed(d as i64)];
    let pasts = past_inputs(g, cfg.num_hidden_layers, &kv_dims);

    let (embed, half_embed, mut x) = b.embedding(embed_table, &ids);
    let g = &mut b.g;

    let ax2 = g.const_i64(&[2], false);
    let ax1 = g.const_i64(&[1], false);
    let tables = position_rope_tables(g, cfg, &pos, &ax1, &ax2);

    let (global_bias, local_bias) = attention_bias(g, cfg, &ids, &mask, &ax1);

    let scale = g.const_f32(cfg.attention_scale());
    let shape_heads = g.const_i64(&[0, 0, nh as i64, d as i64], false);
    let shape_kv = g.const_i64(&[0, 0, kvh as i64, d as i64], false);
    // Query heads that share a KV head are folded into the row axis: no copies of K and V.
    let shape_fold = g.const_i64(&[0, kvh as i64, -1, d as i64], false);
    let shape_unfold = g.const_i64(&[0, nh as i64, -1, d as i64], false);
    let shape_merge = g.const_i64(&[0, 0, -1], false);
    let kv_out = [batch.clone(), Dim::Fixed(kvh as i64), total.clone(), Dim::Fixed(d as i64)];
    for (i, lw) in layers.into_iter().enumerate() {
        let lw = &lw;
        let p = format!("model.layers.{i}");
        let xn = b.rms_norm(&x, &lw.attn_norm, &format!("{p}.input_layernorm.weight"));
        let [q, k, v] = b.separate_qkv(&xn, lw, &p);
        let g = &mut b.g;
        let perm = vec![attr_ints("perm", &[0, 2, 1, 3])];
        let q = g.op("Reshape", &[&q, &shape_heads], vec![]);
        let q = g.op("Transpose", &[&q], perm.clone());
        let k = g.op("Reshape", &[&k, &shape_kv], vec![]);
        let k = g.op("Transpose", &[&k], perm.clone());
        let v = g.op("Reshape", &[&v, &shape_kv], vec![]);
        let v = g.op("Transpose", &[&v], perm.clone());
        let (cos, sin) = table(&tables, cfg, i);
        let q = b.rope(&q, cos, sin);
        let k = b.rope(&k, cos, sin);
        let bias = match cfg.window(i) {
            Some(_) => local_bias.as_ref().expect("a window gives a local bias"),
            None => &global_bias,
        };
        let g = &mut b.g;
        let present_k = g.op("Concat", &[&pasts[i].0, &k], vec![attr_i("axis", 2)]);
        let present_v = g.op("Concat", &[&pasts[i].1, &v], vec![attr_i("axis", 2)]);
        g.output(&present_k, &format!("present.{i}.key"), dtype::FLOAT, &kv_out);
        g.output(&present_v, &format!("present.{i}.value"), dtype::FLOAT, &kv_out);
        let qf = g.op("Reshape", &[&q, &shape_fold], vec![]);
        let kt = g.op("Transpose", &[&present_k], vec![attr_ints("perm", &[0, 1, 3, 2])]);
        let scores = g.op("MatMul", &[&qf, &kt], vec![]);
        let scores = g.op("Mul", &[&scores, &scale], vec![]);
        let scores = g.op("Add", &[&scores, bias], vec![]);
        let probs = g.op("Softmax", &[&scores], vec![attr_i("axis", -1)]);
        let ctx = g.op("MatMul", &[&probs, &present_v], vec![]);
        let ctx = g.op("Reshape", &[&ctx, &shape_unfold], vec![]);
        let ctx = g.op("Transpose", &[&ctx], perm);
        let ctx = g.op("Reshape", &[&ctx, &shape_merge], vec![]);
        let attn = b.linear(&ctx, &lw.o, &format!("{p}.self_attn.o_proj"), nh * d, h);
        x = b.residual(&x, &attn, lw.post_norms.as_ref().map(|n| &n.0[..]), &format!("{p}.post_attention_norm"));
        x = b.mlp(&x, lw, &p);
    }
    let g = &mut b.g;
    let last = g.const_i64(&[-1], true);
    let x_last = g.op("Gather", &[&x, &last], vec![attr_i("axis", 1)]);
    b.head(&x_last, (&embed, half_embed), &final_norm, output.as_ref(), batch);
    b.g
}
