// GroupNorm on [N, C, *] (PyTorch semantics) with an optional fused activation.
// A "row" is one (n, group): cpg * spatial contiguous elements. Long rows
// (VAE decoders: 16 channels x 512 x 512) would leave a big GPU with a handful
// of workgroups, so each row is split into `chunks` chunks:
//   stats: one workgroup per (row, chunk) writes a Welford partial
//          (count, mean, M2) into `part`.
//   apply: one workgroup per (row, chunk) merges its row's partials and
//          normalises its chunk: y = act((x - mean) * rstd * gamma[c] + beta[c]).
// With one chunk per row (FUSED) `apply` computes the statistics itself and
// `stats` is not dispatched. Partials are merged with Chan's formula, which
// stays accurate for rows with a large mean.
// WG, FUSED, HAS_GAMMA, HAS_BETA, ACT come from the launcher.

struct Params {
    rows: u32,        // N * groups
    len: u32,         // elements per row: cpg * spatial
    chunks: u32,      // chunks per row
    chunk_len: u32,   // elements per chunk (the last may be shorter)
    spatial: u32,     // product of the dims after C
    cpg: u32,         // channels per group
    groups: u32,
    eps: f32,
    slope: f32,       // leaky_relu slope
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
// `stats` writes the partials, `apply` only reads them (so an absent `part`
// can share the read-only dummy buffer with absent gamma/beta).
@group(0) @binding(4) var<storage, read_write> part_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;

var<workgroup> sh: array<vec3<f32>, WG>;

fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if n == 0.0 { return a; }
    let d = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// Welford over this thread's strided share of x[lo, hi).
fn welford(lo: u32, hi: u32, lid: u32) -> vec3<f32> {
    var acc = vec3<f32>(0.0);
    for (var i = lo + lid; i < hi; i += WG) {
        let v = f32(x[i]);
        acc.x += 1.0;
        let d = v - acc.y;
        acc.y += d / acc.x;
        acc.z += d * (v - acc.y);
    }
    return acc;
}

// Workgroup-wide merge; every thread gets the result.
fn reduce(v: vec3<f32>, lid: u32) -> vec3<f32> {
    sh[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            sh[lid] = merge(sh[lid], sh[lid + stride]);
        }
        workgroupBarrier();
    }
    return sh[0];
}

struct Span { row: u32, lo: u32, hi: u32 }

// Absolute element range of workgroup `w`'s chunk.
fn span(w: u32) -> Span {
    let row = w / p.chunks;
    let start = (w % p.chunks) * p.chunk_len;
    let base = row * p.len;
    return Span(row, base + start, base + min(start + p.chunk_len, p.len));
}

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    if w >= p.rows * p.chunks { return; }
    let s = span(w);
    let r = reduce(welford(s.lo, s.hi, lid), lid);
    if lid == 0u { part_out[w] = vec4<f32>(r, 0.0); }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    if w >= p.rows * p.chunks { return; }
    let s = span(w);
    var acc = vec3<f32>(0.0);
    if FUSED {
        acc = welford(s.lo, s.hi, lid);
    } else {
        for (var k = lid; k < p.chunks; k += WG) {
            acc = merge(acc, part[s.row * p.chunks + k].xyz);
        }
    }
    let r = reduce(acc, lid);
    let mean = r.y;
    let rstd = inverseSqrt(max(r.z / r.x, 0.0) + p.eps);
    let c0 = (s.row % p.groups) * p.cpg;
    let base = s.row * p.len;
    for (var i = s.lo + lid; i < s.hi; i += WG) {
        let c = c0 + (i - base) / p.spatial;
        var v = (f32(x[i]) - mean) * rstd;
        if HAS_GAMMA { v *= f32(gamma[c]); }
        if HAS_BETA { v += f32(beta[c]); }
        y[i] = T(activate(v, p.slope));
    }
}
