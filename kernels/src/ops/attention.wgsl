// Fused scaled-dot-product attention, flash-attention style: each query keeps
// a running max m, a running denominator l and an unnormalised output o, and
// K/V are streamed through shared memory in tiles of BKV keys, so the
// Lq x Lk score matrix never exists.
//
// One workgroup = BQ queries of one (batch, head); one invocation = one query.
// The K/V tile in shared memory is read by all BQ queries (one global read
// per BQ queries). Constants: D, DV (head dims), BKV (keys per tile),
// HAS_MASK, CAUSAL.

struct Params {
    bh: u32,        // batch * heads
    heads: u32,
    lq: u32,
    lk: u32,
    tiles_q: u32,   // workgroups per (batch, head)
    mask_bs: u32,   // mask strides for batch and head (0 = broadcast)
    mask_hs: u32,
    scale: f32,
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

var<workgroup> ks: array<f32, BKV * D>;
var<workgroup> vs: array<f32, BKV * DV>;
var<private> qv: array<f32, D>;
var<private> o: array<f32, DV>;

@compute @workgroup_size(BQ)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    let bh = w / p.tiles_q;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if bh >= p.bh { return; }
    let q0 = (w % p.tiles_q) * BQ;
    let i = q0 + lid;
    let live = i < p.lq;
    let ic = min(i, p.lq - 1u);
    let qoff = (bh * p.lq + ic) * D;
    for (var d = 0u; d < D; d++) { qv[d] = f32(q[qoff + d]) * p.scale; }
    for (var d = 0u; d < DV; d++) { o[d] = 0.0; }
    let moff = (bh / p.heads) * p.mask_bs + (bh % p.heads) * p.mask_hs + ic * p.lk;
    var m = -1.0e30;
    var l = 0.0;
    // Causal (top-left, j > i masked): no query of this workgroup sees keys
    // past its last row, so stop there.
    var kend = p.lk;
    if CAUSAL { kend = min(p.lk, q0 + BQ); }

    for (var j0 = 0u; j0 < kend; j0 += BKV) {
        for (var e = lid; e < BKV * D; e += BQ) {
            let j = j0 + e / D;
            let x = f32(k[(bh * p.lk + min(j, p.lk - 1u)) * D + e % D]);
            ks[e] = select(0.0, x, j < p.lk);
        }
        for (var e = lid; e < BKV * DV; e += BQ) {
            let j = j0 + e / DV;
            let x = f32(v[(bh * p.lk + min(j, p.lk - 1u)) * DV + e % DV]);
            vs[e] = select(0.0, x, j < p.lk);
        }
        workgroupBarrier();
        var s: array<f32, BKV>;
        var smax = MASKED;
        for (var jj = 0u; jj < BKV; jj++) {
            let j = j0 + jj;
            var dot = 0.0;
            for (var d = 0u; d < D; d++) { dot = fma(qv[d], ks[jj * D + d], dot); }
            if HAS_MASK { dot += f32(mask[moff + min(j, p.lk - 1u)]); }
            var dead = j >= p.lk;
            if CAUSAL { dead = dead || j > i; }
            s[jj] = select(dot, MASKED, dead);
            smax = max(smax, s[jj]);
        }
        // One rescale of the running sums per tile, not per key.
        let mn = max(m, smax);
        let corr = exp(m - mn);
        l *= corr;
        for (var d = 0u; d < DV; d++) { o[d] *= corr; }
        for (var jj = 0u; jj < BKV; jj++) {
            let pj = exp(s[jj] - mn);
            l += pj;
            for (var d = 0u; d < DV; d++) { o[d] = fma(pj, vs[jj * DV + d], o[d]); }
        }
        m = mn;
        workgroupBarrier();
    }
    if live {
        // A row whose every key is masked has l == 0: write zeros, not NaN.
        let inv = select(0.0, 1.0 / l, l > 0.0);
        let ooff = (bh * p.lq + i) * DV;
        for (var d = 0u; d < DV; d++) { out[ooff + d] = T(o[d] * inv); }
    }
}
