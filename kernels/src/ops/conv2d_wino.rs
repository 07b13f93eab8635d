//! Winograd F(4x4, 3x3) path of [`super::Conv2d`] (kernels at the end of
//! `conv2d.wgsl`): for stride-1, ungrouped 3x3 convs (dilated ones as d x d
//! interleaved plain convs) it does 4x fewer multiplies than the direct
//! kernel. On lavapipe, where every load is
//! a per-lane loop, it measured ~2x faster for Cin, Cout >= 16 (see `choose`).
//! The straight-line transform code is generated here from the matrices.

use super::{Conv2d, Conv2dConfig, OP, PadMode, Params, Tile, dims, kernel};
use crate::error::Result;
use crate::ops::epilogue::Epilogue;
use crate::{AdapterClass, Cost, DType, Gpu, Tensor};

/// B^T, G and A^T of F(4x4, 3x3) (Lavin & Gray), points 0, +-1, +-2, inf.
const BT: [[f64; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
const AT: [[f64; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Whether a new conv uses Winograd. `EASEL_CONV_WINOGRAD=0/1` overrides
/// the default (lavapipe-class CPU adapters, both channel counts >= 16: with
/// fewer channels the transforms cost more than the multiplies they save).
pub(super) fn choose(gpu: &Gpu, [cout, cin, kh, kw]: [usize; 4], cfg: &Conv2dConfig) -> bool {
    let fits = (kh, kw) == (3, 3)
        && cfg.stride == (1, 1)
        && cfg.dilation.0 == cfg.dilation.1
        && cfg.groups == 1;
    match std::env::var("EASEL_CONV_WINOGRAD").as_deref() {
        Ok("0") => false,
        Ok("1") => fits,
        _ => fits && gpu.class() == AdapterClass::Cpu && cin >= 16 && cout >= 16,
    }
}

/// The GEMM tile: 8 tiles x `co` channels per invocation; with coop the 8
/// lanes load the weights of one input channel together (one vec4 each per
/// 32 channels) and broadcast them. Wide channel blocks (64) halve the V
/// loads per FMA, which is what lavapipe is bound by; narrow layers keep 32
/// so no lane works on padding.
pub(super) fn tile(t: Tile, cout: usize) -> Tile {
    let co = match (t.coop, cout) {
        (false, _) => 16,
        (true, 0..=32) => 32,
        (true, _) => 64,
    };
    Tile {
        px: 8,
        co,
        wg: 64,
        coop: t.coop,
        kx_inner: false,
    }
}

/// Workgroup size of `wgemm` for `t8` tiles: 64 invocations, fewer (a
/// multiple of the 8-lane subgroup) when the image has too few tiles to
/// give every invocation its own (a 32x32 map has 64 tiles: one
/// invocation's worth per subgroup).
fn gemm_wg(t: Tile, t8: usize) -> usize {
    (t8.div_ceil(t.px)).next_multiple_of(8).clamp(8, t.wg)
}

/// `sum(c[i] * terms[i])` as WGSL, skipping zero coefficients.
fn lin(c: &[f64], terms: &[String]) -> String {
    let mut s = String::new();
    for (&k, t) in c.iter().zip(terms) {
        if k == 0.0 {
            continue;
        }
        let sign = if k < 0.0 { " - " } else { " + " };
        let a = k.abs();
        let term = if a == 1.0 {
            t.clone()
        } else {
            format!("{a:?} * {t}")
        };
        s += &format!("{sign}{term}");
    }
    let s = s.trim_start_matches(" + ");
    match s.strip_prefix(" - ") {
        Some(rest) => format!("-{rest}"),
        None => s.to_string(),
    }
}

/// `conv2d.wgsl` (already expanded for `tiled`) with the Winograd markers
/// replaced.
pub(super) fn expand(src: &str, t: Tile) -> String {
    // Sources built for the direct kernels carry this code too (unused, but
    // it must compile): whole vec4s of tiles whatever their PX.
    let t = Tile {
        px: t.px.next_multiple_of(4),
        ..t
    };
    let co4 = t.co / 4;
    let names = |f: &dyn Fn(usize) -> String, n: usize| (0..n).map(f).collect::<Vec<_>>();

    let mut wt = String::new();
    for r in 0..3 {
        for c in 0..3 {
            wt += &format!("    let g{r}_{c} = f32(w[b + {}u]) * m;\n", r * 3 + c);
        }
    }
    for (i, gi) in G.iter().enumerate() {
        for c in 0..3 {
            let e = lin(gi, &names(&|r| format!("g{r}_{c}"), 3));
            wt += &format!("    let h{i}_{c} = {e};\n");
        }
    }
    for i in 0..6 {
        for (j, gj) in G.iter().enumerate() {
            let e = lin(gj, &names(&|c| format!("h{i}_{c}"), 3));
            wt += &format!("    fout[ub + {}u * ts] = {e};\n", i * 6 + j);
        }
    }

    // wtin loads each 18-pixel row segment as scalars; wtin4 (zero padding
    // 1, width a multiple of 4) as 6 aligned vectors covering it: segment
    // pixel k is component (k + 3) % 4 of vector (k + 3) / 4.
    let mut tin = String::new();
    for k in 0..18 {
        tin += &format!(
            "    let cx{k} = coord(ix0 + {k}, p.w);\n    let xi{k} = min(cx{k}.i, p.w - 1u);\n"
        );
    }
    let mut tin4 = String::new();
    for b in 0..6 {
        tin4 += &format!(
            "    let okc{b} = a4 + {b} >= 0 && a4 + {b} < i32(w4);\n    \
             let xc{b} = u32(clamp(a4 + {b}, 0, i32(w4) - 1));\n"
        );
    }
    for r in 0..6 {
        tin += &format!(
            "    let cy{r} = coord(iy0 + {r}, p.h);\n    let yo{r} = xb + min(cy{r}.i, p.h - 1u) * p.w;\n"
        );
        for k in 0..18 {
            tin += &format!(
                "    let p{r}_{k} = select(0.0, f32(x[yo{r} + xi{k}]), cy{r}.ok && cx{k}.ok);\n"
            );
        }
        tin4 += &format!(
            "    let cy{r} = coord(iy0 + {r}, p.h);\n    let yo{r} = (xb + min(cy{r}.i, p.h - 1u) * p.w) / 4u;\n"
        );
        for b in 0..6 {
            tin4 += &format!(
                "    let q{r}_{b} = select(vec4<f32>(0.0), vec4<f32>(x4[yo{r} + xc{b}]), cy{r}.ok && okc{b});\n"
            );
        }
        for k in 0..18 {
            // Pixel k of the segment is pixel k + 3 of the 6 vectors.
            let e = k + 3;
            let comp = ["x", "y", "z", "w"][e % 4];
            tin4 += &format!("    let p{r}_{k} = q{r}_{}.{comp};\n", e / 4);
        }
    }
    let mut tind = String::new();
    for j in 0..4 {
        tind += &format!(
            "    let tx{j} = g4 * 4u + {j}u;\n    \
             let ix{j} = i32(p.dil * 4u * (tx{j} % p.tws) + tx{j} / p.tws) - i32(p.pw);\n"
        );
        for k in 0..6 {
            tind += &format!(
                "    let cx{j}_{k} = coord(ix{j} + {k} * d, p.w);\n    \
                 let xi{j}_{k} = min(cx{j}_{k}.i, p.w - 1u);\n"
            );
        }
    }
    for r in 0..6 {
        tind += &format!(
            "    let cy{r} = coord(iy0 + {r} * d, p.h);\n    let yo{r} = xb + min(cy{r}.i, p.h - 1u) * p.w;\n"
        );
        for c in 0..6 {
            let v: Vec<String> = (0..4)
                .map(|j| {
                    format!("select(0.0, f32(x[yo{r} + xi{j}_{c}]), cy{r}.ok && cx{j}_{c}.ok)")
                })
                .collect();
            tind += &format!("    let d{r}_{c} = vec4<f32>({});\n", v.join(", "));
        }
    }
    for r in 0..6 {
        for c in 0..6 {
            let d = format!(
                "    let d{r}_{c} = vec4<f32>(p{r}_{c}, p{r}_{}, p{r}_{}, p{r}_{});\n",
                c + 4,
                c + 8,
                c + 12
            );
            tin += &d;
            tin4 += &d;
        }
    }
    let mut ttrans = String::new();
    for (i, bi) in BT.iter().enumerate() {
        for c in 0..6 {
            let e = lin(bi, &names(&|r| format!("d{r}_{c}"), 6));
            ttrans += &format!("    let e{i}_{c} = {e};\n");
        }
    }
    for i in 0..6 {
        for (j, bj) in BT.iter().enumerate() {
            let e = lin(bj, &names(&|c| format!("e{i}_{c}"), 6));
            ttrans += &format!("    fout4[vb + {}u * ts] = {e};\n", i * 6 + j);
        }
    }
    tin += &ttrans;
    tin4 += &ttrans;
    tind += &ttrans;

    let mut acc = String::new();
    let mut body = String::new();
    let mut store = String::new();
    for q in 0..t.px / 4 {
        body += &format!("        let v{q} = fin4[vb + ci * t84 + {q}u];\n");
    }
    body += "        let wi = wb + ci * CO4;\n";
    for j in 0..t.px {
        for c in 0..co4 {
            acc += &format!("    var a{j}_{c} = vec4<f32>(0.0);\n");
            store += &format!("    fout4[mb + {j}u * (p.coutp / 4u) + {c}u] = a{j}_{c};\n");
        }
    }
    if t.coop {
        for l in 0..co4.div_ceil(8) {
            body += &format!("        let wl{l} = wu[wi + {}u + lane];\n", l * 8);
        }
    }
    for c in 0..co4 {
        if t.coop {
            body += &format!(
                "        let w{c} = subgroupBroadcast(wl{}, {}u);\n",
                c / 8,
                c % 8
            );
        } else {
            body += &format!("        let w{c} = wu[wi + {c}u];\n");
        }
        for j in 0..t.px {
            let comp = ["x", "y", "z", "w"][j % 4];
            body += &format!(
                "        a{j}_{c} = fma(vec4<f32>(v{}.{comp}), w{c}, a{j}_{c});\n",
                j / 4
            );
        }
    }

    let mut tout = String::new();
    for t in 0..36 {
        tout += &format!("    let m{t} = fin4[mb + {t}u * ts];\n");
    }
    for (i, ai) in AT.iter().enumerate() {
        for c in 0..6 {
            let e = lin(ai, &names(&|r| format!("m{}", r * 6 + c), 6));
            tout += &format!("    let s{i}_{c} = {e};\n");
        }
    }
    for i in 0..4 {
        for (j, aj) in AT.iter().enumerate() {
            let e = lin(aj, &names(&|c| format!("s{i}_{c}"), 6));
            tout += &format!(
                "    if oy + {i}u * p.dil < p.ho && ox + {j}u * p.dil < p.wo {{\n        \
                 store4({e}, n, co, (oy + {i}u * p.dil) * p.wo + ox + {j}u * p.dil);\n    }}\n"
            );
        }
    }
    // wtout4: the same transform, then one vector per (row, channel).
    let mut tout4 = String::new();
    for t in 0..36 {
        tout4 += &format!("    let m{t} = fin4[mb + {t}u * ts];\n");
    }
    for (i, ai) in AT.iter().enumerate() {
        for c in 0..6 {
            let e = lin(ai, &names(&|r| format!("m{}", r * 6 + c), 6));
            tout4 += &format!("    let s{i}_{c} = {e};\n");
        }
    }
    for i in 0..4 {
        for (j, aj) in AT.iter().enumerate() {
            let e = lin(aj, &names(&|c| format!("s{i}_{c}"), 6));
            tout4 += &format!("    let o{i}_{j} = {e};\n");
        }
        tout4 += &format!("    if oy + {i}u < p.ho {{\n");
        for (e, comp) in ["x", "y", "z", "w"].iter().enumerate() {
            tout4 += &format!(
                "        if co + {e}u < p.cout {{\n            wstore4(vec4<f32>(o{i}_0.{comp}, \
                 o{i}_1.{comp}, o{i}_2.{comp}, o{i}_3.{comp}), n, co + {e}u, (oy + {i}u) * p.wo + ox, \
                 b.{comp}, s.{comp});\n        }}\n"
            );
        }
        tout4 += "    }\n";
    }
    src.replace("//@WTRANS\n", &wt)
        .replace("//@WTIN\n", &tin)
        .replace("//@WTIN4\n", &tin4)
        .replace("//@WTIND\n", &tind)
        .replace("//@WACC\n", &acc)
        .replace("//@WBODY\n", &body)
        .replace("//@WSTORE\n", &store)
        .replace("//@WTOUT\n", &tout)
        .replace("//@WTOUT4\n", &tout4)
}

fn wino_kernel(
    entry: &'static str,
    dtype: DType,
    reflect: bool,
    t: Tile,
) -> crate::Kernel<'static> {
    let mut k = kernel(entry, dtype, reflect, false, t, [3, 3, 1, 1]);
    // Own rows in the EASEL_PROFILE table: the passes cost very differently.
    k.op = match entry {
        "wtin" | "wtin4" | "wtind" => "conv2d.wino_in",
        "wgemm" => "conv2d.wino_gemm",
        "wtout" | "wtout4" => "conv2d.wino_out",
        _ => "conv2d.wino_weights",
    };
    k
}

#[cfg(test)]
thread_local! {
    /// Tests force bands of this many tile rows.
    pub(super) static BAND_ROWS: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn band_override(band: usize) -> usize {
    BAND_ROWS.with(|c| c.get()).map_or(band, |b| b.min(band))
}

#[cfg(not(test))]
fn band_override(band: usize) -> usize {
    band
}

/// U = G g G^T for every (co, ci), as f32 [Cout/CO][36][Cin][CO].
pub(super) fn weights(weight: &Tensor, [cout, cin]: [usize; 2], t: Tile) -> Result<Tensor> {
    let gpu = weight.gpu();
    let wt = tile(t, cout);
    let coutp = cout.next_multiple_of(wt.co);
    let u = Tensor::empty_for(gpu, OP, &[coutp / wt.co, 36, cin, wt.co], DType::F32)?;
    let total = coutp * cin;
    let params = Params {
        cin_g: cin as u32,
        cout: cout as u32,
        total: total as u32,
        cinp: cin as u32,
        ..Params::default()
    };
    let k = wino_kernel("wtrans", weight.dtype(), false, wt)
        .defines(Epilogue::default().defines(false));
    let dummy = gpu.dummy();
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&params),
        &[dummy, weight.bind(), dummy, dummy, dummy, u.bind()],
        gpu.grid(total.div_ceil(256) as u64)?,
        Cost::new(0.0, (weight.size_bytes() + u.size_bytes()) as f64),
    )?;
    Ok(u)
}

/// Runs the three Winograd passes, in bands of tile rows when the
/// intermediates of the whole image would not fit one binding; `Ok(false)`
/// when not even one tile row fits (the caller then uses the direct kernel).
pub(super) fn run(
    conv: &Conv2d,
    u: &Tensor,
    x: &Tensor,
    out: &Tensor,
    out_offset: usize,
    epi: &Epilogue,
) -> Result<bool> {
    let gpu = x.gpu();
    let [n, x_c, h, w] = dims(x, "input")?;
    let [_, out_c, ho, wo] = dims(out, "output")?;
    let (cin, cout) = (conv.cin, conv.cout);
    let t = tile(conv.tile, conv.cout);
    // Dilation d splits the output into d x d phases (row and column mod
    // d), each a plain 3x3 conv of the sub-image: per phase, ths x tws
    // tiles; tiles are ordered phase-major along both axes.
    let d = conv.cfg.dilation.0;
    let (ths, tws) = (ho.div_ceil(d).div_ceil(4), wo.div_ceil(d).div_ceil(4));
    let (th_all, twi) = (d * ths, d * tws);
    let twp = twi.next_multiple_of(4);
    let coutp = cout.next_multiple_of(t.co);
    // Tile rows per band: V [36][Cin][T8] and M [36][T8][CoutP] of one band
    // must each fit one binding (large images run in several bands).
    let tile_bytes = (36 * 4 * cin.max(coutp)) as u64;
    let max_tiles = (gpu.max_binding_bytes() / tile_bytes).min(u32::MAX as u64 / 36 / coutp as u64);
    let band = band_override(((max_tiles as usize).saturating_sub(8) / (n * twp)).min(th_all));
    if band == 0 {
        return Ok(false);
    }
    let t8_of = |rows: usize| (n * rows * twp).next_multiple_of(t.px.max(8));
    let t8 = t8_of(band);
    let v = Tensor::empty_for(gpu, OP, &[36, cin, t8], DType::F32)?;
    let m = Tensor::empty_for(gpu, OP, &[36, t8, coutp], DType::F32)?;
    let reflect = conv.cfg.pad_mode == PadMode::Reflect;
    let co_blocks = coutp / t.co;
    let dummy = gpu.dummy();
    let dt = x.dtype();
    let plain = Epilogue::default().defines(false);
    // Vector row loads need zero padding 1 and 4 | W; whole-row vector
    // stores need 4 | Wo (then every tile row is aligned).
    let in_entry = if d > 1 {
        "wtind"
    } else if w % 4 == 0 && conv.cfg.padding.1 == 1 && !reflect {
        "wtin4"
    } else {
        "wtin"
    };
    let out_entry = if d == 1 && wo % 4 == 0 {
        "wtout4"
    } else {
        "wtout"
    };
    for ty0 in (0..th_all).step_by(band) {
        let th = band.min(th_all - ty0);
        let t8 = t8_of(th);
        let gt = Tile {
            wg: gemm_wg(t, t8),
            ..t
        };
        let pix_blocks = t8.div_ceil(gt.px * gt.wg);
        let base = Params {
            n: n as u32,
            cin_g: cin as u32,
            h: h as u32,
            w: w as u32,
            cout: cout as u32,
            ho: ho as u32,
            wo: wo as u32,
            ph: conv.cfg.padding.0 as u32,
            pw: conv.cfg.padding.1 as u32,
            x_c: x_c as u32,
            out_c: out_c as u32,
            out_off: out_offset as u32,
            slope_n: epi.slopes.map_or(1, |s| s.numel()) as u32,
            cinp: cin as u32,
            pix_blocks: pix_blocks as u32,
            alpha: epi.alpha,
            beta: epi.beta,
            leaky: epi.act.param(),
            co_blocks: co_blocks as u32,
            th: th as u32,
            twp: twp as u32,
            t8: t8 as u32,
            coutp: coutp as u32,
            ty0: ty0 as u32,
            dil: d as u32,
            ths: ths as u32,
            tws: tws as u32,
            twi: twi as u32,
            ..Params::default()
        };

        let total = n * cin * th * (twp / 4);
        let k = wino_kernel(in_entry, dt, reflect, t).defines(plain.clone());
        gpu.dispatch(
            &k,
            bytemuck::bytes_of(&Params {
                total: total as u32,
                ..base
            }),
            &[x.bind(), dummy, dummy, dummy, dummy, v.bind()],
            gpu.grid(total.div_ceil(256) as u64)?,
            Cost::new(
                (total * 4 * 36 * 12) as f64,
                (x.size_bytes() * th / th_all + 36 * cin * t8 * 4) as f64,
            ),
        )?;

        let k = wino_kernel("wgemm", dt, false, gt).defines(plain.clone());
        gpu.dispatch(
            &k,
            bytemuck::bytes_of(&base),
            &[v.bind(), u.bind(), dummy, dummy, dummy, m.bind()],
            gpu.grid((co_blocks * pix_blocks * 36) as u64)?,
            Cost::new(
                2.0 * (36 * t8 * coutp * cin) as f64,
                (36 * (cin + coutp) * t8 * 4 + u.size_bytes()) as f64,
            ),
        )?;

        let total = n * (coutp / 4) * th * twi;
        let k = wino_kernel(out_entry, dt, false, t).defines(epi.defines(conv.bias.is_some()));
        gpu.dispatch(
            &k,
            bytemuck::bytes_of(&Params {
                total: total as u32,
                ..base
            }),
            &[
                m.bind(),
                dummy,
                conv.bias.as_ref().map_or(dummy, |b| b.bind()),
                epi.slopes.map_or(dummy, |s| s.bind()),
                epi.residual.map_or(dummy, |r| r.bind()),
                out.bind(),
            ],
            gpu.grid(total.div_ceil(256) as u64)?,
            Cost::new(
                (total * 4 * 16 * 10) as f64,
                (36 * t8 * coutp * 4 + n * cout * (th * 4).min(ho) * wo * dt.size()) as f64,
            ),
        )?;
    }
    Ok(true)
}
