//! 2-D convolution (NCHW, PyTorch semantics) with a fused epilogue.
//!
//! [`Conv2d`] packs its weights once into the layout the register-blocked
//! `tiled` kernel wants; grouped convs use the `generic` kernel on the raw
//! weights. [`Conv2d::forward_into`] reads a channel prefix of its input and
//! writes into a channel range of an existing tensor, so dense blocks
//! (RRDB, U2-Net) concatenate without copies.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::ops::epilogue::{Activation, EPILOGUE_WGSL, Epilogue};
use crate::{Access, AdapterClass, Cost, DType, Gpu, Kernel, KernelError, Tensor};

#[path = "conv2d_wino.rs"]
mod wino;

const OP: &str = "conv2d";
const SRC: &str = include_str!("conv2d.wgsl");
const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];

/// How the border is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PadMode {
    #[default]
    Zeros,
    /// PyTorch `padding_mode='reflect'` (mirror without repeating the edge);
    /// needs `padding < input size`.
    Reflect,
}

#[derive(Debug, Clone, Copy)]
pub struct Conv2dConfig {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub pad_mode: PadMode,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            pad_mode: PadMode::Zeros,
        }
    }
}

impl Conv2dConfig {
    /// Padding 1: a 3x3 conv that keeps the size.
    pub fn same3x3() -> Self {
        Self::padded(1)
    }
    pub fn padded(p: usize) -> Self {
        Self {
            padding: (p, p),
            ..Self::default()
        }
    }
    /// Dilation `d` with padding `d`: a 3x3 conv that keeps the size.
    pub fn dilated(d: usize) -> Self {
        Self {
            padding: (d, d),
            dilation: (d, d),
            ..Self::default()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    cin_g: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    groups: u32,
    cout_g: u32,
    x_c: u32,
    out_c: u32,
    out_off: u32,
    slope_n: u32,
    total: u32,
    cinp: u32,
    pix_blocks: u32,
    alpha: f32,
    beta: f32,
    leaky: f32,
    co_blocks: u32,
    th: u32,
    twp: u32,
    t8: u32,
    coutp: u32,
    ty0: u32,
    dil: u32,
    ths: u32,
    tws: u32,
    twi: u32,
    _pad: [u32; 3],
}

/// Register tile of the `tiled` kernel: PX pixels x CO output channels per
/// invocation, WG invocations per workgroup; `coop`: lanes load weights
/// together and broadcast them (lavapipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    pub px: usize,
    pub co: usize,
    pub wg: usize,
    pub coop: bool,
    /// Emit the FMAs of all KW taps of one accumulator back to back.
    pub kx_inner: bool,
}

impl Tile {
    /// The tile for this adapter and output-channel count.
    /// `EASEL_CONV_TILE=px,co` overrides it (for tuning).
    pub fn choose(gpu: &Gpu, cout: usize) -> Tile {
        let caps = gpu.caps();
        let forced = std::env::var("EASEL_CONV_TILE").ok().and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        });
        match gpu.class() {
            // lavapipe: a subgroup is 8 SIMD lanes of one CPU thread and
            // every storage load with a non-constant address is a per-lane
            // loop, so loads, not FMAs, set the speed: big tiles (the
            // accumulators spill to the stack, which is cheaper) and
            // cooperative weight loads.
            AdapterClass::Cpu => {
                let coop =
                    caps.subgroup && caps.subgroup_min_size == 8 && caps.subgroup_max_size == 8;
                let co = match cout {
                    0..=8 => 8,
                    9..=16 => 16,
                    _ => 32,
                };
                let (px, co) = forced
                    .filter(|&(p, c): &(usize, usize)| {
                        p > 0
                            && (if coop {
                                [8, 16, 32, 64].contains(&c)
                            } else {
                                c % 4 == 0
                            })
                    })
                    .unwrap_or((8, co));
                Tile {
                    px,
                    co,
                    wg: 64,
                    coop,
                    kx_inner: false,
                }
            }
            _ => {
                let co = if cout <= 4 {
                    4
                } else if cout <= 8 {
                    8
                } else {
                    16
                };
                let (px, co) = forced
                    .filter(|&(p, c): &(usize, usize)| p > 0 && [4, 8, 16].contains(&c))
                    .unwrap_or((4, co));
                Tile {
                    px,
                    co,
                    wg: 64,
                    coop: false,
                    kx_inner: false,
                }
            }
        }
    }

    /// Input channels per step of the inner loop (the coop load covers
    /// 32 weights = CI_STEP rows of CO).
    fn ci_step(&self) -> usize {
        if self.coop { (32 / self.co).max(1) } else { 1 }
    }

    const GENERIC: Tile = Tile {
        px: 1,
        co: 4,
        wg: 64,
        coop: false,
        kx_inner: false,
    };
}

fn dims(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => shape_err(OP, format!("{what} must be 4-D, got {s:?}")),
    }
}

fn check_dtype(t: &Tensor, expected: DType) -> Result<()> {
    if t.dtype() != expected {
        return Err(KernelError::DType {
            op: OP,
            expected,
            got: t.dtype(),
        });
    }
    Ok(())
}

/// Output length along one axis of a (dilated, strided, padded) sliding
/// window; shared by every conv-like op so they agree on shapes and errors.
pub(crate) fn out_len(
    op: &'static str,
    axis: &str,
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<usize> {
    let span = dilation * (k - 1) + 1;
    if size + 2 * pad < span {
        return shape_err(
            op,
            format!(
                "{axis}: input {size} + 2*padding {pad} is smaller than the dilated kernel {span}"
            ),
        );
    }
    Ok((size + 2 * pad - span) / stride + 1)
}

/// `(ho, wo)` of a conv, or a shape error when the kernel does not fit.
pub fn output_size(
    h: usize,
    w: usize,
    k: (usize, usize),
    cfg: &Conv2dConfig,
) -> Result<(usize, usize)> {
    let one = |size, k, s, p, d, axis| out_len(OP, axis, size, k, s, p, d);
    let (sh, sw) = cfg.stride;
    let (dh, dw) = cfg.dilation;
    Ok((
        one(h, k.0, sh, cfg.padding.0, dh, "height")?,
        one(w, k.1, sw, cfg.padding.1, dw, "width")?,
    ))
}

/// A conv layer with its weights packed once for the fast kernel.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    packed: Option<Tensor>,
    /// Winograd-transformed weights (see `wino`), when that path is chosen.
    wino: Option<Tensor>,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
    cin: usize,
    cout: usize,
    k: (usize, usize),
    tile: Tile,
}

impl Conv2d {
    /// `weight` [Cout, Cin/groups, KH, KW] (PyTorch layout), `bias` [Cout].
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, cfg: Conv2dConfig) -> Result<Conv2d> {
        let [cout, cin_g, kh, kw] = dims(weight, "weight")?;
        if weight.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: weight.shape().to_vec(),
            });
        }
        let (s, d) = (cfg.stride, cfg.dilation);
        if cfg.groups == 0 || s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 {
            return shape_err(OP, "stride, dilation and groups must be >= 1");
        }
        if cout % cfg.groups != 0 {
            return shape_err(
                OP,
                format!("Cout {cout} is not divisible by groups {}", cfg.groups),
            );
        }
        if let Some(b) = bias {
            check_dtype(b, weight.dtype())?;
            if b.numel() != cout {
                return shape_err(
                    OP,
                    format!("bias has {} elements, Cout is {cout}", b.numel()),
                );
            }
        }
        let use_wino = wino::choose(weight.gpu(), [cout, cin_g, kh, kw], &cfg);
        Self::build(
            weight,
            bias,
            cfg,
            Tile::choose(weight.gpu(), cout),
            use_wino,
        )
    }

    /// [`Conv2d::new`] with a forced register tile and Winograd choice
    /// (tuning and tests); the arguments must already be validated.
    pub(crate) fn build(
        weight: &Tensor,
        bias: Option<&Tensor>,
        cfg: Conv2dConfig,
        tile: Tile,
        use_wino: bool,
    ) -> Result<Conv2d> {
        let [cout, cin_g, kh, kw] = dims(weight, "weight")?;
        let wino = if use_wino {
            Some(wino::weights(weight, [cout, cin_g], tile)?)
        } else {
            None
        };
        let packed = if cfg.groups == 1 {
            Some(pack(weight, [cout, cin_g, kh, kw], tile)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight: weight.clone(),
            packed,
            wino,
            bias: bias.cloned(),
            cfg,
            cin: cin_g * cfg.groups,
            cout,
            k: (kh, kw),
            tile,
        })
    }

    pub fn in_channels(&self) -> usize {
        self.cin
    }
    pub fn out_channels(&self) -> usize {
        self.cout
    }
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// x [N, Cin, H, W] -> [N, Cout, Ho, Wo].
    pub fn forward(&self, x: &Tensor, epi: &Epilogue) -> Result<Tensor> {
        let [n, c, _, _] = dims(x, "input")?;
        if c != self.cin && x.numel() != 0 {
            return shape_err(
                OP,
                format!("input has {c} channels, the conv expects {}", self.cin),
            );
        }
        let (ho, wo) = self.check_input(x)?;
        let out = Tensor::empty_for(x.gpu(), OP, &[n, self.cout, ho, wo], x.dtype())?;
        self.run(x, &out, 0, epi)?;
        Ok(out)
    }

    /// Reads the first `in_channels()` channels of `x` and writes channels
    /// `[out_offset, out_offset + Cout)` of `out`. `x` and `out` may be the
    /// same tensor when the channel ranges do not overlap.
    pub fn forward_into(
        &self,
        x: &Tensor,
        out: &Tensor,
        out_offset: usize,
        epi: &Epilogue,
    ) -> Result<()> {
        let [n, c, _, _] = dims(x, "input")?;
        if c < self.cin && x.numel() != 0 {
            return shape_err(
                OP,
                format!(
                    "input has {c} channels, the conv reads the first {}",
                    self.cin
                ),
            );
        }
        let (ho, wo) = self.check_input(x)?;
        let [on, oc, oh, ow] = dims(out, "output")?;
        check_dtype(out, x.dtype())?;
        if (on, oh, ow) != (n, ho, wo) || out_offset + self.cout > oc {
            return shape_err(
                OP,
                format!(
                    "output {:?} cannot hold [{n}, {}, {ho}, {wo}] at channel offset {out_offset}",
                    out.shape(),
                    self.cout
                ),
            );
        }
        if x.same_storage(out) && (out_offset < self.cin || (n > 1 && c != oc)) {
            return shape_err(
                OP,
                format!(
                    "in-place: the input channels [0, {}) overlap the output channels [{out_offset}, {})",
                    self.cin,
                    out_offset + self.cout
                ),
            );
        }
        self.run(x, out, out_offset, epi)
    }

    /// Validates `x` (non-empty, dtype, reflect padding) and returns (ho, wo).
    fn check_input(&self, x: &Tensor) -> Result<(usize, usize)> {
        if x.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: x.shape().to_vec(),
            });
        }
        check_dtype(x, self.weight.dtype())?;
        let [_, _, h, w] = dims(x, "input")?;
        let (ph, pw) = self.cfg.padding;
        if self.cfg.pad_mode == PadMode::Reflect && (ph >= h || pw >= w) {
            return shape_err(
                OP,
                format!(
                    "reflect padding ({ph}, {pw}) must be smaller than the input size ({h}, {w})"
                ),
            );
        }
        output_size(h, w, self.k, &self.cfg)
    }

    fn run(&self, x: &Tensor, out: &Tensor, out_offset: usize, epi: &Epilogue) -> Result<()> {
        let gpu = x.gpu();
        let [n, x_c, h, w] = dims(x, "input")?;
        let [_, out_c, ho, wo] = dims(out, "output")?;
        let cout = self.cout;
        epi.validate(OP, &[n, cout, ho, wo], cout)?;
        for t in [epi.slopes, epi.residual].into_iter().flatten() {
            check_dtype(t, x.dtype())?;
        }
        if epi.residual.is_some_and(|r| r.same_storage(out)) {
            return shape_err(OP, "the residual must not share storage with the output");
        }
        let hwo = ho * wo;
        let total = n * cout * hwo;
        if total > u32::MAX as usize || x.numel() > u32::MAX as usize {
            return Err(KernelError::TooLarge {
                op: OP,
                bytes: x.size_bytes().max(out.size_bytes()) as u64,
                limit: u32::MAX as u64,
            });
        }
        if let Some(u) = &self.wino
            && wino::run(self, u, x, out, out_offset, epi)?
        {
            return Ok(());
        }
        let alias = x.same_storage(out);
        let cin_g = self.cin / self.cfg.groups;
        let (kh, kw) = self.k;
        let tile = self.tile;
        let pix_blocks = (ho * wo.div_ceil(tile.px)).div_ceil(tile.wg);
        let co_blocks = cout.div_ceil(tile.co);
        let params = Params {
            n: n as u32,
            cin_g: cin_g as u32,
            h: h as u32,
            w: w as u32,
            cout: cout as u32,
            ho: ho as u32,
            wo: wo as u32,
            kh: kh as u32,
            kw: kw as u32,
            sh: self.cfg.stride.0 as u32,
            sw: self.cfg.stride.1 as u32,
            ph: self.cfg.padding.0 as u32,
            pw: self.cfg.padding.1 as u32,
            dh: self.cfg.dilation.0 as u32,
            dw: self.cfg.dilation.1 as u32,
            groups: self.cfg.groups as u32,
            cout_g: (cout / self.cfg.groups) as u32,
            x_c: x_c as u32,
            out_c: out_c as u32,
            out_off: out_offset as u32,
            slope_n: epi.slopes.map_or(1, |s| s.numel()) as u32,
            total: total as u32,
            cinp: cin_g.next_multiple_of(tile.ci_step()) as u32,
            pix_blocks: pix_blocks as u32,
            alpha: epi.alpha,
            beta: epi.beta,
            leaky: epi.act.param(),
            co_blocks: co_blocks as u32,
            ..Params::default()
        };
        let (entry, weights, tile, groups) = match &self.packed {
            Some(pk) => ("tiled", pk, tile, n * pix_blocks * co_blocks),
            None => ("generic", &self.weight, Tile::GENERIC, total.div_ceil(256)),
        };
        let geom = if entry == "tiled" {
            [kh, kw, self.cfg.stride.1, self.cfg.dilation.1]
        } else {
            [1; 4]
        };
        let kernel = kernel(
            entry,
            x.dtype(),
            self.cfg.pad_mode == PadMode::Reflect,
            alias,
            tile,
            geom,
        )
        .defines(epi.defines(self.bias.is_some()));
        let dummy = gpu.dummy();
        let flops = 2.0 * (total * cin_g * kh * kw) as f64;
        let bytes = (x.size_bytes() + weights.size_bytes() + total * x.dtype().size()) as f64;
        gpu.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                if alias { dummy } else { x.bind() },
                weights.bind(),
                self.bias.as_ref().map_or(dummy, |b| b.bind()),
                epi.slopes.map_or(dummy, |s| s.bind()),
                epi.residual.map_or(dummy, |r| r.bind()),
                out.bind(),
            ],
            gpu.grid(groups as u64)?,
            Cost::new(flops, bytes),
        )
    }
}

/// The kernel variant. `geom` = [KH, KW, SW, DW] for `tiled`.
fn kernel(
    entry: &'static str,
    dtype: DType,
    reflect: bool,
    alias: bool,
    t: Tile,
    geom: [usize; 4],
) -> Kernel<'static> {
    let u = |v: usize| format!("{v}u");
    Kernel::new(OP, expand(t, geom), dtype, BINDINGS)
        .entry(entry)
        .includes(&[EPILOGUE_WGSL])
        .defines([
            ("REFLECT", reflect.to_string()),
            ("ALIAS_X", alias.to_string()),
            ("PX", u(t.px)),
            ("CO", u(t.co)),
            ("WG", u(t.wg)),
            ("CI_STEP", u(t.ci_step())),
            // Not read by the shader: keys the pipeline cache on the
            // generated code, which the other defines do not determine.
            ("COOP", t.coop.to_string()),
            ("KX_INNER", t.kx_inner.to_string()),
            ("KH", u(geom[0])),
            ("KW", u(geom[1])),
        ])
}

/// `conv2d.wgsl` with the `//@` lines of `tiled` replaced by the unrolled
/// register tile for (tile, KW, SW, DW). Cached and leaked: a model uses a
/// handful of variants and pipelines need `&'static` source.
fn expand(t: Tile, [_, kw, sw, dw]: [usize; 4]) -> &'static str {
    type Cache = Mutex<HashMap<(Tile, [usize; 3]), &'static str>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (t, [kw, sw, dw]);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().expect("conv2d source cache").get(&key) {
        return s;
    }
    let (px, co4, steps) = (t.px, t.co / 4, t.ci_step());
    // Input positions of the row segment that some (pixel j, tap kx) reads.
    let mut used: Vec<usize> = (0..px)
        .flat_map(|j| (0..kw).map(move |kx| j * sw + kx * dw))
        .collect();
    used.sort_unstable();
    used.dedup();
    let mut acc = String::new();
    for j in 0..px {
        for c in 0..co4 {
            acc += &format!("    var a{j}_{c} = vec4<f32>(0.0);\n");
        }
    }
    let mut row = String::new();
    for e in &used {
        row += &format!(
            "        let cx{e} = coord(ix0 + {e}, p.w);\n        let ok{e} = cy.ok && cx{e}.ok;\n        \
             let o{e} = xb + select(0u, cy.i * p.w + cx{e}.i, ok{e});\n        let m{e} = select(0.0, 1.0, ok{e});\n"
        );
    }
    let mut body = String::new();
    for r in 0..steps {
        body += &format!("            let xo{r} = min(ci + {r}u, p.cin_g - 1u) * hw;\n");
        for e in &used {
            body += &format!("            let x{r}_{e} = load_x(o{e} + xo{r}) * m{e};\n");
        }
    }
    for kx in 0..kw {
        body += &format!("            let wi{kx} = wrow + ({kx}u * cinp + ci) * CO4;\n");
        if t.coop {
            for l in 0..(co4 * steps).div_ceil(8) {
                body += &format!(
                    "            let wl{kx}_{l} = vec4<f32>(wp[wi{kx} + {}u + lane]);\n",
                    l * 8
                );
            }
        }
        for r in 0..steps {
            for c in 0..co4 {
                let k = r * co4 + c;
                if t.coop {
                    body += &format!(
                        "            let w{kx}_{r}_{c} = subgroupBroadcast(wl{kx}_{}, {}u);\n",
                        k / 8,
                        k % 8
                    );
                } else {
                    body +=
                        &format!("            let w{kx}_{r}_{c} = vec4<f32>(wp[wi{kx} + {k}u]);\n");
                }
                if t.kx_inner {
                    continue;
                }
                for j in 0..px {
                    let e = j * sw + kx * dw;
                    body += &format!(
                        "            a{j}_{c} = fma(vec4<f32>(x{r}_{e}), w{kx}_{r}_{c}, a{j}_{c});\n"
                    );
                }
            }
        }
    }
    if t.kx_inner {
        // All taps of one accumulator in a row: it is loaded from and stored
        // to the spill slot once per KW FMAs instead of once per FMA.
        for r in 0..steps {
            for c in 0..co4 {
                for j in 0..px {
                    for kx in 0..kw {
                        let e = j * sw + kx * dw;
                        body += &format!(
                            "            a{j}_{c} = fma(vec4<f32>(x{r}_{e}), w{kx}_{r}_{c}, a{j}_{c});\n"
                        );
                    }
                }
            }
        }
    }
    let mut store = String::new();
    for j in 0..px {
        store += &format!("    if ox0 + {j}u < p.wo {{\n");
        for c in 0..co4 {
            store += &format!(
                "        store4(a{j}_{c}, n, co0 + {}u, q0 + {j}u);\n",
                c * 4
            );
        }
        store += "    }\n";
    }
    let src = SRC
        .replace("//@ACC\n", &acc)
        .replace("//@ROW\n", &row)
        .replace("//@BODY\n", &body)
        .replace("//@STORE\n", &store);
    let src = wino::expand(&src, t);
    let src: &'static str = Box::leak(src.into_boxed_str());
    cache.lock().expect("conv2d source cache").insert(key, src);
    src
}

/// Packs [Cout, Cin, KH, KW] into [Cout/CO][KH*KW][CinP][CO] on the GPU.
fn pack(weight: &Tensor, [cout, cin, kh, kw]: [usize; 4], tile: Tile) -> Result<Tensor> {
    let gpu = weight.gpu();
    let cinp = cin.next_multiple_of(tile.ci_step());
    let coutp = cout.next_multiple_of(tile.co);
    let total = kh * kw * cinp * coutp;
    let packed = Tensor::empty_for(
        gpu,
        OP,
        &[coutp / tile.co, kh * kw, cinp, tile.co],
        weight.dtype(),
    )?;
    let params = Params {
        cin_g: cin as u32,
        cout: cout as u32,
        kh: kh as u32,
        kw: kw as u32,
        total: total as u32,
        cinp: cinp as u32,
        ..Params::default()
    };
    let k = kernel("pack", weight.dtype(), false, false, tile, [1; 4])
        .defines(Epilogue::default().defines(false));
    let dummy = gpu.dummy();
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&params),
        &[weight.bind(), dummy, dummy, dummy, dummy, packed.bind()],
        gpu.grid(total.div_ceil(256) as u64)?,
        Cost::new(0.0, 2.0 * packed.size_bytes() as f64),
    )?;
    Ok(packed)
}

/// One-shot convolution: x [N, Cin, H, W], w [Cout, Cin/groups, KH, KW],
/// bias [Cout]; `y = alpha * act(conv + bias) + beta * residual`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
    epi: &Epilogue,
) -> Result<Tensor> {
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    Conv2d::new(w, bias, *cfg)?.forward(x, epi)
}

/// CPU reference without the epilogue: returns the output and its shape.
pub fn reference(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    wt: &[f32],
    [cout, cin_g, kh, kw]: [usize; 4],
    bias: Option<&[f32]>,
    cfg: &Conv2dConfig,
) -> (Vec<f32>, [usize; 4]) {
    let (ho, wo) = output_size(h, w, (kh, kw), cfg).expect("reference: bad shape");
    let g = cfg.groups;
    let cout_g = cout / g;
    let reflect = cfg.pad_mode == PadMode::Reflect;
    let at = |c: isize, size: usize| -> Option<usize> {
        let s = size as isize;
        if reflect {
            let r = if c < 0 { -c } else { c };
            Some((if r >= s { 2 * (s - 1) - r } else { r }) as usize)
        } else {
            (0..s).contains(&c).then_some(c as usize)
        }
    };
    let mut y = vec![0.0; n * cout * ho * wo];
    for b in 0..n {
        for co in 0..cout {
            let gi = co / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |bs| bs[co] as f64);
                    for ci in 0..cin_g {
                        let xc = gi * cin_g + ci;
                        for ky in 0..kh {
                            let iy = (oy * cfg.stride.0 + ky * cfg.dilation.0) as isize
                                - cfg.padding.0 as isize;
                            let Some(iy) = at(iy, h) else { continue };
                            for kx in 0..kw {
                                let ix = (ox * cfg.stride.1 + kx * cfg.dilation.1) as isize
                                    - cfg.padding.1 as isize;
                                let Some(ix) = at(ix, w) else { continue };
                                acc += x[((b * cin + xc) * h + iy) * w + ix] as f64
                                    * wt[((co * cin_g + ci) * kh + ky) * kw + kx] as f64;
                            }
                        }
                    }
                    y[((b * cout + co) * ho + oy) * wo + ox] = acc as f32;
                }
            }
        }
    }
    (y, [n, cout, ho, wo])
}

/// CPU reference of the epilogue over an NCHW output (bias already added).
pub fn reference_epilogue(
    y: &mut [f32],
    shape: [usize; 4],
    epi: &Epilogue,
    slopes: &[f32],
    residual: &[f32],
) {
    let hw = shape[2] * shape[3];
    for (i, v) in y.iter_mut().enumerate() {
        let c = (i / hw) % shape[1];
        let s = if epi.act == Activation::PRelu {
            slopes[if slopes.len() == 1 { 0 } else { c }]
        } else {
            0.0
        };
        *v = epi.apply(*v, 0.0, s, residual.get(i).copied().unwrap_or(0.0));
    }
}

/// Times `iters` forward passes of a 3x3 (padding 1) conv Cin -> Cout on an
/// N=1 `size`x`size` input and returns GFLOP/s. For benches and the
/// ignored timing test.
pub fn bench(
    gpu: &Gpu,
    cin: usize,
    cout: usize,
    size: usize,
    dtype: DType,
    iters: usize,
) -> Result<f64> {
    let x = Tensor::from_f32(
        gpu,
        &[1, cin, size, size],
        &vec![0.5; cin * size * size],
        dtype,
    )?;
    let w = Tensor::from_f32(gpu, &[cout, cin, 3, 3], &vec![0.01; cout * cin * 9], dtype)?;
    let b = Tensor::from_f32(gpu, &[cout], &vec![0.1; cout], dtype)?;
    let layer = Conv2d::new(&w, Some(&b), Conv2dConfig::same3x3())?;
    let epi = Epilogue::act(Activation::LeakyRelu(0.2));
    layer.forward(&x, &epi)?;
    gpu.sync()?;
    let t = std::time::Instant::now();
    for _ in 0..iters {
        layer.forward(&x, &epi)?;
    }
    gpu.sync()?;
    let secs = t.elapsed().as_secs_f64();
    Ok(2.0 * (cin * cout * 9 * size * size * iters) as f64 / secs / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    struct Case {
        x: [usize; 4],
        cout: usize,
        k: (usize, usize),
        cfg: Conv2dConfig,
        bias: bool,
    }

    fn cfg(s: usize, p: usize, d: usize, g: usize, m: PadMode) -> Conv2dConfig {
        Conv2dConfig {
            stride: (s, s),
            padding: (p, p),
            dilation: (d, d),
            groups: g,
            pad_mode: m,
        }
    }

    fn cases() -> Vec<Case> {
        use PadMode::{Reflect as R, Zeros as Z};
        let c = |x, cout, k, cfg, bias| Case {
            x,
            cout,
            k: (k, k),
            cfg,
            bias,
        };
        vec![
            c([1, 3, 13, 17], 5, 3, cfg(1, 1, 1, 1, Z), true),
            c([1, 3, 13, 17], 64, 1, cfg(1, 0, 1, 1, Z), true),
            c([2, 5, 13, 17], 7, 5, cfg(2, 2, 1, 1, Z), false),
            c([1, 3, 13, 17], 4, 7, cfg(1, 3, 1, 1, R), true),
            c([1, 64, 9, 11], 64, 3, cfg(1, 2, 2, 1, Z), true),
            c([1, 5, 13, 17], 3, 3, cfg(1, 4, 4, 1, Z), false),
            c([1, 5, 13, 17], 6, 3, cfg(1, 4, 4, 1, R), true),
            c([2, 5, 13, 17], 9, 3, cfg(2, 2, 2, 1, R), true),
            c([1, 4, 13, 17], 6, 3, cfg(1, 1, 1, 2, Z), true),
            c([2, 5, 13, 17], 5, 3, cfg(1, 1, 1, 5, R), true),
            c([1, 6, 13, 17], 12, 5, cfg(2, 3, 1, 3, Z), false),
            c([1, 3, 1, 1], 5, 1, cfg(1, 0, 1, 1, Z), true),
            c([1, 64, 16, 16], 32, 3, cfg(1, 1, 1, 1, R), true),
            c([1, 3, 8, 10], 5, 2, cfg(3, 1, 1, 1, Z), true),
        ]
        .into_iter()
        .map(|mut c| {
            if c.k.0 == 2 {
                c.k = (2, 3);
            }
            c
        })
        .collect()
    }

    #[test]
    fn matches_reference_on_odd_shapes() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for (i, c) in cases().iter().enumerate() {
                let ws = [c.cout, c.x[1] / c.cfg.groups, c.k.0, c.k.1];
                let seed = i as u64 * 7;
                let (x, xv) = upload(
                    &gpu,
                    &c.x,
                    &rand_vec(c.x.iter().product(), seed, -1.0, 1.0),
                    dtype,
                );
                let (w, wv) = upload(
                    &gpu,
                    &ws,
                    &rand_vec(ws.iter().product(), seed + 1, -0.5, 0.5),
                    dtype,
                );
                let (b, bv) = upload(
                    &gpu,
                    &[c.cout],
                    &rand_vec(c.cout, seed + 2, -1.0, 1.0),
                    dtype,
                );
                let bias = c.bias.then_some(&b);
                let got = conv2d(&x, &w, bias, &c.cfg, &Epilogue::default()).unwrap();
                let (want, shape) = reference(&xv, c.x, &wv, ws, c.bias.then_some(&bv[..]), &c.cfg);
                assert_eq!(got.shape(), &shape[..]);
                let what = format!("case {i} {:?} k{:?} {:?} {dtype}", c.x, c.k, c.cfg);
                assert_close(&what, &got.to_f32_vec().unwrap(), &want, tol(dtype));
            }
        }
    }

    #[test]
    fn every_epilogue_part() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            // groups 1 (tiled kernel) and groups 2 (generic kernel).
            for groups in [1, 2] {
                let xs = [2, 6, 9, 11];
                let cout = 10;
                let ws = [cout, 6 / groups, 3, 3];
                let c = Conv2dConfig {
                    groups,
                    ..Conv2dConfig::same3x3()
                };
                let (x, xv) = upload(&gpu, &xs, &rand_vec(2 * 6 * 99, 1, -1.0, 1.0), dtype);
                let (w, wv) = upload(
                    &gpu,
                    &ws,
                    &rand_vec(ws.iter().product(), 2, -0.5, 0.5),
                    dtype,
                );
                let (b, bv) = upload(&gpu, &[cout], &rand_vec(cout, 3, -1.0, 1.0), dtype);
                let (s, sv) = upload(&gpu, &[cout], &rand_vec(cout, 4, 0.0, 0.5), dtype);
                let (s1, s1v) = upload(&gpu, &[1], &[0.3], dtype);
                let (r, rv) = upload(
                    &gpu,
                    &[2, cout, 9, 11],
                    &rand_vec(2 * cout * 99, 5, -1.0, 1.0),
                    dtype,
                );
                let layer = Conv2d::new(&w, Some(&b), c).unwrap();
                let epis = [
                    (Epilogue::default(), &sv),
                    (Epilogue::act(Activation::LeakyRelu(0.2)), &sv),
                    (Epilogue::prelu(&s), &sv),
                    (Epilogue::prelu(&s1), &s1v),
                    (
                        Epilogue::act(Activation::LeakyRelu(0.2)).residual(&r, 0.2, 1.0),
                        &sv,
                    ),
                    (Epilogue::act(Activation::Silu).residual(&r, 1.5, -0.5), &sv),
                ];
                let (base, shape) = reference(&xv, xs, &wv, ws, Some(&bv), &c);
                for (k, (epi, slopes)) in epis.iter().enumerate() {
                    let got = layer.forward(&x, epi).unwrap().to_f32_vec().unwrap();
                    let mut want = base.clone();
                    reference_epilogue(&mut want, shape, epi, slopes, &rv);
                    assert_close(
                        &format!("epilogue {k} groups {groups} {dtype}"),
                        &got,
                        &want,
                        tol(dtype),
                    );
                }
            }
        }
    }

    #[test]
    fn forward_into_prefix_and_offset() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for groups in [1, 2] {
                // x has 10 channels; the conv reads the first 6.
                let (x, xv) = upload(&gpu, &[1, 10, 7, 9], &rand_vec(630, 8, -1.0, 1.0), dtype);
                let ws = [4, 6 / groups, 3, 3];
                let (w, wv) = upload(
                    &gpu,
                    &ws,
                    &rand_vec(ws.iter().product(), 9, -0.5, 0.5),
                    dtype,
                );
                let (r, rv) = upload(&gpu, &[1, 4, 7, 9], &rand_vec(252, 10, -1.0, 1.0), dtype);
                let c = Conv2dConfig {
                    groups,
                    ..Conv2dConfig::same3x3()
                };
                let layer = Conv2d::new(&w, None, c).unwrap();
                let (out, outv) =
                    upload(&gpu, &[1, 12, 7, 9], &rand_vec(756, 11, -1.0, 1.0), dtype);
                let epi = Epilogue::act(Activation::LeakyRelu(0.1)).residual(&r, 0.5, 2.0);
                layer.forward_into(&x, &out, 5, &epi).unwrap();
                let (mut y, shape) = reference(&xv[..6 * 63], [1, 6, 7, 9], &wv, ws, None, &c);
                reference_epilogue(&mut y, shape, &epi, &[], &rv);
                let mut want = outv.clone();
                want[5 * 63..9 * 63].copy_from_slice(&y);
                assert_close(
                    &format!("forward_into {dtype}"),
                    &out.to_f32_vec().unwrap(),
                    &want,
                    tol(dtype),
                );

                // In place: read channels [0, 6) of `x`, write [6, 10).
                layer.forward_into(&x, &x, 6, &Epilogue::default()).unwrap();
                let (y, _) = reference(&xv[..6 * 63], [1, 6, 7, 9], &wv, ws, None, &c);
                let mut want = xv.clone();
                want[6 * 63..10 * 63].copy_from_slice(&y);
                assert_close(
                    &format!("in place {dtype}"),
                    &x.to_f32_vec().unwrap(),
                    &want,
                    tol(dtype),
                );
                assert!(layer.forward_into(&x, &x, 3, &Epilogue::default()).is_err());
                assert!(
                    layer
                        .forward_into(&x, &out, 9, &Epilogue::default())
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = DType::F32;
        let x = Tensor::zeros(&gpu, &[1, 3, 5, 5], f).unwrap();
        let w = Tensor::zeros(&gpu, &[4, 3, 3, 3], f).unwrap();
        let w2 = Tensor::zeros(&gpu, &[4, 2, 3, 3], f).unwrap();
        let d = Conv2dConfig::default();
        let shape =
            |r: Result<Tensor>| assert!(matches!(r, Err(KernelError::Shape { .. })), "{r:?}");
        shape(conv2d(&x, &w2, None, &d, &Epilogue::default()));
        let refl = |p| Conv2dConfig {
            pad_mode: PadMode::Reflect,
            ..Conv2dConfig::padded(p)
        };
        shape(conv2d(&x, &w, None, &refl(5), &Epilogue::default()));
        assert!(conv2d(&x, &w, None, &refl(4), &Epilogue::default()).is_ok());
        let small = Tensor::zeros(&gpu, &[1, 3, 2, 2], f).unwrap();
        shape(conv2d(&small, &w, None, &d, &Epilogue::default()));
        let bad_groups = Conv2dConfig { groups: 2, ..d };
        shape(conv2d(&x, &w, None, &bad_groups, &Epilogue::default()));
        let empty = Tensor::empty(&gpu, &[1, 3, 0, 5], f).unwrap();
        let r = conv2d(&empty, &w, None, &d, &Epilogue::default());
        assert!(matches!(r, Err(KernelError::Empty { .. })), "{r:?}");
        let bias = Tensor::zeros(&gpu, &[3], f).unwrap();
        shape(conv2d(&x, &w, Some(&bias), &d, &Epilogue::default()));
        let res = Tensor::zeros(&gpu, &[1, 4, 5, 5], f).unwrap();
        shape(conv2d(
            &x,
            &w,
            None,
            &d,
            &Epilogue::default().residual(&res, 1.0, 1.0),
        ));
        shape(conv2d(&x, &w, None, &d, &Epilogue::act(Activation::PRelu)));
        if gpu.caps().shader_f16 {
            let xh = Tensor::zeros(&gpu, &[1, 3, 5, 5], DType::F16).unwrap();
            let r = conv2d(&xh, &w, None, &d, &Epilogue::default());
            assert!(matches!(r, Err(KernelError::DType { .. })), "{r:?}");
        }
    }

    #[test]
    fn winograd_matches_reference() {
        let Some(gpu) = test_gpu() else { return };
        use PadMode::{Reflect as R, Zeros as Z};
        // (x shape, cout, padding, pad mode, dilation)
        let cases = [
            ([1, 5, 13, 17], 7, 1, Z, 1),
            ([2, 16, 9, 11], 33, 1, R, 1),
            ([1, 3, 6, 6], 5, 0, Z, 1),
            ([1, 64, 16, 16], 32, 1, Z, 1),
            ([1, 17, 1, 1], 20, 1, Z, 1),
            ([1, 4, 7, 5], 4, 2, Z, 1),
            ([1, 6, 5, 23], 40, 1, R, 1),
            ([1, 16, 10, 20], 24, 1, Z, 1),
            ([1, 16, 19, 21], 20, 2, Z, 2),
            ([2, 16, 11, 13], 17, 2, R, 2),
            ([1, 16, 15, 14], 16, 1, Z, 2),
            ([1, 24, 32, 32], 40, 4, Z, 4),
            ([1, 8, 12, 9], 16, 8, Z, 8),
        ];
        // Bands as the binding limit sets them, then forced bands of 2 tile
        // rows (the last one partial where the tile-row count is odd).
        for budget in [None, Some(2)] {
            wino::BAND_ROWS.with(|c| c.set(budget));
            for dtype in test_dtypes(&gpu) {
                for (i, &(xs, cout, pad, mode, d)) in cases.iter().enumerate() {
                    let cin = xs[1];
                    let ws = [cout, cin, 3, 3];
                    let c = Conv2dConfig {
                        pad_mode: mode,
                        padding: (pad, pad),
                        ..Conv2dConfig::dilated(d)
                    };
                    let seed = 100 + i as u64 * 5;
                    let numel: usize = xs.iter().product();
                    let (x, xv) = upload(&gpu, &xs, &rand_vec(numel, seed, -1.0, 1.0), dtype);
                    let (w, wv) = upload(
                        &gpu,
                        &ws,
                        &rand_vec(cin * cout * 9, seed + 1, -0.5, 0.5),
                        dtype,
                    );
                    let (b, bv) =
                        upload(&gpu, &[cout], &rand_vec(cout, seed + 2, -1.0, 1.0), dtype);
                    let tile = Tile::choose(&gpu, cout);
                    let layer = Conv2d::build(&w, Some(&b), c, tile, true).unwrap();
                    assert!(layer.wino.is_some());
                    let (mut want, shape) = reference(&xv, xs, &wv, ws, Some(&bv), &c);
                    let [_, _, ho, wo] = shape;
                    let (r, rv) = upload(
                        &gpu,
                        &shape,
                        &rand_vec(want.len(), seed + 3, -1.0, 1.0),
                        dtype,
                    );
                    // Odd cases: PReLU with per-channel slopes; even: leaky ReLU.
                    let (sl, slv) =
                        upload(&gpu, &[cout], &rand_vec(cout, seed + 5, 0.0, 0.5), dtype);
                    let epi = if i % 2 == 1 {
                        Epilogue::prelu(&sl)
                    } else {
                        Epilogue::act(Activation::LeakyRelu(0.2))
                    }
                    .residual(&r, 0.5, 1.0);
                    reference_epilogue(&mut want, shape, &epi, &slv, &rv);
                    let what = format!(
                        "winograd case {i} {xs:?} -> {cout} pad {pad} dil {d} {mode:?} {dtype} band rows \
                     {budget:?}"
                    );
                    let got = layer.forward(&x, &epi).unwrap();
                    assert_close(&what, &got.to_f32_vec().unwrap(), &want, tol(dtype));
                    // forward_into a wider output at a channel offset.
                    let oc = cout + 3;
                    let on = xs[0] * oc * ho * wo;
                    let (out, outv) = upload(
                        &gpu,
                        &[xs[0], oc, ho, wo],
                        &rand_vec(on, seed + 4, -1.0, 1.0),
                        dtype,
                    );
                    layer.forward_into(&x, &out, 2, &epi).unwrap();
                    let mut full = outv.clone();
                    let hw = ho * wo;
                    for b in 0..xs[0] {
                        let dst = (b * oc + 2) * hw;
                        full[dst..dst + cout * hw]
                            .copy_from_slice(&want[b * cout * hw..(b + 1) * cout * hw]);
                    }
                    assert_close(
                        &format!("{what} into"),
                        &out.to_f32_vec().unwrap(),
                        &full,
                        tol(dtype),
                    );
                }
            }
        }
        wino::BAND_ROWS.with(|c| c.set(None));
    }

    /// A/B timing under contention: variants interleaved, minimum times.
    /// `EASEL_CONV_SWEEP="px,co;px,co"`, `EASEL_CONV_SHAPE=cin,cout,size,dil`.
    #[test]
    #[ignore = "timing for kernel tuning, not a check"]
    fn conv2d_sweep() {
        let Some(gpu) = test_gpu() else { return };
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let nums =
            |s: &str| -> Vec<usize> { s.split(',').map(|t| t.trim().parse().unwrap()).collect() };
        let sh = nums(&env("EASEL_CONV_SHAPE", "64,64,128,1"));
        let (cin, cout, size, d) = (sh[0], sh[1], sh[2], sh[3]);
        let dtype = if env("EASEL_CONV_F16", "0") == "1" {
            DType::F16
        } else {
            DType::F32
        };
        let variants: Vec<Vec<usize>> = env("EASEL_CONV_SWEEP", "8,32;16,32")
            .split(';')
            .map(nums)
            .collect();
        let x = Tensor::from_f32(
            &gpu,
            &[1, cin, size, size],
            &rand_vec(cin * size * size, 1, -1.0, 1.0),
            dtype,
        )
        .unwrap();
        let w = Tensor::from_f32(
            &gpu,
            &[cout, cin, 3, 3],
            &rand_vec(cout * cin * 9, 2, -0.1, 0.1),
            dtype,
        )
        .unwrap();
        let b = Tensor::from_f32(&gpu, &[cout], &vec![0.1; cout], dtype).unwrap();
        let epi = Epilogue::act(Activation::LeakyRelu(0.2));
        let layers: Vec<Conv2d> = variants
            .iter()
            .map(|v| {
                let t = std::time::Instant::now();
                let tile = Tile {
                    px: v[0],
                    co: v[1],
                    wg: 64,
                    coop: true,
                    kx_inner: v.get(2) == Some(&1),
                };
                let wv = v.get(3) == Some(&1);
                let l = Conv2d::build(&w, Some(&b), Conv2dConfig::dilated(d), tile, wv).unwrap();
                let y = l.forward(&x, &epi).unwrap();
                gpu.sync().unwrap();
                println!(
                    "{v:?}: first run (compile) {:.2}s",
                    t.elapsed().as_secs_f64()
                );
                drop(y);
                l
            })
            .collect();
        let mut best = vec![f64::MAX; layers.len()];
        // Process CPU seconds per variant: on lavapipe the kernels run on
        // this process's threads, so CPU time is far less sensitive to other
        // load on the machine than wall time.
        let mut cpu = vec![0.0; layers.len()];
        let rounds: usize = env("EASEL_CONV_ROUNDS", "5").parse().unwrap();
        for _ in 0..rounds {
            for (i, l) in layers.iter().enumerate() {
                let t = std::time::Instant::now();
                let c = crate::testing::process_cpu_seconds().unwrap_or(0.0);
                l.forward(&x, &epi).unwrap();
                gpu.sync().unwrap();
                best[i] = best[i].min(t.elapsed().as_secs_f64());
                cpu[i] += crate::testing::process_cpu_seconds().unwrap_or(0.0) - c;
            }
        }
        let flops = 2.0 * (cin * cout * 9 * size * size) as f64;
        for ((v, t), c) in variants.iter().zip(&best).zip(&cpu) {
            println!(
                "{cin}->{cout} {size}^2 d{d} {dtype} {v:?}: {:.2} ms {:.1} GFLOP/s, \
                 {:.1} CPU-ms per run",
                t * 1e3,
                flops / t / 1e9,
                c * 1e3 / rounds as f64
            );
        }
        if let Some(r) = gpu.profile_report() {
            println!("{r}");
        }
        println!(
            "loadavg {}",
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
        );
    }

    /// `cargo test -p easel-kernels --release conv2d_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing for kernel tuning, not a check"]
    fn conv2d_timing() {
        let Some(gpu) = test_gpu() else { return };
        println!("{:?} tile {:?}", gpu.caps(), Tile::choose(&gpu, 64));
        // EASEL_CONV_BENCH=cin,cout,size,iters runs one f32 shape only.
        let one: Option<Vec<usize>> = std::env::var("EASEL_CONV_BENCH")
            .ok()
            .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect());
        let (shapes, iters, dtypes) = match one {
            Some(v) if v.len() == 4 => (vec![(v[0], v[1], v[2])], v[3], vec![DType::F32]),
            _ => (
                vec![(64, 64, 128), (64, 64, 256), (192, 32, 64)],
                5,
                test_dtypes(&gpu),
            ),
        };
        for dtype in dtypes {
            for &(cin, cout, size) in &shapes {
                let g = bench(&gpu, cin, cout, size, dtype, iters).unwrap();
                println!("conv2d 3x3 {cin}->{cout} {size}^2 {dtype}: {g:.1} GFLOP/s");
            }
        }
    }
}
