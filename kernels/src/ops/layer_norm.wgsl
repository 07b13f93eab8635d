// LayerNorm (RMS = false) or RMSNorm (RMS = true) over the last axis.
// One workgroup per row. Pass 1: each thread runs Welford over its strided
// elements (RMS: a plain sum of squares), then a shared-memory tree merges
// the (count, mean, M2) triples with Chan's formula: no E[x^2] - E[x]^2
// cancellation for rows with a large mean. Pass 2 normalises and writes.
// `main_rows` (CPU adapters, rows up to 1024): one invocation per row, the same Welford
// statistics in one sequential pass, no shared memory or barriers (on llvmpipe a barrier
// switches every subgroup's coroutine, and short rows left most of a workgroup idle).
// WG, RMS, HAS_GAMMA, HAS_BETA come from the launcher.

struct Params {
    rows: u32,
    len: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

var<workgroup> sh: array<vec3<f32>, WG>;

// Merges two (count, mean, M2) partial statistics; RMS keeps (count, 0, sum x^2).
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if RMS || n == 0.0 { return vec3<f32>(n, 0.0, a.z + b.z); }
    let d = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// One more value into a (count, mean, M2) triple (RMS: (count, 0, sum x^2)).
fn push(acc: vec3<f32>, v: f32) -> vec3<f32> {
    let n = acc.x + 1.0;
    if RMS { return vec3<f32>(n, 0.0, acc.z + v * v); }
    let d = v - acc.y;
    let mean = acc.y + d / n;
    return vec3<f32>(n, mean, acc.z + d * (v - mean));
}

// Writes element j of a row from its centred value.
fn write_out(base: u32, j: u32, centred: f32, rstd: f32) {
    var v = centred * rstd;
    if HAS_GAMMA { v *= f32(gamma[j]); }
    if HAS_BETA { v += f32(beta[j]); }
    y[base + j] = T(v);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.rows { return; }
    let base = row * p.len;

    var acc = vec3<f32>(0.0);
    for (var j = lid; j < p.len; j += WG) {
        acc = push(acc, f32(x[base + j]));
    }
    sh[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            sh[lid] = merge(sh[lid], sh[lid + stride]);
        }
        workgroupBarrier();
    }
    let stats = sh[0];
    let mean = stats.y;
    let rstd = inverseSqrt(max(stats.z / f32(p.len), 0.0) + p.eps);
    for (var j = lid; j < p.len; j += WG) {
        write_out(base, j, f32(x[base + j]) - mean, rstd);
    }
}

@compute @workgroup_size(WG)
fn main_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wid.x + wid.y * nwg.x) * WG + lid;
    if row >= p.rows { return; }
    let base = row * p.len;
    // Statistics of x - x0 (x0: the row's first element; RMS: no shift): a long sequential
    // Welford on a large mean rounds its running mean at every step, the shifted values
    // stay small, and x - x0 itself is exact for the values close to x0 that matter.
    var shift = 0.0;
    if !RMS { shift = f32(x[base]); }
    var acc = vec3<f32>(0.0);
    for (var j = 0u; j < p.len; j++) {
        acc = push(acc, f32(x[base + j]) - shift);
    }
    let mean = acc.y;
    let rstd = inverseSqrt(max(acc.z / f32(p.len), 0.0) + p.eps);
    for (var j = 0u; j < p.len; j++) {
        write_out(base, j, f32(x[base + j]) - shift - mean, rstd);
    }
}
