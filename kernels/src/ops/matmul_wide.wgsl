// Wide register-blocked matmul for CPU-class adapters (lavapipe): the design of conv2d's
// Winograd `wgemm` applied to plain matrices. On llvmpipe a load whose address differs per
// lane is a loop over the lanes (and over a vector's components), so the speed is set by the
// elements loaded per multiply-add. Each lane owns PX rows x CO columns (PX * CO / 4 vec4
// accumulators). Per k it loads its PX values of A and CO / 8 values of B; the subgroup's 8
// lanes then broadcast their B values, so every lane sees all CO columns: PX + CO / 8
// elements per PX * CO multiply-adds (16 per 512 with 8 x 64), where matmul_reg loads 10
// per 128. A is read through its strides (any transpose); B likewise, or as whole vectors
// when BVEC (N contiguous, N % 4 == 0). Needs 8-lane subgroups and matmul.wgsl (Params,
// bindings, tile_of, store_out). Constants: WG (workgroup size), PX, CO, BVEC.
// The `//@` lines are generated (matmul_wide.rs).

@group(0) @binding(2) var<storage, read> b4: array<T4>;
@group(0) @binding(3) var<storage, read> bias4: array<T4>;
@group(0) @binding(5) var<storage, read> res4: array<T4>;
@group(0) @binding(6) var<storage, read_write> out4: array<T4>;

//@STORE_FN

@compute @workgroup_size(WG)
fn main_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(subgroup_invocation_id) lane: u32) {
    let tile = tile_of(wid, nwg);
    // Uniform per workgroup: the broadcasts below stay in uniform control flow.
    if tile.x >= p.batch { return; }
    let row0 = tile.y * (WG * PX) + lid * PX;
    let n0 = tile.z * CO;
    let a0 = tile.x * p.a_bs;
    let b0 = tile.x * p.b_bs;
    // Rows past M and columns past N read clamped (valid) addresses; the store skips them.
    let ml = p.m - 1u;
    let nl = p.n - 1u;
//@OFFSETS
//@ACC
    for (var k = 0u; k < p.k; k++) {
        let ka = k * p.sak;
        let kb = k * p.sbk;
//@BODY
    }
//@STORE
}
