// Fused scaled-dot-product attention, flash-attention style: each query keeps
// a running max m, a running denominator l and an unnormalised output o while
// it streams over the keys, so the Lq x Lk score matrix never exists.
//
// One workgroup = BQ queries of one (batch, head); one invocation = one query.
// All invocations of a workgroup read the same key at the same time, so K/V
// reads are broadcast from cache; there is no shared-memory staging (simple,
// and right for CPU adapters; a tiled GPU variant is future work).
// Constants: D, DV (head dims), HAS_MASK, CAUSAL.

struct Params {
    bh: u32,        // batch * heads
    heads: u32,
    lq: u32,
    lk: u32,
    tiles_q: u32,   // workgroups per (batch, head)
    mask_bs: u32,   // mask strides for batch and head (0 = broadcast)
    mask_hs: u32,
    scale: f32,
    kn: u32,        // elements of k and v (clamp bound for padded reads)
    vn: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read> mask: array<T>;
@group(0) @binding(5) var<storage, read_write> out: array<T>;

const BQ = 64u;
// Finite stand-in for -inf: exp(MASKED - m) is exactly 0 and never NaN.
const MASKED = -3.0e38;
// Head dims in blocks of 16 floats: each loop iteration handles a block.
// lavapipe stops every loop of an invocation after 65535 iterations in
// total, so a key must cost few iterations (1 + DQ + DVQ here).
const DQ = (D + 15u) / 16u;
const DVQ = (DV + 15u) / 16u;

var<private> qv: array<vec4<f32>, DQ * 4u>;   // zero-padded past D
var<private> o: array<vec4<f32>, DVQ * 4u>;   // lanes past DV are never stored

// Four consecutive elements; reads past D (or the buffer) meet zero q lanes
// or unstored o lanes, and the clamp keeps them in bounds.
fn ldk(i: u32) -> vec4<f32> {
    let e = p.kn - 1u;
    return vec4<f32>(f32(k[min(i, e)]), f32(k[min(i + 1u, e)]), f32(k[min(i + 2u, e)]), f32(k[min(i + 3u, e)]));
}
fn ldv(i: u32) -> vec4<f32> {
    let e = p.vn - 1u;
    return vec4<f32>(f32(v[min(i, e)]), f32(v[min(i + 1u, e)]), f32(v[min(i + 2u, e)]), f32(v[min(i + 3u, e)]));
}

@compute @workgroup_size(BQ)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    let bh = w / p.tiles_q;
    let i = (w % p.tiles_q) * BQ + lid;
    if bh >= p.bh || i >= p.lq { return; }
    let qoff = (bh * p.lq + i) * D;
    for (var c = 0u; c < DQ * 4u; c++) {
        var x = vec4<f32>(0.0);
        for (var t = 0u; t < 4u; t++) {
            let d = c * 4u + t;
            if d < D { x[t] = f32(q[qoff + d]) * p.scale; }
        }
        qv[c] = x;
    }
    for (var c = 0u; c < DVQ * 4u; c++) { o[c] = vec4<f32>(0.0); }
    let moff = (bh / p.heads) * p.mask_bs + (bh % p.heads) * p.mask_hs + i * p.lk;
    var m = -1.0e30;
    var l = 0.0;
    // Causal (top-left): keys j > i are masked, so stop after key i.
    var kend = p.lk;
    if CAUSAL { kend = min(p.lk, i + 1u); }
    let kbase = bh * p.lk;

    for (var j = 0u; j < kend; j++) {
        let koff = (kbase + j) * D;
        var d4 = vec4<f32>(0.0);
        for (var c = 0u; c < DQ; c++) {
            let b = koff + c * 16u;
            d4 = fma(qv[4u * c], ldk(b), d4);
            d4 = fma(qv[4u * c + 1u], ldk(b + 4u), d4);
            d4 = fma(qv[4u * c + 2u], ldk(b + 8u), d4);
            d4 = fma(qv[4u * c + 3u], ldk(b + 12u), d4);
        }
        var s = d4.x + d4.y + d4.z + d4.w;
        if HAS_MASK { s += f32(mask[moff + j]); }
        s = max(s, MASKED);
        // Online softmax: rescale the running sums only when the max grows.
        if s > m {
            let corr = exp(m - s);
            l *= corr;
            for (var c = 0u; c < DVQ * 4u; c++) { o[c] *= corr; }
            m = s;
        }
        let pj = exp(s - m);
        l += pj;
        let voff = (kbase + j) * DV;
        for (var c = 0u; c < DVQ; c++) {
            let b = voff + c * 16u;
            o[4u * c] = fma(vec4<f32>(pj), ldv(b), o[4u * c]);
            o[4u * c + 1u] = fma(vec4<f32>(pj), ldv(b + 4u), o[4u * c + 1u]);
            o[4u * c + 2u] = fma(vec4<f32>(pj), ldv(b + 8u), o[4u * c + 2u]);
            o[4u * c + 3u] = fma(vec4<f32>(pj), ldv(b + 12u), o[4u * c + 3u]);
        }
    }
    // A row whose every key is masked has l == 0: write zeros, not NaN.
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let ooff = (bh * p.lq + i) * DV;
    for (var d = 0u; d < DV; d++) { out[ooff + d] = T(o[d / 4u][d % 4u] * inv); }
}
