//! `ai.wrapflow:GroupQueryAttention`, an ONNX Runtime custom operator with the contract of
//! ONNX Runtime's `com.microsoft:GroupQueryAttention` as the importer uses it: packed QKV
//! `[batch, seq, (heads + 2 kv_heads) × head_dim]`, rotary embedding inside (`cos_cache`,
//! `sin_cache`, not interleaved), `seqlens_k` (each row's total length − 1) and
//! `total_sequence_length`, past and present KV `[batch, kv_heads, capacity, head_dim]`, usually
//! one buffer passed as both (the shared layout), so a call writes only its new positions.
//!
//! Why: ONNX Runtime's CPU kernel runs one GEMM per query head, so on a decode step it packs and
//! reads every cached key once per query head; it was 43% of a decode step (benchmarks/RESULTS.md).
//! This kernel reads each KV head's cache once for all of its query heads, in AVX-512 where the
//! CPU has it ([`kernel`]). Prompts (more than one new position) go through blocked GEMMs.
//!
//! Semantics follow ONNX Runtime's: when `total_sequence_length` equals the number of new
//! positions the call is a first prompt (row `b` holds `seqlens_k[b] + 1` real tokens from
//! position 0, right-padded; padded positions give zeros); otherwise row `b`'s new positions end
//! at `seqlens_k[b]`.

pub mod kernel;

use ort::operator::{ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput, OperatorOutput};
use ort::value::TensorElementType;

use self::kernel::Heads;

/// The custom operators' domain in wrapflow's graphs (the graph builder writes it).
pub use crate::model::decoder::export::DOMAIN;

/// The domain with wrapflow's operators, for a session builder.
pub fn domain() -> ort::Result<OperatorDomain> {
    OperatorDomain::new(DOMAIN)?.add(GroupQueryAttention)
}

/// See the module doc.
pub struct GroupQueryAttention;

impl Operator for GroupQueryAttention {
    type Kernel<'attr> = Attention;

    fn name(&self) -> &str {
        "GroupQueryAttention"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        use TensorElementType::{Float32, Int32};
        [
            OperatorInput::required(Float32), // query (packed QKV)
            OperatorInput::optional(Float32), // key (unpacked: not supported)
            OperatorInput::optional(Float32), // value
            OperatorInput::required(Float32), // past_key
            OperatorInput::required(Float32), // past_value
            OperatorInput::required(Int32),   // seqlens_k
            OperatorInput::required(Int32),   // total_sequence_length
            OperatorInput::optional(Float32), // cos_cache
            OperatorInput::optional(Float32), // sin_cache
        ]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [TensorElementType::Float32; 3].map(OperatorOutput::required)
    }

    fn create_kernel<'attr>(&self, info: &KernelContext<'attr>) -> ort::Result<Attention> {
        let int = |name: &str| info.get::<i64>(name);
        let heads = int("num_heads").filter(|&h| h > 0).ok_or_else(|| ort::Error::new("num_heads is required"))?;
        let kv_heads =
            int("kv_num_heads").filter(|&h| h > 0).ok_or_else(|| ort::Error::new("kv_num_heads is required"))?;
        if heads % kv_heads != 0 {
            return Err(ort::Error::new(format!("num_heads {heads} is not a multiple of kv_num_heads {kv_heads}")));
        }
        if int("rotary_interleaved").unwrap_or(0) != 0 {
            return Err(ort::Error::new("interleaved rotary embedding is not supported"));
        }
        if info.get::<f32>("softcap").is_some_and(|c| c != 0.0) {
            return Err(ort::Error::new("softcap is not supported"));
        }
        Ok(Attention {
            heads: heads as usize,
            kv_heads: kv_heads as usize,
            scale: info.get::<f32>("scale").filter(|&s| s != 0.0),
            rotary: int("do_rotary").unwrap_or(0) == 1,
            // As ONNX Runtime's: the number of keys before the query's own.
            window: int("local_window_size").filter(|&w| w >= 0).map(|w| w as usize + 1),
        })
    }
}

/// The kernel of one graph node.
pub struct Attention {
    heads: usize,
    kv_heads: usize,
    /// `None`: 1/√head_dim.
    scale: Option<f32>,
    rotary: bool,
    window: Option<usize>,
}

/// Raw pointers handed to ONNX Runtime's worker threads; each task writes only its own row's
/// and KV head's positions of `k`, `v` and `out`.
struct Shared {
    qkv: *const f32,
    k: *mut f32,
    v: *mut f32,
    out: *mut f32,
}
// SAFETY: see the struct doc: tasks read shared inputs and write disjoint elements.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

fn err(msg: impl std::fmt::Display) -> ort::Error {
    ort::Error::new(format!("ai.wrapflow:GroupQueryAttention: {msg}"))
}

impl Kernel for Attention {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let input = |i: usize| ctx.input(i)?.ok_or_else(|| err(format!("input {i} is missing")));
        if ctx.input(1)?.is_some() || ctx.input(2)?.is_some() {
            return Err(err("separate key and value inputs are not supported; pack Q, K and V"));
        }
        let qkv = input(0)?;
        let (qshape, qkv) = qkv.try_extract_tensor::<f32>()?;
        let (past_k, past_v) = (input(3)?, input(4)?);
        // Raw pointers: in the shared layout the present outputs below are this same memory.
        let (kshape, pk) = past_k.try_extract_tensor::<f32>()?;
        let pk = pk.as_ptr();
        let pv = past_v.try_extract_tensor::<f32>()?.1.as_ptr();
        let seqlens = input(5)?;
        let (_, seqlens) = seqlens.try_extract_tensor::<i32>()?;
        let total = input(6)?;
        let total = *total.try_extract_tensor::<i32>()?.1.first().ok_or_else(|| err("empty total_sequence_length"))?;
        let (cos, sin) = (ctx.input(7)?, ctx.input(8)?);
        let tables = match (&cos, &sin) {
            (Some(c), Some(s)) => Some((c.try_extract_tensor::<f32>()?, s.try_extract_tensor::<f32>()?)),
            _ => None,
        };

        let (nh, kvh) = (self.heads, self.kv_heads);
        let (batch, seq, d, cap) = (qshape[0] as usize, qshape[1] as usize, kshape[3] as usize, kshape[2] as usize);
        if qshape[2] as usize != (nh + 2 * kvh) * d || kshape[1] as usize != kvh || kshape[0] as usize != batch {
            return Err(err(format!("packed QKV {qshape:?} does not fit past KV {kshape:?} with {nh}/{kvh} heads")));
        }
        if seqlens.len() != batch {
            return Err(err(format!("seqlens_k has {} rows for a batch of {batch}", seqlens.len())));
        }
        let prompt = total as usize == seq;
        let spans: Vec<(usize, usize)> = seqlens
            .iter()
            .map(|&l| {
                let len = usize::try_from(l).map_err(|_| err(format!("negative seqlens_k {l}")))? + 1;
                match prompt {
                    true if len <= seq => Ok((0, len)),
                    false if len >= seq => Ok((len - seq, seq)),
                    _ => Err(err(format!("seqlens_k {l} does not fit {seq} new positions"))),
                }
            })
            .collect::<ort::Result<_>>()?;
        let longest = spans.iter().map(|(p, n)| p + n).max().unwrap_or(0);
        if longest > cap {
            return Err(err(format!("{longest} positions do not fit the KV buffer's {cap}")));
        }
        let half = d / 2;
        if self.rotary {
            let ((cshape, c), (_, s)) =
                tables.as_ref().ok_or_else(|| err("do_rotary needs cos_cache and sin_cache"))?;
            if d % 2 != 0 || cshape[1] as usize != half || c.len() != s.len() || longest > cshape[0] as usize {
                return Err(err(format!("rotary tables {cshape:?} do not cover {longest} positions of {d}")));
            }
        }

        let mut present_k = ctx.output(1, kshape.to_vec())?.ok_or_else(|| err("no present_key"))?;
        let mut present_v = ctx.output(2, kshape.to_vec())?.ok_or_else(|| err("no present_value"))?;
        // Shared layout: the present is the past's own memory. Otherwise start from a copy.
        let start = |present: &mut [f32], past: *const f32| {
            if present.as_ptr() != past {
                // SAFETY: `past` is a distinct tensor of the same shape.
                present.copy_from_slice(unsafe { std::slice::from_raw_parts(past, present.len()) });
            }
            present.as_mut_ptr()
        };
        let k = start(present_k.try_extract_tensor_mut::<f32>()?.1, pk);
        let v = start(present_v.try_extract_tensor_mut::<f32>()?.1, pv);
        let mut output =
            ctx.output(0, vec![batch as i64, seq as i64, (nh * d) as i64])?.ok_or_else(|| err("no output"))?;
        let out = output.try_extract_tensor_mut::<f32>()?.1;
        if prompt {
            // Padded positions of shorter rows get no task output; a step writes every element.
            out.fill(0.0);
        }
        let shared = Shared { qkv: qkv.as_ptr(), k, v, out: out.as_mut_ptr() };
        let scale = self.scale.unwrap_or(1.0 / (d as f32).sqrt());
        let rotary = tables.as_ref().filter(|_| self.rotary).map(|((_, c), (_, s))| (&c[..], &s[..]));
        let group = nh / kvh;
        let width = (nh + 2 * kvh) * d;

        let task = |t: usize| {
            // The whole struct, not its (non-Sync) pointer fields one by one.
            let shared = &shared;
            let (b, kh) = (t / kvh, t % kvh);
            let (past, n) = spans[b];
            let rotate = |x: &mut [f32], pos: usize| {
                if let Some((c, s)) = rotary {
                    let (c, s) = (&c[pos * half..(pos + 1) * half], &s[pos * half..(pos + 1) * half]);
                    for i in 0..half {
                        let (a, z) = (x[i], x[i + half]);
                        x[i] = a * c[i] - z * s[i];
                        x[i + half] = z * c[i] + a * s[i];
                    }
                }
            };
            let slab = (b * kvh + kh) * cap * d;
            // SAFETY: `qkv` is `[batch, seq, width]`; this task alone writes row `b`'s KV head
            // `kh` (`cap × d` floats at `slab`) and row `b`'s group of query heads in `out`.
            unsafe {
                let token = |i: usize| std::slice::from_raw_parts(shared.qkv.add((b * seq + i) * width), width);
                for i in 0..n {
                    let (kd, vd) = (shared.k.add(slab + (past + i) * d), shared.v.add(slab + (past + i) * d));
                    let key = std::slice::from_raw_parts_mut(kd, d);
                    key.copy_from_slice(&token(i)[(nh + kh) * d..][..d]);
                    rotate(key, past + i);
                    std::ptr::copy_nonoverlapping(token(i)[(nh + kvh + kh) * d..].as_ptr(), vd, d);
                }
                let mut q = vec![0f32; n * group * d];
                for i in 0..n {
                    let heads = &token(i)[kh * group * d..][..group * d];
                    for (g, row) in q[i * group * d..][..group * d].chunks_exact_mut(d).enumerate() {
                        row.copy_from_slice(&heads[g * d..][..d]);
                        rotate(row, past + i);
                        row.iter_mut().for_each(|x| *x *= scale);
                    }
                }
                let span = (past + n) * d;
                let heads = Heads {
                    q: &q,
                    group,
                    n,
                    past,
                    d,
                    k: std::slice::from_raw_parts(shared.k.add(slab), span),
                    v: std::slice::from_raw_parts(shared.v.add(slab), span),
                    window: self.window,
                };
                let mut o = vec![0f32; n * group * d];
                kernel::attend(&heads, &mut o);
                // The group's heads are adjacent in `out` too: one copy per position.
                for i in 0..n {
                    let to = shared.out.add((b * seq + i) * nh * d + kh * group * d);
                    std::ptr::copy_nonoverlapping(o[i * group * d..].as_ptr(), to, group * d);
                }
            }
        };
        ctx.par_for(batch * kvh, batch * kvh, task)
    }
}
