//! GGUF tensor decoding: dequantization to f32, 4-bit repacking for ONNX Runtime's
//! `MatMulNBits`, and undoing llama.cpp's Q/K row permutation.

use anyhow::bail;
use half::f16;

use super::gguf::{Gguf, TensorInfo};
use super::llama::Linear;

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q8_0: u32 = 8;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Bytes of a tensor of `n` elements of a GGUF type.
fn byte_len(ty: u32, n: usize) -> anyhow::Result<usize> {
    Ok(match ty {
        F32 => n * 4,
        F16 => n * 2,
        Q4_0 => n / 32 * 18,
        Q4_1 => n / 32 * 20,
        Q8_0 => n / 32 * 34,
        other => bail!("GGUF tensor type {other} is not supported (F32, F16, Q4_0, Q4_1, Q8_0 are)"),
    })
}

/// A tensor as f32 values in GGUF's row-major order.
pub fn dequantize(g: &Gguf, t: &TensorInfo) -> anyhow::Result<Vec<f32>> {
    let n = t.elements() as usize;
    let b = g.tensor_bytes(t, byte_len(t.ggml_type, n)?)?;
    let mut out = Vec::with_capacity(n);
    match t.ggml_type {
        F32 => out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        F16 => out.extend((0..n).map(|i| f16_at(b, 2 * i))),
        Q4_0 => {
            for blk in b.chunks_exact(18) {
                let d = f16_at(blk, 0);
                let qs = &blk[2..];
                out.extend(qs.iter().map(|q| d * ((q & 0xF) as f32 - 8.0)));
                out.extend(qs.iter().map(|q| d * ((q >> 4) as f32 - 8.0)));
            }
        }
        Q4_1 => {
            for blk in b.chunks_exact(20) {
                let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
                let qs = &blk[4..];
                out.extend(qs.iter().map(|q| d * (q & 0xF) as f32 + m));
                out.extend(qs.iter().map(|q| d * (q >> 4) as f32 + m));
            }
        }
        Q8_0 => {
            for blk in b.chunks_exact(34) {
                let d = f16_at(blk, 0);
                out.extend(blk[2..].iter().map(|&q| d * q as i8 as f32));
            }
        }
        _ => unreachable!("byte_len rejects other types"),
    }
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

/// A linear weight of GGUF shape `(in, out)`: Q4_1 blocks stay 4-bit when `keep_q4`, everything
/// else becomes f32. `row_src` reorders output rows (for Q and K).
pub fn linear(g: &Gguf, t: &TensorInfo, keep_q4: bool, row_src: Option<&[usize]>) -> anyhow::Result<Linear> {
    let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
    if !(keep_q4 && t.ggml_type == Q4_1) {
        let w = dequantize(g, t)?;
        return Ok(Linear::F32(match row_src {
            Some(src) => permute_rows(&w, n_in, src),
            None => w,
        }));
    }
    let blocks_per_row = n_in / 32;
    let raw = g.tensor_bytes(t, byte_len(Q4_1, n_in * n_out)?)?;
    let blocks: Vec<&[u8]> = raw.chunks_exact(20).collect();
    let order: Vec<usize> = match row_src {
        Some(src) => src.to_vec(),
        None => (0..n_out).collect(),
    };
    let (mut packed, mut scales, mut mins) = (Vec::new(), Vec::new(), Vec::new());
    for &row in &order {
        for blk in &blocks[row * blocks_per_row..(row + 1) * blocks_per_row] {
            let qs = &blk[4..];
            // GGUF: byte j holds elements j (low) and j+16 (high); MatMulNBits: byte i holds
            // elements 2i (low) and 2i+1 (high).
            let q = |e: usize| if e < 16 { qs[e] & 0xF } else { qs[e - 16] >> 4 };
            packed.extend((0..16).map(|i| q(2 * i) | (q(2 * i + 1) << 4)));
            scales.push(f16_at(blk, 0));
            mins.push(f16_at(blk, 2));
        }
    }
    Ok(Linear::Q4 { packed, scales, mins })
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
        assert_eq!(linear(&g, t, true, None).unwrap().to_f32(), want, "4-bit repacking keeps every weight");
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
