//! The decode step and softmax exponentials with AVX2 and FMA (8 floats a vector).

use std::arch::x86_64::*;

use super::{EXP2_TERMS, Heads};

/// `e^x` for x ≤ 0, as `avx512::exp`; the power of two is built in the exponent bits (the
/// clamp keeps it at or above 2^-126, a normal float).
#[target_feature(enable = "avx2,fma")]
fn exp(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let t = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E));
    let n = _mm256_round_ps::<0x08>(t);
    let f = _mm256_sub_ps(t, n);
    let mut p = _mm256_set1_ps(EXP2_TERMS[0]);
    for c in &EXP2_TERMS[1..] {
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(*c));
    }
    let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)))
}

/// Replaces `row` by `e^(x - max)`; returns the sum.
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp_shifted(row: &mut [f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mv = _mm256_set1_ps(m);
    let mut sum = _mm256_setzero_ps();
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` has 8 floats.
        unsafe {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            sum = _mm256_add_ps(sum, e);
        }
    }
    let mut tail = 0.0;
    for x in chunks.into_remainder() {
        *x = (*x - m).exp();
        tail += *x;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` has 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum::<f32>() + tail
}

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn sum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

/// One query position, head by head: its scores in one pass over the keys (two accumulators,
/// the query read from L1), softmax, then its values in tiles of 64 floats kept in registers.
/// (AVX2 has 16 vector registers: a query or an output row of 64 floats takes 8, so heads
/// cannot share a pass over the keys as they do with AVX-512.)
///
/// # Safety
/// The CPU must have AVX2 and FMA; `p.d` is a multiple of 64.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn decode(p: &Heads, out: &mut [f32]) {
    let (t, d) = (p.past + 1, p.d);
    assert!(d.is_multiple_of(64) && p.k.len() >= t * d && p.v.len() >= t * d && out.len() >= p.group * d);
    assert!(p.q.len() >= p.group * d);
    let mut s = vec![0f32; t];
    for h in 0..p.group {
        // SAFETY (all loads and stores below): rows `j < t` of `k` and `v` hold `d` floats, `q`
        // and `out` `d` per head, checked above; `d` is a multiple of the 16 and 64 floats read.
        unsafe {
            let q = p.q.as_ptr().add(h * d);
            for (j, sj) in s.iter_mut().enumerate() {
                let kp = p.k.as_ptr().add(j * d);
                let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for c in (0..d).step_by(16) {
                    a = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(c)), _mm256_loadu_ps(kp.add(c)), a);
                    b = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(c + 8)), _mm256_loadu_ps(kp.add(c + 8)), b);
                }
                *sj = sum(_mm256_add_ps(a, b));
            }
            let inv = _mm256_set1_ps(1.0 / exp_shifted(&mut s));
            for c0 in (0..d).step_by(64) {
                let mut o = [_mm256_setzero_ps(); 8];
                for (j, &w) in s.iter().enumerate() {
                    let (w, vp) = (_mm256_set1_ps(w), p.v.as_ptr().add(j * d + c0));
                    for (x, ox) in o.iter_mut().enumerate() {
                        *ox = _mm256_fmadd_ps(w, _mm256_loadu_ps(vp.add(8 * x)), *ox);
                    }
                }
                let op = out.as_mut_ptr().add(h * d + c0);
                for (x, ox) in o.iter().enumerate() {
                    _mm256_storeu_ps(op.add(8 * x), _mm256_mul_ps(*ox, inv));
                }
            }
        }
    }
}
