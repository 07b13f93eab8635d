// Subgroup variant of the fused attention for CPU adapters (lavapipe), appended to
// attention.wgsl. There a load whose address differs per lane is a loop over the lanes, and
// in `main` every lane loads every key and value itself. Here the 8 lanes of a subgroup
// (8 queries) load 8 different keys and values at once, one each, and hand them round with
// subgroupBroadcast: each lane loads D + DV elements per 8 keys instead of per key. Needs
// 8-lane subgroups and D, DV small enough for registers (the launcher checks). The `//@`
// lines are generated per (D, DV) by attention.rs: QN = ceil(D / 4) and VN = ceil(DV / 4)
// vectors per row, q0.., o0.. (this lane's query and output), k0.., v0.. (this lane's key).

// Masked-out keys past Lk (or after the query, causal) score this: exp(s - m) is 0 for any
// running max m, including the MASKED floor of real scores.
const SKIP = -3.4e38;

@compute @workgroup_size(BQ)
fn main_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32,
           @builtin(subgroup_invocation_id) lane: u32) {
    let w = wid.x + wid.y * nwg.x;
    let bh = w / p.tiles_q;
    // Uniform per workgroup; lanes past Lq keep going (clamped) so every broadcast below
    // runs in uniform control flow, and only skip the store.
    if bh >= p.bh { return; }
    let i = (w % p.tiles_q) * BQ + lid;
    let iq = min(i, p.lq - 1u);
    let qoff = (bh * p.lq + iq) * D;
//@QLOAD
    let moff = (bh / p.heads) * p.mask_bs + (bh % p.heads) * p.mask_hs + iq * p.lk;
    var m = -1.0e30;
    var l = 0.0;
    let kbase = bh * p.lk;
    for (var j0 = 0u; j0 < p.lk; j0 += 8u) {
        let jl = min(j0 + lane, p.lk - 1u);
        let ko = (kbase + jl) * D;
        let vo = (kbase + jl) * DV;
//@KVLOAD
//@KEYS
    }
    if i >= p.lq { return; }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let ooff = (bh * p.lq + i) * DV;
//@STORE
}
