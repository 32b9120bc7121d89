//! Attention arithmetic for one row and one KV head: a decode step (one query position per head,
//! every cached key and value read once for all the query heads that share them) and a prompt
//! (causal, through `matrixmultiply`'s blocked GEMM). Decoding uses AVX-512 where the CPU has
//! it, else AVX2+FMA intrinsics (head sizes that are multiples of 64; others get the portable
//! loop built for AVX2+FMA), else the portable loop; all agree to float rounding (tested).

/// A causal attention problem over one KV head's cache.
pub struct Heads<'a> {
    /// Query heads of this KV head, `[n, group, d]`, rotated and scaled.
    pub q: &'a [f32],
    pub group: usize,
    /// New positions (`q` has `group` rows per position).
    pub n: usize,
    /// Positions before the first new one.
    pub past: usize,
    pub d: usize,
    /// Cached keys and values, `[past + n, d]` (at least).
    pub k: &'a [f32],
    pub v: &'a [f32],
    /// Keys each query attends to, its own included (a sliding-window layer); `None`: all.
    pub window: Option<usize>,
}

/// Writes `out` (`[n, group, d]`): each query position `i` attends to positions `0..=past + i`
/// (the last `window` of them in a sliding-window layer).
pub fn attend(p: &Heads, out: &mut [f32]) {
    if p.n == 1 {
        if let Some(w) = p.window.filter(|&w| p.past + 1 > w) {
            // A step sees only the window's keys: the same problem over a shorter cache.
            let (lo, d) = (p.past + 1 - w, p.d);
            let inner = Heads { past: w - 1, k: &p.k[lo * d..], v: &p.v[lo * d..], window: None, ..*p };
            return attend(&inner, out);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && (p.d == 64 || p.d == 128) {
            // SAFETY: the CPU has AVX-512F, checked above.
            unsafe { avx512::decode(p, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked above (and the head size for `avx2`).
            unsafe { if p.d.is_multiple_of(64) { avx2::decode(p, out) } else { decode_avx2(p, out) } }
            return;
        }
        decode_portable(p, out);
    } else {
        prompt(p, out);
    }
}

/// Softmax of `row` in place.
pub fn softmax(row: &mut [f32]) {
    let inv = 1.0 / exp_shifted(row);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Replaces `row` by `e^(x - max)`; returns the sum. Vectorized with AVX-512 or AVX2 where the
/// CPU has them: a prompt's softmax takes an exponential per score, and libm's one at a time
/// was a large part of prompt attention on AVX2 machines.
fn exp_shifted(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked above.
            return unsafe { avx512::exp_shifted(row) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked above.
            return unsafe { avx2::exp_shifted(row) };
        }
    }
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    sum
}

/// [`decode_portable`] compiled for AVX2 and FMA (the compiler vectorizes its lanes).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_avx2(p: &Heads, out: &mut [f32]) {
    decode_portable(p, out)
}

/// A dot product in 8 independent lanes, which the compiler can keep in vector registers (a
/// plain sum must add in order).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn decode_portable(p: &Heads, out: &mut [f32]) {
    let (t, d) = (p.past + 1, p.d);
    let mut s = vec![0f32; t];
    for h in 0..p.group {
        let q = &p.q[h * d..(h + 1) * d];
        for (j, sj) in s.iter_mut().enumerate() {
            *sj = dot(q, &p.k[j * d..(j + 1) * d]);
        }
        softmax(&mut s);
        let o = &mut out[h * d..(h + 1) * d];
        o.fill(0.0);
        for (j, &w) in s.iter().enumerate() {
            o.iter_mut().zip(&p.v[j * d..(j + 1) * d]).for_each(|(o, v)| *o += w * v);
        }
    }
}

/// Rows are taken in blocks so that each block's scores stop at its last row's causal limit.
const ROWS: usize = 64;

fn prompt(p: &Heads, out: &mut [f32]) {
    let (n, d, group) = (p.n, p.d, p.group);
    let total = p.past + n;
    let mut s = vec![0f32; ROWS.min(n) * group * total];
    for i0 in (0..n).step_by(ROWS) {
        // Positions `i0..i0 + rows` of every head at once: one pass over the keys per block.
        let rows = ROWS.min(n - i0);
        let (m, width) = (rows * group, p.past + i0 + rows);
        let q = &p.q[i0 * group * d..];
        // SAFETY: `q` holds `m × d`, the keys `width × d` (read transposed), `s` holds
        // `m × width`; the strides below stay inside them.
        unsafe {
            matrixmultiply::sgemm(
                m,
                d,
                width,
                1.0,
                q.as_ptr(),
                d as isize,
                1,
                p.k.as_ptr(),
                1,
                d as isize,
                0.0,
                s.as_mut_ptr(),
                width as isize,
                1,
            );
        }
        for r in 0..m {
            let row = &mut s[r * width..(r + 1) * width];
            let live = p.past + i0 + r / group + 1;
            let first = p.window.map_or(0, |w| live.saturating_sub(w));
            softmax(&mut row[first..live]);
            row[..first].fill(0.0);
            row[live..].fill(0.0);
        }
        let o = &mut out[i0 * group * d..];
        // SAFETY: `s` holds `m × width`, the values `width × d`, `o` `m × d`.
        unsafe {
            matrixmultiply::sgemm(
                m,
                width,
                d,
                1.0,
                s.as_ptr(),
                width as isize,
                1,
                p.v.as_ptr(),
                d as isize,
                1,
                0.0,
                o.as_mut_ptr(),
                d as isize,
                1,
            );
        }
    }
}

/// Terms of `2^f` on `[-0.5, 0.5]` (Taylor terms of `e^(f ln 2)`), highest first.
#[cfg(target_arch = "x86_64")]
const EXP2_TERMS: [f32; 7] =
    [1.535_336_2e-4, 1.339_887_4e-3, 9.618_129e-3, 5.550_411e-2, 2.402_265e-1, 6.931_472e-1, 1.0];

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward attention, in f64.
    fn reference(p: &Heads) -> Vec<f32> {
        let d = p.d;
        let mut out = vec![0f32; p.group * p.n * d];
        for h in 0..p.group {
            for i in 0..p.n {
                let q = &p.q[(i * p.group + h) * d..][..d];
                let live = p.past + i + 1;
                let s: Vec<f64> = (0..live)
                    .map(|j| q.iter().zip(&p.k[j * d..][..d]).map(|(a, b)| *a as f64 * *b as f64).sum())
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, w) in e.iter().enumerate() {
                    for c in 0..d {
                        out[(i * p.group + h) * d + c] += (w / z * p.v[j * d + c] as f64) as f32;
                    }
                }
            }
        }
        out
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn decode_and_prompt_match_plain_attention() {
        // Group sizes around the 4-head pass, both head sizes of the fast path, and one without.
        for (group, d, past, n) in
            [(3, 64, 300, 1), (5, 64, 17, 1), (4, 128, 40, 1), (2, 32, 9, 1), (3, 64, 0, 70), (2, 64, 5, 130)]
        {
            let total = past + n;
            let q: Vec<f32> = noise(group * n * d, 1).iter().map(|x| x * 2.0).collect();
            let (k, v) = (noise(total * d, 2), noise(total * d, 3));
            let p = Heads { q: &q, group, n, past, d, k: &k, v: &v, window: None };
            let mut out = vec![f32::NAN; group * n * d];
            attend(&p, &mut out);
            let want = reference(&p);
            let err = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-5, "group {group} d {d} past {past} n {n}: max error {err}");
            if n == 1 {
                let mut portable = vec![f32::NAN; group * d];
                decode_portable(&p, &mut portable);
                let err = portable.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(err < 1e-5, "portable decode, group {group} d {d}: max error {err}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: checked just above.
                    unsafe { decode_avx2(&p, &mut portable) };
                    let err = portable.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(err < 1e-5, "AVX2 build of the portable decode, group {group} d {d}: max error {err}");
                    if d.is_multiple_of(64) {
                        let mut simd = vec![f32::NAN; group * d];
                        // SAFETY: checked just above.
                        unsafe { avx2::decode(&p, &mut simd) };
                        let err = simd.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                        assert!(err < 1e-5, "AVX2 decode, group {group} d {d}: max error {err}");
                    }
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_exponentials_match_libm() {
        // Lengths around the vector widths (a tail left over), scores down to the clamp.
        for len in [1, 7, 8, 15, 16, 17, 40, 333] {
            let row: Vec<f32> = noise(len, len as u64).iter().map(|x| x * 60.0 - 30.0).collect();
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let want: Vec<f64> = row.iter().map(|&x| ((x - m) as f64).exp()).collect();
            let check = |got: &[f32], sum: f32, what: &str| {
                // Relative error grows with |x| (x·log2 e is rounded to f32): ~1e-6 at x = -40.
                for (g, w) in got.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() <= 5e-6 * w + 1e-37, "{what}, length {len}: {g} against {w}");
                }
                let total: f64 = want.iter().sum();
                assert!((sum as f64 - total).abs() < 1e-5 * total, "{what}, length {len}: sum {sum} against {total}");
            };
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut r = row.clone();
                // SAFETY: checked just above.
                let sum = unsafe { avx2::exp_shifted(&mut r) };
                check(&r, sum, "AVX2");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut r = row.clone();
                // SAFETY: checked just above.
                let sum = unsafe { avx512::exp_shifted(&mut r) };
                check(&r, sum, "AVX-512");
            }
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row: Vec<f32> = (0..37).map(|i| i as f32 * 0.7 - 20.0).collect();
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row.windows(2).all(|w| w[0] < w[1]));
        let want = (36.0f32 * 0.7 - 20.0 - (36.0 * 0.7 - 20.0)).exp()
            / (0..37).map(|i| ((i - 36) as f32 * 0.7).exp()).sum::<f32>();
        assert!((row[36] - want).abs() < 1e-6);
    }
}
