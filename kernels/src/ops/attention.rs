//! Fused scaled-dot-product attention (flash-attention style: online softmax
//! over K/V tiles; the Lq x Lk score matrix is never stored).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, KernelError, Tensor};

const OP: &str = "attention";
/// Largest head dim (D and Dv) the kernel keeps in registers.
pub const MAX_HEAD_DIM: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    bh: u32,
    heads: u32,
    lq: u32,
    lk: u32,
    tiles_q: u32,
    mask_bs: u32,
    mask_hs: u32,
    scale: f32,
    kn: u32,
    vn: u32,
    _pad: [u32; 2],
}

/// Queries per workgroup (`BQ` in the shader).
const BQ: usize = 64;

/// `q [B,H,Lq,D]`, `k [B,H,Lk,D]`, `v [B,H,Lk,Dv]`; `mask`: additive,
/// `[Lq,Lk]` or `[B|1,H|1,Lq,Lk]`; `causal` masks keys `j > i` (PyTorch's
/// top-left `is_causal`); `scale` defaults to `1/sqrt(D)`. Output `[B,H,Lq,Dv]`.
/// D and Dv may be at most [`MAX_HEAD_DIM`].
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    scale: Option<f32>,
) -> Result<Tensor> {
    for t in [q, k, v] {
        if t.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: t.shape().to_vec(),
            });
        }
        if t.rank() != 4 {
            return shape_err(
                OP,
                format!("q, k, v must be [B,H,L,D], got {:?}", t.shape()),
            );
        }
    }
    let dtype = q.dtype();
    for t in [Some(k), Some(v), mask].into_iter().flatten() {
        if t.dtype() != dtype {
            return Err(KernelError::DType {
                op: OP,
                expected: dtype,
                got: t.dtype(),
            });
        }
    }
    let (b, h, lq, d) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let (lk, dv) = (k.dim(2), v.dim(3));
    if k.shape() != [b, h, lk, d] || v.shape() != [b, h, lk, dv] {
        return shape_err(
            OP,
            format!(
                "q {:?}, k {:?}, v {:?} do not fit [B,H,Lq,D], [B,H,Lk,D], [B,H,Lk,Dv]",
                q.shape(),
                k.shape(),
                v.shape()
            ),
        );
    }
    if d > MAX_HEAD_DIM || dv > MAX_HEAD_DIM {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("head dims D={d}, Dv={dv} (at most {MAX_HEAD_DIM})"),
        });
    }
    let (mask_bs, mask_hs) = match mask {
        None => (0, 0),
        Some(mk) => match *mk.shape() {
            [mq, mkk] if mq == lq && mkk == lk => (0, 0),
            [mb, mh, mq, mkk]
                if (mb == b || mb == 1) && (mh == h || mh == 1) && mq == lq && mkk == lk =>
            {
                let hs = if mh == 1 { 0 } else { lq * lk };
                let bs = if mb == 1 { 0 } else { mh * lq * lk };
                (bs, hs)
            }
            _ => {
                return shape_err(
                    OP,
                    format!(
                        "mask {:?} must be [Lq,Lk] or [B|1,H|1,Lq,Lk] with B={b}, H={h}, Lq={lq}, Lk={lk}",
                        mk.shape()
                    ),
                );
            }
        },
    };
    let gpu = q.gpu();
    // lavapipe ends every loop of an invocation after 65535 iterations in
    // total (silently); a key costs 1 + D/16 + Dv/16 of them here.
    let iters = lk * (1 + d.div_ceil(16) + 2 * dv.div_ceil(16));
    if gpu.class() == crate::AdapterClass::Cpu && iters > 60_000 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!(
                "Lk={lk} with D={d}, Dv={dv} on a CPU adapter (its loop limit allows about {} keys)",
                60_000 / (1 + d.div_ceil(16) + 2 * dv.div_ceil(16))
            ),
        });
    }
    let out = Tensor::empty_for(gpu, OP, &[b, h, lq, dv], dtype)?;
    let tiles_q = lq.div_ceil(BQ);
    let params = Params {
        bh: (b * h) as u32,
        heads: h as u32,
        lq: lq as u32,
        lk: lk as u32,
        tiles_q: tiles_q as u32,
        mask_bs: mask_bs as u32,
        mask_hs: mask_hs as u32,
        scale: scale.unwrap_or(1.0 / (d as f32).sqrt()),
        kn: k.numel() as u32,
        vn: v.numel() as u32,
        _pad: [0; 2],
    };
    const BINDINGS: &[Access] = &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ];
    // CPU adapters with 8-lane subgroups: keys shared by broadcast (see `attention_sg.wgsl`).
    let caps = gpu.caps();
    let sg = gpu.class() == crate::AdapterClass::Cpu
        && caps.subgroup
        && caps.subgroup_min_size == 8
        && caps.subgroup_max_size == 8
        && d.max(dv) <= SG_MAX_HEAD_DIM
        && std::env::var("EASEL_ATTENTION").as_deref() != Ok("plain");
    let kernel = if sg {
        crate::Kernel::new(OP, sg_source(d, dv), dtype, BINDINGS).entry("main_sg")
    } else {
        crate::Kernel::new(OP, include_str!("attention.wgsl"), dtype, BINDINGS)
    };
    let kernel = kernel
        .define("D", format!("{d}u"))
        .define("DV", format!("{dv}u"))
        .define("HAS_MASK", mask.is_some())
        .define("CAUSAL", causal);
    let pairs = (b * h * lq * lk) as f64;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[
            q.bind(),
            k.bind(),
            v.bind(),
            mask.map_or(gpu.dummy(), |m| m.bind()),
            out.bind(),
        ],
        gpu.grid((b * h * tiles_q) as u64)?,
        Cost::new(
            pairs * (2 * d + 2 * dv) as f64,
            (q.size_bytes() + k.size_bytes() + v.size_bytes() + out.size_bytes()) as f64,
        ),
    )?;
    Ok(out)
}

/// Largest head dim (D and Dv) of the subgroup variant (`attention_sg.wgsl`), whose rows
/// live in registers.
const SG_MAX_HEAD_DIM: usize = 64;

/// `attention.wgsl` plus the subgroup variant for head dims (d, dv), generated once per
/// pair (pipelines need `'static` source).
fn sg_source(d: usize, dv: usize) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<(usize, usize), &'static str>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    cache.entry((d, dv)).or_insert_with(|| {
        let (qn, vn) = (d.div_ceil(4), dv.div_ceil(4));
        let mut qload = String::new();
        for c in 0..qn {
            let comps: Vec<String> = (0..4)
                .map(|t| {
                    let e = 4 * c + t;
                    if e < d {
                        format!("f32(q[qoff + {e}u])")
                    } else {
                        "0.0".into()
                    }
                })
                .collect();
            qload += &format!(
                "    let q{c} = vec4<f32>({}) * p.scale;\n",
                comps.join(", ")
            );
        }
        for c in 0..vn {
            qload += &format!("    var o{c} = vec4<f32>(0.0);\n");
        }
        let mut kv = String::new();
        for c in 0..qn {
            kv += &format!("        let k{c} = ldk(ko + {}u);\n", 4 * c);
        }
        for c in 0..vn {
            kv += &format!("        let v{c} = ldv(vo + {}u);\n", 4 * c);
        }
        let mut keys = String::new();
        for t in 0..8 {
            let dots: Vec<String> = (0..qn)
                .map(|c| format!("dot(q{c}, subgroupBroadcast(k{c}, {t}u))"))
                .collect();
            keys += &format!(
                "        {{\n            let j = j0 + {t}u;\n            var s = {};\n",
                dots.join(" + ")
            );
            keys += "            if HAS_MASK { s += f32(mask[moff + min(j, p.lk - 1u)]); }\n";
            keys += "            s = max(s, MASKED);\n";
            keys += "            var ok = j < p.lk;\n            if CAUSAL { ok = ok && j <= i; }\n";
            keys += "            s = select(SKIP, s, ok);\n";
            keys += "            if s > m {\n                let corr = exp(m - s);\n                l *= corr;\n";
            for c in 0..vn {
                keys += &format!("                o{c} *= corr;\n");
            }
            keys += "                m = s;\n            }\n            let pj = exp(s - m);\n            l += pj;\n";
            for c in 0..vn {
                keys += &format!(
                    "            o{c} = fma(vec4<f32>(pj), subgroupBroadcast(v{c}, {t}u), o{c});\n"
                );
            }
            keys += "        }\n";
        }
        let mut store = String::new();
        for e in 0..dv {
            store += &format!(
                "    out[ooff + {e}u] = T(o{}[{}] * inv);\n",
                e / 4,
                e % 4
            );
        }
        let sg = include_str!("attention_sg.wgsl")
            .replace("//@QLOAD\n", &qload)
            .replace("//@KVLOAD\n", &kv)
            .replace("//@KEYS\n", &keys)
            .replace("//@STORE\n", &store);
        let src = format!("{}\n{sg}", include_str!("attention.wgsl"));
        Box::leak(src.into_boxed_str())
    })
}

/// CPU reference: naive softmax over the full score row, in f64.
/// `dims` = (B, H, Lq, Lk, D, Dv); `mask` is `[Lq,Lk]` or
/// `[B|1,H|1,Lq,Lk]` given with its shape.
pub fn reference_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: (usize, usize, usize, usize, usize, usize),
    mask: Option<(&[f32], &[usize])>,
    causal: bool,
    scale: Option<f32>,
) -> Vec<f32> {
    let (b, h, lq, lk, d, dv) = dims;
    let scale = scale.unwrap_or(1.0 / (d as f32).sqrt()) as f64;
    let mut out = vec![0f32; b * h * lq * dv];
    let mut s = vec![0f64; lk];
    for bi in 0..b {
        for hi in 0..h {
            let bh = bi * h + hi;
            for i in 0..lq {
                let mut mx = f64::NEG_INFINITY;
                for j in 0..lk {
                    let mut dot = 0f64;
                    for e in 0..d {
                        dot += q[(bh * lq + i) * d + e] as f64 * k[(bh * lk + j) * d + e] as f64;
                    }
                    dot *= scale;
                    if let Some((m, ms)) = mask {
                        let idx = if ms.len() == 2 {
                            i * lk + j
                        } else {
                            let mb = if ms[0] == 1 { 0 } else { bi };
                            let mh = if ms[1] == 1 { 0 } else { hi };
                            ((mb * ms[1] + mh) * lq + i) * lk + j
                        };
                        dot += m[idx] as f64;
                    }
                    if causal && j > i {
                        dot = f64::NEG_INFINITY;
                    }
                    s[j] = dot;
                    mx = mx.max(dot);
                }
                let mut l = 0f64;
                for sj in s.iter_mut() {
                    *sj = if mx == f64::NEG_INFINITY {
                        0.0
                    } else {
                        (*sj - mx).exp()
                    };
                    l += *sj;
                }
                for e in 0..dv {
                    let mut acc = 0f64;
                    for j in 0..lk {
                        acc += s[j] * v[(bh * lk + j) * dv + e] as f64;
                    }
                    out[(bh * lq + i) * dv + e] = if l > 0.0 { (acc / l) as f32 } else { 0.0 };
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::testing::*;

    fn run(
        dtype: DType,
        dims: (usize, usize, usize, usize, usize, usize),
        mask_shape: Option<&[usize]>,
        causal: bool,
        scale: Option<f32>,
    ) {
        let Some(gpu) = test_gpu() else { return };
        let (b, h, lq, lk, d, dv) = dims;
        let seed = (lq * 131 + lk * 17 + d) as u64;
        let (q, qv) = upload(
            &gpu,
            &[b, h, lq, d],
            &rand_vec(b * h * lq * d, seed, -1.0, 1.0),
            dtype,
        );
        let (k, kv) = upload(
            &gpu,
            &[b, h, lk, d],
            &rand_vec(b * h * lk * d, seed + 1, -1.0, 1.0),
            dtype,
        );
        let (v, vv) = upload(
            &gpu,
            &[b, h, lk, dv],
            &rand_vec(b * h * lk * dv, seed + 2, -1.0, 1.0),
            dtype,
        );
        let mask = mask_shape.map(|ms| {
            let n: usize = ms.iter().product();
            upload(&gpu, ms, &rand_vec(n, seed + 3, -2.0, 2.0), dtype)
        });
        let got = attention(&q, &k, &v, mask.as_ref().map(|m| &m.0), causal, scale)
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let mref = mask.as_ref().map(|m| (m.1.as_slice(), mask_shape.unwrap()));
        let want = reference_attention(&qv, &kv, &vv, dims, mref, causal, scale);
        // Outputs are convex combinations of V rows (|v| <= 1), so absolute
        // error is the right yardstick; f16 output rounding dominates there.
        assert_close(
            &format!("{dtype} {dims:?} mask {mask_shape:?} causal {causal}"),
            &got,
            &want,
            tol(dtype) * 2.0,
        );
    }

    #[test]
    fn odd_lengths_masks_causal() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for (lq, lk) in [(1, 1), (7, 77), (77, 7), (300, 300), (1, 300)] {
                run(dtype, (1, 2, lq, lk, 16, 16), None, false, None);
                run(dtype, (1, 2, lq, lk, 16, 16), None, true, None);
            }
            run(
                dtype,
                (2, 3, 7, 77, 40, 24),
                Some(&[7, 77]),
                false,
                Some(0.3),
            );
            run(
                dtype,
                (2, 3, 77, 77, 8, 8),
                Some(&[2, 1, 77, 77]),
                true,
                None,
            );
            run(
                dtype,
                (2, 3, 9, 13, 8, 5),
                Some(&[1, 3, 9, 13]),
                false,
                None,
            );
            run(
                dtype,
                (2, 3, 9, 13, 8, 5),
                Some(&[2, 3, 9, 13]),
                false,
                None,
            );
        }
    }

    #[test]
    fn head_dims_up_to_256() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            run(dtype, (1, 1, 70, 45, 256, 256), None, false, None);
            run(dtype, (1, 1, 33, 65, 1, 3), None, true, None);
            run(dtype, (1, 2, 20, 31, 128, 64), None, false, None);
            // Many keys with wide heads (lavapipe once miscompiled this).
            run(dtype, (1, 1, 64, 600, 64, 64), None, false, None);
        }
    }

    /// Lq = Lk = 2048: a score matrix would be 16 MiB; the kernel keeps none.
    #[test]
    fn long_sequence_without_score_buffer() {
        let Some(gpu) = test_gpu() else { return };
        gpu.sync().unwrap();
        gpu.reset_peak_memory();
        let before = gpu.memory_stats().peak_live_bytes;
        run(DType::F32, (1, 1, 2048, 2048, 64, 64), None, true, None);
        // q, k, v, out: 4 x 512 KiB; a score buffer would add 16 MiB.
        let peak = gpu.memory_stats().peak_live_bytes;
        assert!(
            peak.saturating_sub(before) < 8 << 20,
            "peak live {peak} bytes suggests a score buffer"
        );
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let t = |s: &[usize]| Tensor::zeros(&gpu, s, DType::F32).unwrap();
        let (q, k, v) = (t(&[1, 2, 5, 8]), t(&[1, 2, 6, 8]), t(&[1, 2, 6, 4]));
        assert!(attention(&q, &k, &v, None, false, None).is_ok());
        assert!(matches!(
            attention(&q, &t(&[1, 2, 6, 7]), &v, None, false, None),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            attention(&q, &k, &t(&[1, 2, 5, 4]), None, false, None),
            Err(KernelError::Shape { .. })
        ));
        assert!(attention(&q, &k, &v, Some(&t(&[5, 5])), false, None).is_err());
        assert!(attention(&q, &k, &v, Some(&t(&[1, 3, 5, 6])), false, None).is_err());
        assert!(matches!(
            attention(&t(&[5, 8]), &k, &v, None, false, None),
            Err(KernelError::Shape { .. })
        ));
        let big = t(&[1, 1, 2, 300]);
        assert!(matches!(
            attention(&big, &big, &big, None, false, None),
            Err(KernelError::Unsupported { .. })
        ));
        assert!(matches!(
            attention(&t(&[1, 0, 5, 8]), &k, &v, None, false, None),
            Err(KernelError::Empty { .. })
        ));
        if gpu.class() == crate::AdapterClass::Cpu {
            let long = t(&[1, 1, 8000, 64]);
            assert!(matches!(
                attention(&t(&[1, 1, 1, 64]), &long, &long, None, false, None),
                Err(KernelError::Unsupported { .. })
            ));
        }
    }
}
