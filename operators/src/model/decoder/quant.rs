//! GGUF tensor decoding: dequantization to f32, 4-bit repacking for ONNX Runtime's
//! `MatMulNBits`, and undoing llama.cpp's Q/K row permutation.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use half::f16;
use serde::{Deserialize, Serialize};

use crate::model::decoder::Linear;
use crate::model::formats::gguf::ggml::{self, Q4_0, Q4_1, Q4_K, byte_len, type_name};
use crate::model::formats::gguf::{Gguf, TensorInfo};

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// A tensor as f32 values in GGUF's row-major order.
pub fn dequantize(g: &Gguf, t: &TensorInfo) -> anyhow::Result<Vec<f32>> {
    let n = t.elements() as usize;
    let len = byte_len(t.ggml_type, n).with_context(|| format!("tensor {}", t.name))?;
    // The bytes first: a tensor the file cannot hold is an error, not a huge allocation.
    let bytes = g.tensor_bytes(t, len)?;
    let mut out = Vec::with_capacity(n);
    ggml::dequantize_into(t.ggml_type, bytes, &mut out)?;
    g.release(t, len);
    Ok(out)
}

/// GGUF (llama.cpp) stores Q and K rows of each head as `[head_dim/2, 2]` for its interleaved
/// rotary; the "rotate half" form wants `[2, head_dim/2]`. Returns, for each output row, the
/// GGUF row it comes from.
pub fn unpermute_rows(rows: usize, heads: usize) -> Vec<usize> {
    let d = rows / heads;
    let half = d / 2;
    let mut src = vec![0; rows];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                src[h * d + j * half + i] = h * d + i * 2 + j;
            }
        }
    }
    src
}

/// Reorders whole rows of a row-major matrix.
pub fn permute_rows<T: Copy>(data: &[T], row_len: usize, src: &[usize]) -> Vec<T> {
    src.iter().flat_map(|&r| data[r * row_len..(r + 1) * row_len].iter().copied()).collect()
}

/// Whether [`linear`] keeps a tensor type 4-bit: the types whose blocks split exactly into
/// blocks of 32 with `w = scale * q + min`.
pub fn keeps_four_bits(ty: u32) -> bool {
    matches!(ty, Q4_0 | Q4_1 | Q4_K)
}

/// The 32-element blocks of one GGUF block of a 4-bit type: `(q of element e, scale, min)`.
/// Q4_0 is `d·(q − 8)`; Q4_1 is `d·q + m`; a Q4_K super-block is 8 sub-blocks of 32 with
/// scale `d·sc` and minimum `−dmin·m` (the same f32 products llama.cpp dequantizes with).
fn four_bit_blocks(ty: u32, b: &[u8]) -> Vec<([u8; 32], f32, f32)> {
    let nibbles =
        |qs: &[u8], high: bool| -> [u8; 32] { std::array::from_fn(|e| if high { qs[e] >> 4 } else { qs[e] & 0xF }) };
    let legacy =
        |qs: &[u8]| -> [u8; 32] { std::array::from_fn(|e| if e < 16 { qs[e] & 0xF } else { qs[e - 16] >> 4 }) };
    match ty {
        Q4_0 => vec![(legacy(&b[2..]), f16_at(b, 0), -8.0 * f16_at(b, 0))],
        Q4_1 => vec![(legacy(&b[4..]), f16_at(b, 0), f16_at(b, 2))],
        Q4_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            (0..8)
                .map(|j| {
                    let (sc, m) = ggml::scale_min(j, &b[4..16]);
                    (nibbles(&b[16 + 32 * (j / 2)..], j % 2 == 1), d * sc, -(dmin * m))
                })
                .collect()
        }
        _ => unreachable!("keeps_four_bits admits only these"),
    }
}

/// A linear weight of GGUF shape `(in, out)` in `format`: with `Q4`, 4-bit types (see
/// [`keeps_four_bits`]) stay 4-bit and the rest become f32; with `Fp16`, f16 (converted tensor by
/// tensor, so the import never holds the model in f32); else f32. `row_src` reorders output rows
/// (for Q and K).
pub fn linear(g: &Gguf, t: &TensorInfo, format: WeightFormat, row_src: Option<&[usize]>) -> anyhow::Result<Linear> {
    let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
    if format == WeightFormat::Fp16 && row_src.is_none() {
        return dequantized_as(g, t, format);
    }
    if !(format == WeightFormat::Q4 && keeps_four_bits(t.ggml_type)) {
        let w = dequantize(g, t)?;
        let w = match row_src {
            Some(src) => permute_rows(&w, n_in, src),
            None => w,
        };
        return Ok(in_format(w, format));
    }
    let (block_elems, block_bytes) = ggml::block_size(t.ggml_type)?;
    let len = byte_len(t.ggml_type, n_in * n_out)?;
    let raw = g.tensor_bytes(t, len)?;
    let blocks_per_row = n_in / block_elems;
    let order: Vec<usize> = match row_src {
        Some(src) => src.to_vec(),
        None => (0..n_out).collect(),
    };
    let (mut packed, mut scales, mut mins) = (Vec::new(), Vec::new(), Vec::new());
    for &row in &order {
        let row_bytes = &raw[row * blocks_per_row * block_bytes..(row + 1) * blocks_per_row * block_bytes];
        for blk in row_bytes.chunks_exact(block_bytes) {
            for (q, scale, min) in four_bit_blocks(t.ggml_type, blk) {
                // MatMulNBits: byte i holds elements 2i (low nibble) and 2i+1 (high).
                packed.extend((0..16).map(|i| q[2 * i] | (q[2 * i + 1] << 4)));
                scales.push(scale);
                mins.push(min);
            }
        }
    }
    g.release(t, len);
    Ok(Linear::Q4 { packed, scales, mins })
}

/// A tensor dequantized into the form `format` keeps in memory: f16 for `Fp16`, converted 64
/// rows at a time (a 262k-row embedding never exists in f32), else f32.
pub fn dequantized_as(g: &Gguf, t: &TensorInfo, format: WeightFormat) -> anyhow::Result<Linear> {
    if format != WeightFormat::Fp16 {
        return Ok(Linear::F32(dequantize(g, t)?));
    }
    let n = t.elements() as usize;
    let len = byte_len(t.ggml_type, n).with_context(|| format!("tensor {}", t.name))?;
    let row_bytes = byte_len(t.ggml_type, t.dims.first().copied().unwrap_or(1) as usize)?.max(1);
    let bytes = g.tensor_bytes(t, len)?;
    let (mut out, mut rows) = (Vec::with_capacity(n), Vec::new());
    for chunk in bytes.chunks(64 * row_bytes) {
        rows.clear();
        ggml::dequantize_into(t.ggml_type, chunk, &mut rows)?;
        out.extend(rows.iter().map(|&x| f16::from_f32(x)));
    }
    g.release(t, len);
    Ok(Linear::F16(out))
}

/// f32 values as the linear weight `format` keeps in memory (f16 for `Fp16`, else f32).
pub fn in_format(w: Vec<f32>, format: WeightFormat) -> Linear {
    match format {
        WeightFormat::Fp16 => Linear::F16(w.iter().map(|&x| f16::from_f32(x)).collect()),
        _ => Linear::F32(w),
    }
}

/// Weight formats of an imported model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// Everything dequantized to f32: the quality reference.
    #[default]
    Fp32,
    /// The GGUF's own Q4_1 blocks, run by ONNX Runtime's `MatMulNBits` with f32 compute.
    Q4,
    /// Linear layers and embeddings stored as f16 and multiplied in f16 (their inputs cast to
    /// f16, their outputs back to f32); norms, rotary, attention, the KV cache and the logits stay
    /// f32. Half the weight memory of fp32: meant for GPUs.
    Fp16,
    /// Linear layers quantized to int8 at import (one scale per output row) and run by ONNX
    /// Runtime's `DynamicQuantizeMatMul` (activations quantized per call, integer products):
    /// faster prompts on CPUs, at some cost in accuracy. Embeddings and a tied head stay f32.
    Int8,
}

impl std::str::FromStr for WeightFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "fp32" => Ok(WeightFormat::Fp32),
            "q4" => Ok(WeightFormat::Q4),
            "fp16" => Ok(WeightFormat::Fp16),
            "int8" => Ok(WeightFormat::Int8),
            other => bail!("unknown weight format {other:?} (fp32, fp16, q4 or int8)"),
        }
    }
}

/// What an import does with the tensors of one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeAction {
    pub tensor_type: String,
    pub tensors: usize,
    pub parameters: u64,
    pub action: String,
}

/// Whether a tensor is a linear layer's weight (the ones `--weights q4` can keep 4-bit).
pub fn is_linear(name: &str) -> bool {
    name == "output.weight"
        || ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
            .iter()
            .any(|l| name.starts_with("blk.") && name.ends_with(&format!(".{l}.weight")))
}

fn action(t: &TensorInfo, format: WeightFormat) -> &'static str {
    match (format, t.ggml_type) {
        (WeightFormat::Q4, ty) if is_linear(&t.name) && keeps_four_bits(ty) => {
            if ty == Q4_K {
                "kept 4-bit: each 256-block re-blocked into 8 blocks of 32 (scale d·sc, minimum −dmin·m; exact)"
            } else {
                "kept 4-bit (MatMulNBits blocks of 32; exact)"
            }
        }
        (WeightFormat::Q4, _) if is_linear(&t.name) => "dequantized to f32 (no exact 4-bit form)",
        (WeightFormat::Fp16, _) if is_linear(&t.name) || t.name == "token_embd.weight" => "stored as f16",
        (WeightFormat::Int8, _) if is_linear(&t.name) => {
            "quantized to int8 (a scale per output row; DynamicQuantizeMatMul)"
        }
        (_, ggml::F32) => "f32 as stored",
        _ => "dequantized to f32",
    }
}

/// Per tensor type and action, the tensors an import of `g` in `format` writes.
pub fn import_actions(g: &Gguf, format: WeightFormat) -> Vec<TypeAction> {
    let mut by: BTreeMap<(String, &str), (usize, u64)> = BTreeMap::new();
    for t in &g.tensors {
        let e = by.entry((type_name(t.ggml_type), action(t, format))).or_default();
        e.0 += 1;
        e.1 += t.elements();
    }
    by.into_iter()
        .map(|((tensor_type, action), (tensors, parameters))| TypeAction {
            tensor_type,
            tensors,
            parameters,
            action: action.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_blocks_keep_their_values() {
        // One row of one Q4_1 block: d = 0.5, m = -1.0, element e has q = e % 16.
        let mut blk = Vec::new();
        blk.extend(half::f16::from_f32(0.5).to_le_bytes());
        blk.extend(half::f16::from_f32(-1.0).to_le_bytes());
        blk.extend((0..16u8).map(|j| j | (j << 4)));
        let mut file = Vec::new();
        file.extend(b"GGUF");
        file.extend(3u32.to_le_bytes());
        file.extend(1u64.to_le_bytes());
        file.extend(0u64.to_le_bytes());
        file.extend(1u64.to_le_bytes());
        file.push(b'w');
        file.extend(2u32.to_le_bytes());
        file.extend(32u64.to_le_bytes());
        file.extend(1u64.to_le_bytes());
        file.extend(Q4_1.to_le_bytes());
        file.extend(0u64.to_le_bytes());
        while file.len() % 32 != 0 {
            file.push(0);
        }
        file.extend(&blk);
        let g = Gguf::parse(file).unwrap();
        let t = g.tensor("w").unwrap();
        let deq = dequantize(&g, t).unwrap();
        let want: Vec<f32> = (0..32).map(|e| 0.5 * (e % 16) as f32 - 1.0).collect();
        assert_eq!(deq, want);
        assert_eq!(linear(&g, t, WeightFormat::Q4, None).unwrap().to_f32(), want, "4-bit repacking keeps every weight");
    }

    #[test]
    fn unpermute_swaps_the_pair_axis() {
        // One head of 4 rows: GGUF order [i=0:(j0,j1), i=1:(j0,j1)] -> HF [j0:(i0,i1), j1:(i0,i1)].
        assert_eq!(unpermute_rows(4, 1), vec![0, 2, 1, 3]);
        assert_eq!(unpermute_rows(8, 2), vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(
            permute_rows(&[10, 11, 20, 21, 30, 31, 40, 41], 2, &[0, 2, 1, 3]),
            vec![10, 11, 30, 31, 20, 21, 40, 41]
        );
    }
}
