// Cooperative-matrix matmul (tensor cores / simdgroup matrices), used when
// the adapter grants `wgpu_cooperative_matrix` with a square CM x CM
// configuration for T inputs and an f32 accumulator.
//
// A workgroup of 4 subgroups (CWG = 4 * subgroup size, fixed size checked by
// the launcher) computes a 4CM x 4CM tile; subgroup s owns the 2x2 block of
// CM x CM fragments at (s / 2, s % 2). Operands are staged through shared
// memory, zero-padded, so any M, N, K, transpose and batch broadcast reach
// the cooperative loads as dense row-major tiles, and every cooperative op
// runs in uniform control flow. The f32 result goes back through shared
// memory to the common epilogue store.
// Needs: CM (8 or 16), CWG, the CMA/CMB/CMC type aliases (launcher include)
// and matmul.wgsl.

const CBM = 4u * CM;
const CBN = 4u * CM;
const CBK = 2u * CM;

var<workgroup> ca: array<T, CBM * CBK>;   // [m][k]
var<workgroup> cb: array<T, CBK * CBN>;   // [k][n]
var<workgroup> cc: array<f32, CBM * CBN>; // [m][n]

@compute @workgroup_size(CWG)
fn main_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(subgroup_id) sid: u32) {
    // No early return: cooperative ops need uniform control flow. Surplus
    // workgroups of a rounded-up grid redo the last batch entry, storing nothing.
    let t = tile_of(wid, nwg);
    let live = t.x < p.batch;
    let tile = vec3<u32>(min(t.x, p.batch - 1u), t.y, t.z);
    let a0 = tile.x * p.a_bs;
    let b0 = tile.x * p.b_bs;
    let m0 = tile.y * CBM;
    let n0 = tile.z * CBN;
    let fm = (sid / 2u) * 2u * CM;   // this subgroup's fragment block
    let fn_ = (sid % 2u) * 2u * CM;
    var c00 = CMC();
    var c01 = CMC();
    var c10 = CMC();
    var c11 = CMC();
    for (var k0 = 0u; k0 < p.k; k0 += CBK) {
        for (var i = lid; i < CBM * CBK; i += CWG) {
            var mm = i % CBM;
            var kk = i / CBM;
            if p.sak == 1u { mm = i / CBK; kk = i % CBK; }
            let gm = m0 + mm;
            let gk = k0 + kk;
            let v = a[a0 + min(gm, p.m - 1u) * p.sam + min(gk, p.k - 1u) * p.sak];
            ca[mm * CBK + kk] = select(T(0.0), v, gm < p.m && gk < p.k);
        }
        for (var i = lid; i < CBN * CBK; i += CWG) {
            var nn = i % CBN;
            var kk = i / CBN;
            if p.sbn != 1u { nn = i / CBK; kk = i % CBK; }
            let gn = n0 + nn;
            let gk = k0 + kk;
            let v = b[b0 + min(gk, p.k - 1u) * p.sbk + min(gn, p.n - 1u) * p.sbn];
            cb[kk * CBN + nn] = select(T(0.0), v, gn < p.n && gk < p.k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < CBK; kk += CM) {
            let sk = CBK;
            let sn = CBN;
            let x0 = coopLoadT<CMA>(&ca[fm * CBK + kk], sk);
            let x1 = coopLoadT<CMA>(&ca[(fm + CM) * CBK + kk], sk);
            let y0 = coopLoadT<CMB>(&cb[kk * CBN + fn_], sn);
            let y1 = coopLoadT<CMB>(&cb[kk * CBN + fn_ + CM], sn);
            c00 = coopMultiplyAdd(x0, y0, c00);
            c01 = coopMultiplyAdd(x0, y1, c01);
            c10 = coopMultiplyAdd(x1, y0, c10);
            c11 = coopMultiplyAdd(x1, y1, c11);
        }
        workgroupBarrier();
    }
    let sc = CBN;
    coopStoreT(c00, &cc[fm * CBN + fn_], sc);
    coopStoreT(c01, &cc[fm * CBN + fn_ + CM], sc);
    coopStoreT(c10, &cc[(fm + CM) * CBN + fn_], sc);
    coopStoreT(c11, &cc[(fm + CM) * CBN + fn_ + CM], sc);
    workgroupBarrier();
    for (var i = lid; i < CBM * CBN; i += CWG) {
        let row = m0 + i / CBN;
        let col = n0 + i % CBN;
        if live && row < p.m && col < p.n { store_out(tile.x, row, col, cc[i]); }
    }
}
