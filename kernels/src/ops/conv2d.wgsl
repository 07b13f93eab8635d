// 2-D convolution, NCHW, PyTorch semantics, with the fused epilogue
//   y = alpha * act(acc + bias[c]) + beta * residual.
// Entry points (they share the bindings below; naga only checks binding
// collisions per entry point, so `w` and `wp` can both sit at binding 2):
//   generic: one output element per invocation, raw [Cout, Cin/g, KH, KW]
//            weights; any groups/stride/dilation. The fallback for rare shapes.
//   tiled:   groups == 1, weights pre-packed by `pack`. Each invocation
//            keeps PX consecutive pixels of a row x CO output channels of
//            accumulators. The output-channel block comes from the workgroup
//            id, so all lanes read the same weights (a broadcast from cache on
//            GPUs; on lavapipe see COOP); each input value is reused for CO
//            channels and, through the row segment, for all KW taps.
//   pack:    writes the packed weights into `out`.
// Prelude constants: ACT, HAS_BIAS, HAS_RES (epilogue), REFLECT (pad mode),
// ALIAS_X (input read from `out`: dense blocks reading a channel prefix of the
// buffer they write into), and for `tiled`: PX, CO, WG, KH, KW, SW, DW (kernel
// size, stride and dilation along x), CI_STEP, COOP.

struct Params {
    n: u32, cin_g: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, ph: u32,
    pw: u32, dh: u32, dw: u32, groups: u32,
    cout_g: u32, x_c: u32, out_c: u32, out_off: u32,
    slope_n: u32, total: u32, cinp: u32, pix_blocks: u32,
    alpha: f32, beta: f32, leaky: f32, co_blocks: u32,
    th: u32, twp: u32, t8: u32, coutp: u32,
    ty0: u32, dil: u32, ths: u32, tws: u32,
    twi: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read> wp: array<T4>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> slopes: array<T>;
@group(0) @binding(5) var<storage, read> res: array<T>;
@group(0) @binding(6) var<storage, read_write> out: array<T>;

fn load_x(i: u32) -> f32 {
    if ALIAS_X { return f32(out[i]); }
    return f32(x[i]);
}

// Input coordinate for a padded coordinate `c` in [-pad, size - 1 + pad];
// `ok` is false outside the image for zero padding.
struct Coord { i: u32, ok: bool }
fn coord(c: i32, size: u32) -> Coord {
    let s = i32(size);
    if REFLECT {
        // PyTorch 'reflect': pad < size, so one reflection is enough.
        var r = select(c, -c, c < 0);
        r = select(r, 2 * (s - 1) - r, r >= s);
        return Coord(u32(r), true);
    }
    let ok = c >= 0 && c < s;
    return Coord(select(0u, u32(c), ok), ok);
}

// Writes one finished accumulator for output (n, co, pixel q).
fn store(acc: f32, n: u32, co: u32, q: u32) {
    let hwo = p.ho * p.wo;
    var v = acc;
    if HAS_BIAS { v += f32(bias[co]); }
    var s = p.leaky;
    if ACT == 3u { s = f32(slopes[select(co, 0u, p.slope_n == 1u)]); }
    v = p.alpha * activate(v, s);
    if HAS_RES { v += p.beta * f32(res[(n * p.cout + co) * hwo + q]); }
    out[(n * p.out_c + p.out_off + co) * hwo + q] = T(v);
}

@compute @workgroup_size(256)
fn generic(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let hwo = p.ho * p.wo;
    let q = i % hwo;
    let co = (i / hwo) % p.cout;
    let n = i / (hwo * p.cout);
    let oy = q / p.wo;
    let ox = q % p.wo;
    let g = co / p.cout_g;
    let hw = p.h * p.w;
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xb = (n * p.x_c + g * p.cin_g + ci) * hw;
        let wb = (co * p.cin_g + ci) * p.kh * p.kw;
        for (var ky = 0u; ky < p.kh; ky++) {
            let cy = coord(i32(oy * p.sh + ky * p.dh) - i32(p.ph), p.h);
            for (var kx = 0u; kx < p.kw; kx++) {
                let cx = coord(i32(ox * p.sw + kx * p.dw) - i32(p.pw), p.w);
                if cy.ok && cx.ok {
                    acc += load_x(xb + cy.i * p.w + cx.i) * f32(w[wb + ky * p.kw + kx]);
                }
            }
        }
    }
    store(acc, n, co, q);
}

// Packs raw weights [Cout, Cin, KH, KW] (x) into [Cout/CO][KH*KW][CinP][CO]
// (out): for one tap and input channel, the CO weights of a block are one
// contiguous run. Channels past Cout / Cin are zero.
@compute @workgroup_size(256)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let cinp = p.cinp; // packed input channels (a multiple of CI_STEP)
    let c = i % CO;
    let ci = (i / CO) % cinp;
    let tap = (i / (CO * cinp)) % (p.kh * p.kw);
    let co = (i / (CO * cinp * p.kh * p.kw)) * CO + c;
    var v = T(0.0);
    if co < p.cout && ci < p.cin_g { v = x[(co * p.cin_g + ci) * p.kh * p.kw + tap]; }
    out[i] = v;
}

const CO4: u32 = CO / 4u;

// Writes the 4 channels [co, co + 4) of pixel q that exist.
fn store4(a: vec4<f32>, n: u32, co: u32, q: u32) {
    for (var e = 0u; e < 4u; e++) {
        if co + e < p.cout { store(a[e], n, co + e, q); }
    }
}

// The register tile is unrolled by the launcher (conv2d.rs, `expand`): the
// `//@` lines below are replaced by straight-line code over named variables
// (a{j}_{c} accumulators, x{r}_{e} inputs, w{kx}_{r}_{c} weights). Loops over
// private arrays are not reliably unrolled by every driver (lavapipe then
// spills them to scratch memory and runs ~50x slower).
@compute @workgroup_size(WG)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    // COOP: lavapipe runs 8 consecutive invocations as one SIMD subgroup.
    let lane = lid % 8u;
    // Workgroup order: output-channel block fastest, so neighbouring
    // workgroups read the same input rows while they are in cache.
    let g = wid.x + wid.y * nwg.x;
    let cb = g % p.co_blocks;
    let pb = (g / p.co_blocks) % p.pix_blocks;
    let n = min(g / (p.co_blocks * p.pix_blocks), p.n - 1u);
    let hw = p.h * p.w;
    let xb = n * p.x_c * hw;
    // This invocation computes PX consecutive outputs of one row, so the
    // input row segment it loads serves all KW taps.
    let tw = (p.wo + PX - 1u) / PX;
    let t = min(pb * WG + lid, p.ho * tw - 1u);
    let oy = t / tw;
    let ox0 = (t % tw) * PX;
    let iy0 = i32(oy * p.sh) - i32(p.ph);
    let ix0 = i32(ox0 * p.sw) - i32(p.pw);
    let cinp = p.cinp;
//@ACC
    for (var ky = 0u; ky < KH; ky++) {
        let cy = coord(iy0 + i32(ky * p.dh), p.h);
//@ROW
        // Weight index of (block cb, tap (ky, 0), ci 0), in vec4s.
        let wrow = (cb * KH * KW + ky * KW) * cinp * CO4;
        for (var ci = 0u; ci < p.cin_g; ci += CI_STEP) {
//@BODY
        }
    }
    if g >= p.co_blocks * p.pix_blocks * p.n || pb * WG + lid >= p.ho * tw { return; }
    let q0 = oy * p.wo + ox0;
    let co0 = cb * CO;
//@STORE
}

// ---- Winograd F(4x4, 3x3): stride 1, groups 1, any dilation ----
// With U = G g G^T (6x6 per (co, ci), made once by `wtrans`) and
// V = B^T d B (6x6 per (ci, 4x4 output tile), `wtin`), each of the 36 points t
// is a plain GEMM M[t] = U[t] V[t] over ci (`wgemm`), and `wtout` maps the
// 6x6 M of a tile back to 4x4 outputs: A^T M A, then the epilogue. 4x fewer
// multiplies than the direct conv. Intermediates are f32 whatever T is.
// Layouts (floats): U [Cout/CO][36][CinP][CO], V [36][CinP][T8],
// M [36][T8][CoutP], with T8 the tile count padded to 8 (rows of TWP tiles).
@group(0) @binding(1) var<storage, read> fin4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wu: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> fout: array<f32>;
@group(0) @binding(6) var<storage, read_write> fout4: array<vec4<f32>>;
// `wtout4`: rows of 4 pixels as one vector (output width a multiple of 4).
@group(0) @binding(5) var<storage, read> res4: array<T4>;
@group(0) @binding(6) var<storage, read_write> out4: array<T4>;

// U for one (co, ci) of the padded [CoutP, CinP]; zero outside the weights.
@compute @workgroup_size(256)
fn wtrans(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let ci = i % p.cinp;
    let co = i / p.cinp;
    let ok = co < p.cout && ci < p.cin_g;
    let b = select(0u, (co * p.cin_g + ci) * 9u, ok);
    let m = select(0.0, 1.0, ok);
    let ub = ((co / CO) * 36u * p.cinp + ci) * CO + co % CO;
    let ts = p.cinp * CO;
//@WTRANS
}

// Where input-transform invocation i works: 4 horizontally adjacent tiles
// (group g4) of band tile row ty, channel ci of image n. Tile rows are
// processed in bands of p.th rows starting at p.ty0, so that V and M fit one
// binding.
struct TileIn {
    g4: u32,
    gy: u32,    // tile row in the whole image (p.ty0 + band row)
    xb: u32,    // first element of the (n, ci) input plane
    vb: u32,    // V vec4 of transform point 0 for these 4 tiles
    ts: u32,    // V vec4s between transform points
}

fn tile_in(i: u32) -> TileIn {
    let q4 = p.twp / 4u;
    let g4 = i % q4;
    let ty = (i / q4) % p.th;
    let ci = (i / (q4 * p.th)) % p.cin_g;
    let n = i / (q4 * p.th * p.cin_g);
    return TileIn(
        g4,
        p.ty0 + ty,
        (n * p.x_c + ci) * p.h * p.w,
        (ci * p.t8 + (n * p.th + ty) * p.twp + g4 * 4u) / 4u,
        p.cinp * p.t8 / 4u,
    );
}

// V for 4 horizontally adjacent tiles of one (n, ci): each vec4 holds the
// same transform point of the 4 tiles, so stores are whole vec4s.
@compute @workgroup_size(256)
fn wtin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let ti = tile_in(i);
    let xb = ti.xb;
    let vb = ti.vb;
    let ts = ti.ts;
    let iy0 = i32(ti.gy * 4u) - i32(p.ph);
    // Padding tiles read past the padded image: clamp the index, mask the value.
    let ix0 = i32(ti.g4 * 16u) - i32(p.pw);
//@WTIN
}

// `wtin` for zero padding 1 along x and an input width that is a multiple
// of 4: the row segment is 6 aligned vectors, each wholly inside or outside
// the image (lavapipe: 36 loads per invocation instead of 108).
@group(0) @binding(1) var<storage, read> x4: array<T4>;
@compute @workgroup_size(256)
fn wtin4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let ti = tile_in(i);
    let xb = ti.xb;
    let vb = ti.vb;
    let ts = ti.ts;
    let iy0 = i32(ti.gy * 4u) - i32(p.ph);
    // Vector index of pixel g4 * 16 - 4: the segment starts 3 pixels in.
    let a4 = i32(ti.g4 * 4u) - 1;
    let w4 = p.w / 4u;
//@WTIN4
}

// `wtin` for dilation d > 1: the 4 tiles of an invocation may lie in
// different phases, so each reads its own 6 columns, d pixels apart.
@compute @workgroup_size(256)
fn wtind(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let ti = tile_in(i);
    let xb = ti.xb;
    let vb = ti.vb;
    let ts = ti.ts;
    let g4 = ti.g4;
    let iy0 = i32(p.dil * 4u * (ti.gy % p.ths) + ti.gy / p.ths) - i32(p.ph);
    let d = i32(p.dil);
//@WTIND
}

// M[t] for PX consecutive tiles x CO output channels per invocation; as in
// `tiled`, the channel block comes from the workgroup so weights are shared.
@compute @workgroup_size(WG)
fn wgemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let lane = lid % 8u;
    let g = wid.x + wid.y * nwg.x;
    let cb = g % p.co_blocks;
    let tb = (g / p.co_blocks) % p.pix_blocks;
    let tt = g / (p.co_blocks * p.pix_blocks);
    let t = min(tt, 35u);
    let tile0 = (tb * WG + lid) * PX;
    let tl = min(tile0, p.t8 - PX);
    let vb = (t * p.cinp * p.t8 + tl) / 4u;
    let t84 = p.t8 / 4u;
    let wb = (cb * 36u + t) * p.cinp * CO4;
//@WACC
    for (var ci = 0u; ci < p.cin_g; ci++) {
//@WBODY
    }
    if tt >= 36u || tile0 >= p.t8 { return; }
    let mb = (t * p.t8 + tile0) * (p.coutp / 4u) + cb * CO4;
//@WSTORE
}

// Output tile (4x4 pixels x 4 channels) from its 36 M vec4s, with the epilogue.
@compute @workgroup_size(256)
fn wtout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let c4n = p.coutp / 4u;
    let c4 = i % c4n;
    let tx = (i / c4n) % p.twi;
    let ty = (i / (c4n * p.twi)) % p.th;
    let n = i / (c4n * p.twi * p.th);
    let mb = ((n * p.th + ty) * p.twp + tx) * c4n + c4;
    let ts = p.t8 * c4n;
    // Dilation d: tiles are grouped by phase (output row mod d, column mod
    // d); a tile's 4x4 outputs sit d pixels apart (d = 1: plain tiles).
    let gy = p.ty0 + ty;
    let oy = p.dil * 4u * (gy % p.ths) + gy / p.ths;
    let ox = p.dil * 4u * (tx % p.tws) + tx / p.tws;
    let co = c4 * 4u;
//@WTOUT
}

// Four consecutive pixels q..q+3 (q a multiple of 4) of channel co, with
// the epilogue; `b` and `s` are the channel's bias and activation slope.
fn wstore4(a: vec4<f32>, n: u32, co: u32, q: u32, b: f32, s: f32) {
    let hwo = p.ho * p.wo;
    let v = a + b;
    var r = p.alpha * vec4<f32>(activate(v.x, s), activate(v.y, s), activate(v.z, s),
                                activate(v.w, s));
    if HAS_RES { r += p.beta * vec4<f32>(res4[((n * p.cout + co) * hwo + q) / 4u]); }
    out4[((n * p.out_c + p.out_off + co) * hwo + q) / 4u] = T4(r);
}

// `wtout` for outputs whose width is a multiple of 4: each output row of a
// tile is one vector store, and bias/slope are loaded once per channel
// (on lavapipe every load and store is a per-lane loop, so this does 16
// stores and 4 loads where `wtout` does 64 and 64).
@compute @workgroup_size(256)
fn wtout4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let c4n = p.coutp / 4u;
    let tw = p.wo / 4u;
    let c4 = i % c4n;
    let tx = (i / c4n) % tw;
    let ty = (i / (c4n * tw)) % p.th;
    let n = i / (c4n * tw * p.th);
    let mb = ((n * p.th + ty) * p.twp + tx) * c4n + c4;
    let ts = p.t8 * c4n;
    let oy = (p.ty0 + ty) * 4u;
    let ox = tx * 4u;
    let co = c4 * 4u;
    var b = vec4<f32>(0.0);
    if HAS_BIAS {
        let last = p.cout - 1u;
        b = vec4<f32>(f32(bias[min(co, last)]), f32(bias[min(co + 1u, last)]),
                      f32(bias[min(co + 2u, last)]), f32(bias[min(co + 3u, last)]));
    }
    var s = vec4<f32>(p.leaky);
    if ACT == 3u {
        let last = select(p.cout - 1u, 0u, p.slope_n == 1u);
        s = vec4<f32>(f32(slopes[min(co, last)]), f32(slopes[min(co + 1u, last)]),
                      f32(slopes[min(co + 2u, last)]), f32(slopes[min(co + 3u, last)]));
    }
//@WTOUT4
}
