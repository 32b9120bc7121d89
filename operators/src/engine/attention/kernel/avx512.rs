//! The decode step and softmax exponentials with AVX-512 (16 floats a vector).

use std::arch::x86_64::*;

use super::{EXP2_TERMS, Heads};

/// `e^x` for x ≤ 0 (softmax inputs after the max is taken off): 2 ulp near 0, a relative
/// 1e-6 near x = -40 (x·log2 e is rounded to f32).
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
    let t = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E));
    let n = _mm512_roundscale_ps::<0x08>(t);
    let f = _mm512_sub_ps(t, n);
    let mut p = _mm512_set1_ps(EXP2_TERMS[0]);
    for c in &EXP2_TERMS[1..] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(*c));
    }
    _mm512_scalef_ps(p, n)
}

/// Replaces `row` by `e^(x - max)`; returns the sum.
#[target_feature(enable = "avx512f")]
pub(super) fn exp_shifted(row: &mut [f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mv = _mm512_set1_ps(m);
    let mut sum = _mm512_setzero_ps();
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` has 16 floats.
        unsafe {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), mv));
            _mm512_storeu_ps(c.as_mut_ptr(), e);
            sum = _mm512_add_ps(sum, e);
        }
    }
    let mut tail = 0.0;
    for x in chunks.into_remainder() {
        *x = (*x - m).exp();
        tail += *x;
    }
    _mm512_reduce_add_ps(sum) + tail
}

/// One query position: scores for up to 4 heads per pass over the keys, softmax, then the
/// values for the same heads in one pass.
///
/// # Safety
/// The CPU must have AVX-512F; `p.d` is 64 or 128.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn decode(p: &Heads, out: &mut [f32]) {
    let mut s = vec![0f32; 4 * (p.past + 1)];
    let mut h = 0;
    while h < p.group {
        let g = (p.group - h).min(4);
        // SAFETY: forwarded from the caller.
        unsafe {
            match (g, p.d) {
                (1, 64) => heads::<1, 4>(p, h, &mut s, out),
                (2, 64) => heads::<2, 4>(p, h, &mut s, out),
                (3, 64) => heads::<3, 4>(p, h, &mut s, out),
                (4, 64) => heads::<4, 4>(p, h, &mut s, out),
                (1, _) => heads::<1, 8>(p, h, &mut s, out),
                (2, _) => heads::<2, 8>(p, h, &mut s, out),
                (3, _) => heads::<3, 8>(p, h, &mut s, out),
                _ => heads::<4, 8>(p, h, &mut s, out),
            }
        }
        h += g;
    }
}

/// Heads `h0..h0 + G` of `p`, `C` vectors of 16 per head dimension.
// Indexed loops over register tiles read as the arithmetic they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
unsafe fn heads<const G: usize, const C: usize>(p: &Heads, h0: usize, s: &mut [f32], out: &mut [f32]) {
    let (t, d) = (p.past + 1, p.d);
    debug_assert!(d == 16 * C && p.k.len() >= t * d && p.v.len() >= t * d && s.len() >= G * t);
    // SAFETY (all loads and stores below): rows `j < t` of `k` and `v` hold `d = 16 C`
    // floats, checked above; `q` and `out` hold the group's `d` floats per head.
    unsafe {
        let mut q = [[_mm512_setzero_ps(); C]; G];
        for (g, qg) in q.iter_mut().enumerate() {
            for (c, qc) in qg.iter_mut().enumerate() {
                *qc = _mm512_loadu_ps(p.q.as_ptr().add((h0 + g) * d + 16 * c));
            }
        }
        for j in 0..t {
            let kp = p.k.as_ptr().add(j * d);
            let mut acc = [_mm512_setzero_ps(); G];
            for c in 0..C {
                let kc = _mm512_loadu_ps(kp.add(16 * c));
                for g in 0..G {
                    acc[g] = _mm512_fmadd_ps(q[g][c], kc, acc[g]);
                }
            }
            for g in 0..G {
                *s.get_unchecked_mut(g * t + j) = _mm512_reduce_add_ps(acc[g]);
            }
        }
        let mut inv = [0f32; G];
        for (g, ig) in inv.iter_mut().enumerate() {
            *ig = 1.0 / exp_shifted(&mut s[g * t..(g + 1) * t]);
        }
        let mut o = [[_mm512_setzero_ps(); C]; G];
        for j in 0..t {
            let vp = p.v.as_ptr().add(j * d);
            for c in 0..C {
                let vc = _mm512_loadu_ps(vp.add(16 * c));
                for g in 0..G {
                    o[g][c] = _mm512_fmadd_ps(_mm512_set1_ps(*s.get_unchecked(g * t + j)), vc, o[g][c]);
                }
            }
        }
        for g in 0..G {
            let iv = _mm512_set1_ps(inv[g]);
            for c in 0..C {
                _mm512_storeu_ps(out.as_mut_ptr().add((h0 + g) * d + 16 * c), _mm512_mul_ps(o[g][c], iv));
            }
        }
    }
}
