//! GGML tensor types: their names, block sizes, and the dequantization of their blocks to f32,
//! following llama.cpp's `dequantize_row_*` (ggml-quants.c) element for element.

use anyhow::bail;
use half::{bf16, f16};

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q5_0: u32 = 6;
pub const Q5_1: u32 = 7;
pub const Q8_0: u32 = 8;
pub const Q4_K: u32 = 12;
pub const Q5_K: u32 = 13;
pub const Q6_K: u32 = 14;
pub const BF16: u32 = 30;

/// Elements in one K-quant super-block.
const QK_K: usize = 256;

/// A GGML type's name, as llama.cpp prints it; types wrapflow cannot read are named too, so an
/// error can say which one a file uses.
pub fn type_name(ty: u32) -> String {
    let name = match ty {
        F32 => "F32",
        F16 => "F16",
        Q4_0 => "Q4_0",
        Q4_1 => "Q4_1",
        Q5_0 => "Q5_0",
        Q5_1 => "Q5_1",
        Q8_0 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        Q4_K => "Q4_K",
        Q5_K => "Q5_K",
        Q6_K => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        BF16 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        other => return format!("type {other}"),
    };
    name.to_string()
}

/// The types wrapflow dequantizes.
pub const SUPPORTED: &[u32] = &[F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K];

/// `(elements, bytes)` of one block of a supported type.
pub fn block_size(ty: u32) -> anyhow::Result<(usize, usize)> {
    Ok(match ty {
        F32 => (1, 4),
        F16 | BF16 => (1, 2),
        Q4_0 => (32, 18),
        Q4_1 => (32, 20),
        Q5_0 => (32, 22),
        Q5_1 => (32, 24),
        Q8_0 => (32, 34),
        Q4_K => (QK_K, 144),
        Q5_K => (QK_K, 176),
        Q6_K => (QK_K, 210),
        other => {
            let names: Vec<String> = SUPPORTED.iter().map(|&t| type_name(t)).collect();
            bail!("tensor type {} is not supported ({} are)", type_name(other), names.join(", "))
        }
    })
}

/// Bytes of `n` elements of a supported type.
pub fn byte_len(ty: u32, n: usize) -> anyhow::Result<usize> {
    let (elems, bytes) = block_size(ty)?;
    if !n.is_multiple_of(elems) {
        bail!("{n} elements are not whole {} blocks of {elems}", type_name(ty));
    }
    Ok(n / elems * bytes)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Appends the f32 values of `bytes`, whole blocks of type `ty`, to `out`.
pub fn dequantize_into(ty: u32, bytes: &[u8], out: &mut Vec<f32>) -> anyhow::Result<()> {
    let (_, size) = block_size(ty)?;
    let blocks = bytes.chunks_exact(size);
    match ty {
        F32 => out.extend(blocks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        F16 => out.extend(blocks.map(|c| f16_at(c, 0))),
        BF16 => out.extend(blocks.map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        Q8_0 => blocks.for_each(|b| out.extend(b[2..].iter().map(|&q| f16_at(b, 0) * q as i8 as f32))),
        Q4_0 | Q4_1 | Q5_0 | Q5_1 => blocks.for_each(|b| legacy_block(ty, b, out)),
        Q4_K => blocks.for_each(|b| q4_k_block(b, out)),
        Q5_K => blocks.for_each(|b| q5_k_block(b, out)),
        Q6_K => blocks.for_each(|b| q6_k_block(b, out)),
        _ => unreachable!("block_size rejects other types"),
    }
    Ok(())
}

/// Q4_0, Q4_1, Q5_0, Q5_1: a block of 32 with a scale (and for `_1` a minimum); byte `j` of the
/// low nibbles holds elements `j` and `j + 16`; the `5` types keep each element's fifth bit in a
/// 32-bit mask.
fn legacy_block(ty: u32, b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let (min, rest) = match ty {
        Q4_1 | Q5_1 => (Some(f16_at(b, 2)), &b[4..]),
        _ => (None, &b[2..]),
    };
    let (high, qs) = match ty {
        Q5_0 | Q5_1 => (Some(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]])), &rest[4..]),
        _ => (None, rest),
    };
    // The zero point of the types without a minimum: 8 for 4 bits, 16 for 5.
    let offset = if high.is_some() { 16.0 } else { 8.0 };
    let value = |e: usize| {
        let nibble = if e < 16 { qs[e] & 0xF } else { qs[e - 16] >> 4 };
        let q = nibble as u32 | high.map_or(0, |h| ((h >> e) & 1) << 4);
        match min {
            Some(m) => d * q as f32 + m,
            None => d * (q as f32 - offset),
        }
    };
    out.extend((0..32).map(value));
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K super-block (`get_scale_min_k4`).
pub(crate) fn scale_min(j: usize, s: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    };
    (sc as f32, m as f32)
}

/// Q4_K: 8 sub-blocks of 32 with 6-bit scales and minimums under two f16 super-scales; each 32
/// bytes of `qs` hold two sub-blocks (low nibbles, then high).
fn q4_k_block(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin, scales, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..144]);
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min(2 * pair, scales);
        let (s2, m2) = scale_min(2 * pair + 1, scales);
        let (d1, m1, d2, m2) = (d * s1, dmin * m1, d * s2, dmin * m2);
        out.extend(q.iter().map(|&v| d1 * (v & 0xF) as f32 - m1));
        out.extend(q.iter().map(|&v| d2 * (v >> 4) as f32 - m2));
    }
}

/// Q5_K: Q4_K plus a fifth bit per element, bit `2·pair` (low half) or `2·pair + 1` (high half)
/// of `qh[l]`.
fn q5_k_block(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin, scales, qh, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..48], &b[48..176]);
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min(2 * pair, scales);
        let (s2, m2) = scale_min(2 * pair + 1, scales);
        let (d1, m1, d2, m2) = (d * s1, dmin * m1, d * s2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * pair), 1u8 << (2 * pair + 1));
        let bit = |l: usize, u: u8| if qh[l] & u != 0 { 16 } else { 0 };
        out.extend(q.iter().enumerate().map(|(l, &v)| d1 * ((v & 0xF) + bit(l, u1)) as f32 - m1));
        out.extend(q.iter().enumerate().map(|(l, &v)| d2 * ((v >> 4) + bit(l, u2)) as f32 - m2));
    }
}

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales under one f16 scale; 4 low bits in `ql`,
/// 2 high bits in `qh`, both interleaved over halves of 128.
fn q6_k_block(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], f16_at(b, 208));
    for half in 0..2 {
        let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q = |low: u8, shift: u32| ((low | (((qh[l] >> shift) & 3) << 4)) as i32 - 32) as f32;
            y[l] = d * sc[is] as i8 as f32 * q(ql[l] & 0xF, 0);
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q(ql[l + 32] & 0xF, 2);
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q(ql[l] >> 4, 4);
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q(ql[l + 32] >> 4, 6);
        }
        out.extend_from_slice(&y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q5_0_uses_the_fifth_bit_and_centres_on_16() {
        // d = 1; element e has low nibble e % 16 and fifth bit set for odd e.
        let mut b = half::f16::from_f32(1.0).to_le_bytes().to_vec();
        b.extend(0xAAAA_AAAAu32.to_le_bytes());
        b.extend((0..16u8).map(|j| j | (j << 4)));
        let mut out = vec![];
        dequantize_into(Q5_0, &b, &mut out).unwrap();
        let want: Vec<f32> = (0..32).map(|e| ((e % 16) + 16 * (e % 2)) as f32 - 16.0).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn unsupported_types_are_named() {
        let e = byte_len(11, 256).unwrap_err().to_string();
        assert!(e.contains("Q3_K is not supported") && e.contains("Q6_K"), "{e}");
    }
}
