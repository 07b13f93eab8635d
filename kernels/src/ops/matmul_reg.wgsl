// Register-blocked matmul for CPU-class adapters (lavapipe), where loads,
// not arithmetic, bound the speed and shared memory only adds copies.
//
// A 1-D workgroup of 64 is 8 subgroups of 8 lanes (the launcher checks the
// subgroup size is exactly 8). Each lane owns 16 rows x 8 columns; a
// subgroup's lanes share the rows and interleave the columns (col = c*8 +
// lane) so their B loads are contiguous. A is loaded once per subgroup: for
// a chunk of 8 k, lane l loads A(rows, k0 + l) and subgroupBroadcast hands
// each k's column to every lane, an 8x cut in A loads. (An earlier version
// that kept the accumulators in dynamically indexed arrays took llvmpipe
// minutes to compile and ran 4x slower.)
// Constants: SGM x SGN subgroups per workgroup (SGM * SGN == 8).
// Needs matmul.wgsl (Params, bindings, tile_of, store_out) included.

const RBM = SGM * 16u;
const RBN = SGN * 64u;

// Rows 4q..4q+3 of this lane x its columns 0..3 (L) or 4..7 (H), as a
// matrix whose column t is row 4q+t: plain values, no arrays, because
// llvmpipe turns dynamically indexed arrays into per-lane memory traffic.
fn store_rows(bi: u32, row0: u32, col0: u32, lane: u32, l: mat4x4<f32>, h: mat4x4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        let row = row0 + t;
        if row >= p.m { return; }
        for (var c = 0u; c < 4u; c++) {
            let cl = col0 + c * 8u + lane;
            let ch = col0 + (c + 4u) * 8u + lane;
            if cl < p.n { store_out(bi, row, cl, l[t][c]); }
            if ch < p.n { store_out(bi, row, ch, h[t][c]); }
        }
    }
}

// Accumulators (see store_rows); private so step() can update them.
var<private> l0: mat4x4<f32>;
var<private> l1: mat4x4<f32>;
var<private> l2: mat4x4<f32>;
var<private> l3: mat4x4<f32>;
var<private> h0: mat4x4<f32>;
var<private> h1: mat4x4<f32>;
var<private> h2: mat4x4<f32>;
var<private> h3: mat4x4<f32>;
var<private> bl: vec4<u32>;
var<private> bh: vec4<u32>;

// One k: this lane's 8 B values (at k offset kb) times the 16 A values y.
fn step(kb: u32, y0: vec4<f32>, y1: vec4<f32>, y2: vec4<f32>, y3: vec4<f32>) {
    let lo = vec4<f32>(f32(b[bl.x + kb]), f32(b[bl.y + kb]), f32(b[bl.z + kb]), f32(b[bl.w + kb]));
    let hi = vec4<f32>(f32(b[bh.x + kb]), f32(b[bh.y + kb]), f32(b[bh.z + kb]), f32(b[bh.w + kb]));
    l0 += mat4x4<f32>(lo * y0.x, lo * y0.y, lo * y0.z, lo * y0.w);
    h0 += mat4x4<f32>(hi * y0.x, hi * y0.y, hi * y0.z, hi * y0.w);
    l1 += mat4x4<f32>(lo * y1.x, lo * y1.y, lo * y1.z, lo * y1.w);
    h1 += mat4x4<f32>(hi * y1.x, hi * y1.y, hi * y1.z, hi * y1.w);
    l2 += mat4x4<f32>(lo * y2.x, lo * y2.y, lo * y2.z, lo * y2.w);
    h2 += mat4x4<f32>(hi * y2.x, hi * y2.y, hi * y2.z, hi * y2.w);
    l3 += mat4x4<f32>(lo * y3.x, lo * y3.y, lo * y3.z, lo * y3.w);
    h3 += mat4x4<f32>(hi * y3.x, hi * y3.y, hi * y3.z, hi * y3.w);
}

fn ld_a(a0: vec4<u32>, ko: u32, ok: bool) -> vec4<f32> {
    let v = vec4<f32>(f32(a[a0.x + ko]), f32(a[a0.y + ko]), f32(a[a0.z + ko]), f32(a[a0.w + ko]));
    return select(vec4<f32>(0.0), v, ok);
}

@compute @workgroup_size(64)
fn main_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32,
            @builtin(subgroup_invocation_id) lane: u32) {
    let tile = tile_of(wid, nwg);
    if tile.x >= p.batch { return; }
    let sg = lid / 8u;
    let row0 = tile.y * RBM + (sg / SGN) * 16u;
    let col0 = tile.z * RBN + (sg % SGN) * 64u;
    let a0 = tile.x * p.a_bs;
    let b0 = tile.x * p.b_bs;
    // Offsets of this lane's 8 columns of b and 16 rows of a. Out-of-range
    // rows/columns read a clamped (valid) address; the store skips them.
    let cb = vec4<u32>(col0 + lane) + vec4<u32>(0u, 8u, 16u, 24u);
    let nl = vec4<u32>(p.n - 1u);
    bl = vec4<u32>(b0) + min(cb, nl) * p.sbn;
    bh = vec4<u32>(b0) + min(cb + vec4<u32>(32u), nl) * p.sbn;
    let rb = vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u);
    let ml = vec4<u32>(p.m - 1u);
    let ar0 = vec4<u32>(a0) + min(rb, ml) * p.sam;
    let ar1 = vec4<u32>(a0) + min(rb + vec4<u32>(4u), ml) * p.sam;
    let ar2 = vec4<u32>(a0) + min(rb + vec4<u32>(8u), ml) * p.sam;
    let ar3 = vec4<u32>(a0) + min(rb + vec4<u32>(12u), ml) * p.sam;

    let kl = p.k - 1u;
    for (var k0 = 0u; k0 < p.k; k0 += 8u) {
        // Lanes past K hold zeros, so the clamped k steps below add nothing.
        let ka = k0 + lane;
        let ok = ka < p.k;
        let ko = min(ka, kl) * p.sak;
        let x0 = ld_a(ar0, ko, ok);
        let x1 = ld_a(ar1, ko, ok);
        let x2 = ld_a(ar2, ko, ok);
        let x3 = ld_a(ar3, ko, ok);
        // subgroupBroadcast needs a constant lane: 8 written-out steps (also
        // keeps lavapipe's 65535-iterations-per-invocation loop budget: 1
        // iteration per 8 k).
        step(min(k0 + 0u, kl) * p.sbk, subgroupBroadcast(x0, 0u), subgroupBroadcast(x1, 0u),
             subgroupBroadcast(x2, 0u), subgroupBroadcast(x3, 0u));
        step(min(k0 + 1u, kl) * p.sbk, subgroupBroadcast(x0, 1u), subgroupBroadcast(x1, 1u),
             subgroupBroadcast(x2, 1u), subgroupBroadcast(x3, 1u));
        step(min(k0 + 2u, kl) * p.sbk, subgroupBroadcast(x0, 2u), subgroupBroadcast(x1, 2u),
             subgroupBroadcast(x2, 2u), subgroupBroadcast(x3, 2u));
        step(min(k0 + 3u, kl) * p.sbk, subgroupBroadcast(x0, 3u), subgroupBroadcast(x1, 3u),
             subgroupBroadcast(x2, 3u), subgroupBroadcast(x3, 3u));
        step(min(k0 + 4u, kl) * p.sbk, subgroupBroadcast(x0, 4u), subgroupBroadcast(x1, 4u),
             subgroupBroadcast(x2, 4u), subgroupBroadcast(x3, 4u));
        step(min(k0 + 5u, kl) * p.sbk, subgroupBroadcast(x0, 5u), subgroupBroadcast(x1, 5u),
             subgroupBroadcast(x2, 5u), subgroupBroadcast(x3, 5u));
        step(min(k0 + 6u, kl) * p.sbk, subgroupBroadcast(x0, 6u), subgroupBroadcast(x1, 6u),
             subgroupBroadcast(x2, 6u), subgroupBroadcast(x3, 6u));
        step(min(k0 + 7u, kl) * p.sbk, subgroupBroadcast(x0, 7u), subgroupBroadcast(x1, 7u),
             subgroupBroadcast(x2, 7u), subgroupBroadcast(x3, 7u));
    }
    store_rows(tile.x, row0, col0, lane, l0, h0);
    store_rows(tile.x, row0 + 4u, col0, lane, l1, h1);
    store_rows(tile.x, row0 + 8u, col0, lane, l2, h2);
    store_rows(tile.x, row0 + 12u, col0, lane, l3, h3);
}
