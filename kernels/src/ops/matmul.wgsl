// Batched matmul C[b] = op(A[b]) @ op(B[b]) with a fused epilogue.
//
// This file holds what every matmul variant shares (Params, bindings, the
// epilogue store) and the shared-memory tiled kernel for discrete GPUs.
// matmul_reg.wgsl (CPU-class adapters) and matmul_coop.wgsl (cooperative
// matrices) include it. Operands are addressed through runtime strides, so
// transposes cost nothing but a different stride:
//   A(m, k) = a[bi * a_bs + m * sam + k * sak]
//   B(k, n) = b[bi * b_bs + k * sbk + n * sbn]
// Tiled constants: BM, BN (workgroup tile), BK (k step), TM, TN (outputs per
// invocation, strided by BM/TM and BN/TN so shared reads are conflict-free).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_bs: u32,      // batch strides; 0 broadcasts the operand
    b_bs: u32,
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    tiles_m: u32,   // workgroup tiles per batch entry along M and N
    tiles_n: u32,
    slope_n: u32,   // 1 = one shared PReLU slope, else per column
    slope: f32,     // leaky_relu slope
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> slopes: array<T>;
@group(0) @binding(5) var<storage, read> res: array<T>;
@group(0) @binding(6) var<storage, read_write> out: array<T>;

// (batch, tile_m, tile_n) of a linear workgroup index, or batch == p.batch
// when the index is past the end (the grid is rounded up).
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let w = wid.x + wid.y * nwg.x;
    let per = p.tiles_m * p.tiles_n;
    let bi = w / per;
    let t = w % per;
    return vec3<u32>(bi, t / p.tiles_n, t % p.tiles_n);
}

// Epilogue: alpha * act(acc + bias[col]) + beta * residual, then store.
fn store_out(bi: u32, row: u32, col: u32, acc: f32) {
    let o = (bi * p.m + row) * p.n + col;
    var v = acc;
    if HAS_BIAS { v += f32(bias[col]); }
    var s = p.slope;
    if ACT == 3u { s = f32(slopes[select(col, 0u, p.slope_n == 1u)]); }
    v = p.alpha * activate(v, s);
    if HAS_RES { v += p.beta * f32(res[o]); }
    out[o] = T(v);
}

const TWG = (BM / TM) * (BN / TN);

var<workgroup> sa: array<f32, BK * BM>;   // [k][m]
var<workgroup> sb: array<f32, BK * BN>;   // [k][n]

@compute @workgroup_size(TWG)
fn main_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let tile = tile_of(wid, nwg);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if tile.x >= p.batch { return; }
    let a0 = tile.x * p.a_bs;
    let b0 = tile.x * p.b_bs;
    let m0 = tile.y * BM;
    let n0 = tile.z * BN;
    let tx = lid % (BN / TN);
    let ty = lid / (BN / TN);
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) { acc[i] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Consecutive invocations walk the operand's contiguous axis so the
        // global loads coalesce whichever way the operand is transposed.
        for (var i = lid; i < BM * BK; i += TWG) {
            var mm = i % BM;
            var kk = i / BM;
            if p.sak == 1u { mm = i / BK; kk = i % BK; }
            let gm = m0 + mm;
            let gk = k0 + kk;
            let v = f32(a[a0 + min(gm, p.m - 1u) * p.sam + min(gk, p.k - 1u) * p.sak]);
            sa[kk * BM + mm] = select(0.0, v, gm < p.m && gk < p.k);
        }
        for (var i = lid; i < BN * BK; i += TWG) {
            var nn = i % BN;
            var kk = i / BN;
            if p.sbn != 1u { nn = i / BK; kk = i % BK; }
            let gn = n0 + nn;
            let gk = k0 + kk;
            let v = f32(b[b0 + min(gk, p.k - 1u) * p.sbk + min(gn, p.n - 1u) * p.sbn]);
            sb[kk * BN + nn] = select(0.0, v, gn < p.n && gk < p.k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, TM>;
            var br: array<f32, TN>;
            for (var i = 0u; i < TM; i++) { ar[i] = sa[kk * BM + ty + i * (BM / TM)]; }
            for (var j = 0u; j < TN; j++) { br[j] = sb[kk * BN + tx + j * (BN / TN)]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let row = m0 + ty + i * (BM / TM);
        for (var j = 0u; j < TN; j++) {
            let col = n0 + tx + j * (BN / TN);
            if row < p.m && col < p.n { store_out(tile.x, row, col, acc[i * TN + j]); }
        }
    }
}
