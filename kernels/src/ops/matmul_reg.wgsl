// Register-blocked matmul for CPU-class adapters (lavapipe), where loads,
// not arithmetic, bound the speed and shared memory only adds copies.
//
// A 1-D workgroup of 64 is 8 subgroups of 8 lanes (the launcher checks the
// subgroup size is exactly 8). Each lane owns 16 rows x 8 columns; a
// subgroup's lanes share the rows and interleave the columns (col = c*8 +
// lane) so their B loads are contiguous. A is loaded once per subgroup: for
// a chunk of 8 k, lane l loads A(rows, k0 + l) and a subgroup shuffle hands
// each k's column to every lane, an 8x cut in A loads. (subgroupShuffle with
// a loop index, not subgroupBroadcast's constant lane: 8 unrolled copies of
// the step took llvmpipe minutes to compile.)
// Constants: SGM x SGN subgroups per workgroup (SGM * SGN == 8).
// Needs matmul.wgsl (Params, bindings, tile_of, store_out) included.

const RBM = SGM * 16u;
const RBN = SGN * 64u;

// A(rows r0..r0+3, k) of this lane, zero when k is past K.
fn ld_a(ao: array<u32, 16>, r0: u32, ko: u32, ok: bool) -> vec4<f32> {
    let v = vec4<f32>(f32(a[ao[r0] + ko]), f32(a[ao[r0 + 1u] + ko]),
                      f32(a[ao[r0 + 2u] + ko]), f32(a[ao[r0 + 3u] + ko]));
    return select(vec4<f32>(0.0), v, ok);
}

// Rows 4 at a time: acc[i + 2t] += x[t] * lo, acc[i + 2t + 1] += x[t] * hi.
fn fma4(acc: ptr<function, array<vec4<f32>, 32>>, i: u32, x: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>) {
    (*acc)[i] = fma(vec4<f32>(x.x), lo, (*acc)[i]);
    (*acc)[i + 1u] = fma(vec4<f32>(x.x), hi, (*acc)[i + 1u]);
    (*acc)[i + 2u] = fma(vec4<f32>(x.y), lo, (*acc)[i + 2u]);
    (*acc)[i + 3u] = fma(vec4<f32>(x.y), hi, (*acc)[i + 3u]);
    (*acc)[i + 4u] = fma(vec4<f32>(x.z), lo, (*acc)[i + 4u]);
    (*acc)[i + 5u] = fma(vec4<f32>(x.z), hi, (*acc)[i + 5u]);
    (*acc)[i + 6u] = fma(vec4<f32>(x.w), lo, (*acc)[i + 6u]);
    (*acc)[i + 7u] = fma(vec4<f32>(x.w), hi, (*acc)[i + 7u]);
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
    // Out-of-range rows/columns read a clamped (valid) address; store skips them.
    var bo: array<u32, 8>;   // offsets of this lane's 8 columns in b
    for (var c = 0u; c < 8u; c++) {
        bo[c] = b0 + min(col0 + c * 8u + lane, p.n - 1u) * p.sbn;
    }
    var ao: array<u32, 16>;
    for (var r = 0u; r < 16u; r++) {
        ao[r] = a0 + min(row0 + r, p.m - 1u) * p.sam;
    }
    // Row r of this lane: acc[2r] holds columns c0..c3, acc[2r + 1] c4..c7.
    var acc: array<vec4<f32>, 32>;
    for (var i = 0u; i < 32u; i++) { acc[i] = vec4<f32>(0.0); }

    let kl = p.k - 1u;
    for (var k0 = 0u; k0 < p.k; k0 += 8u) {
        // Lanes past K hold zeros, so the clamped k steps below add nothing.
        let ka = k0 + lane;
        let ok = ka < p.k;
        let ko = min(ka, kl) * p.sak;
        // Written out, not looped: lavapipe ends an invocation's loops after
        // 65535 iterations in total, so the per-chunk loop count stays at 9.
        let av = array<vec4<f32>, 4>(ld_a(ao, 0u, ko, ok), ld_a(ao, 4u, ko, ok),
                                     ld_a(ao, 8u, ko, ok), ld_a(ao, 12u, ko, ok));
        for (var kk = 0u; kk < 8u; kk++) {
            let kb = min(k0 + kk, kl) * p.sbk;
            let lo = vec4<f32>(f32(b[bo[0] + kb]), f32(b[bo[1] + kb]), f32(b[bo[2] + kb]), f32(b[bo[3] + kb]));
            let hi = vec4<f32>(f32(b[bo[4] + kb]), f32(b[bo[5] + kb]), f32(b[bo[6] + kb]), f32(b[bo[7] + kb]));
            fma4(&acc, 0u, subgroupShuffle(av[0], kk), lo, hi);
            fma4(&acc, 8u, subgroupShuffle(av[1], kk), lo, hi);
            fma4(&acc, 16u, subgroupShuffle(av[2], kk), lo, hi);
            fma4(&acc, 24u, subgroupShuffle(av[3], kk), lo, hi);
        }
    }
    for (var r = 0u; r < 16u; r++) {
        let row = row0 + r;
        if row >= p.m { break; }
        for (var c = 0u; c < 8u; c++) {
            let col = col0 + c * 8u + lane;
            let v = select(acc[2u * r][c % 4u], acc[2u * r + 1u][c % 4u], c >= 4u);
            if col < p.n { store_out(tile.x, row, col, v); }
        }
    }
}
