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
// The *4 entry points read and write vec4s (rows and chunks are multiples of
// 4 elements): lavapipe is load-bound and vec4 loads are ~4x faster there.
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
// vec4 views of x and y, used only by the *4 entry points.
@group(0) @binding(1) var<storage, read> x4: array<T4>;
@group(0) @binding(5) var<storage, read_write> y4: array<T4>;

var<workgroup> sh: array<vec3<f32>, WG>;

fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if n == 0.0 { return a; }
    let d = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// One Welford step on (count, mean, M2).
fn push(acc: vec3<f32>, v: f32) -> vec3<f32> {
    let n = acc.x + 1.0;
    let d = v - acc.y;
    let mean = acc.y + d / n;
    return vec3<f32>(n, mean, acc.z + d * (v - mean));
}

// Welford over this thread's strided share of x[lo, hi).
fn welford(lo: u32, hi: u32, lid: u32) -> vec3<f32> {
    var acc = vec3<f32>(0.0);
    for (var i = lo + lid; i < hi; i += WG) {
        acc = push(acc, f32(x[i]));
    }
    return acc;
}

// Same over vec4 indices [lo, hi): each vec4's own (4, mean, M2) is merged
// in, one division per 4 elements instead of one per element.
fn welford4(lo: u32, hi: u32, lid: u32) -> vec3<f32> {
    var acc = vec3<f32>(0.0);
    for (var i = lo + lid; i < hi; i += WG) {
        let v = vec4<f32>(x4[i]);
        let m = (v.x + v.y + v.z + v.w) * 0.25;
        let d = v - m;
        acc = merge(acc, vec3<f32>(4.0, m, dot(d, d)));
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

// (mean, rstd) of the row: from `fused` (this workgroup's own Welford over
// the whole row) or by merging the row's partials.
fn row_stats(fused: vec3<f32>, row: u32, lid: u32) -> vec2<f32> {
    var acc = fused;
    if !FUSED {
        for (var k = lid; k < p.chunks; k += WG) {
            acc = merge(acc, part[row * p.chunks + k].xyz);
        }
    }
    let r = reduce(acc, lid);
    return vec2<f32>(r.y, inverseSqrt(max(r.z / r.x, 0.0) + p.eps));
}

// Normalised value of an element of channel `c` -> affine -> activation.
fn finish(v: f32, c: u32, st: vec2<f32>) -> f32 {
    var o = (v - st.x) * st.y;
    if HAS_GAMMA { o *= f32(gamma[c]); }
    if HAS_BETA { o += f32(beta[c]); }
    return activate(o, p.slope);
}

// Channel of element `i` of row `row`.
fn channel(i: u32, row: u32) -> u32 {
    return (row % p.groups) * p.cpg + (i - row * p.len) / p.spatial;
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
fn stats4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    if w >= p.rows * p.chunks { return; }
    let s = span(w);
    let r = reduce(welford4(s.lo / 4u, s.hi / 4u, lid), lid);
    if lid == 0u { part_out[w] = vec4<f32>(r, 0.0); }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    if w >= p.rows * p.chunks { return; }
    let s = span(w);
    var own = vec3<f32>(0.0);
    if FUSED { own = welford(s.lo, s.hi, lid); }
    let st = row_stats(own, s.row, lid);
    for (var i = s.lo + lid; i < s.hi; i += WG) {
        y[i] = T(finish(f32(x[i]), channel(i, s.row), st));
    }
}

@compute @workgroup_size(WG)
fn apply4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * nwg.x;
    if w >= p.rows * p.chunks { return; }
    let s = span(w);
    var own = vec3<f32>(0.0);
    if FUSED { own = welford4(s.lo / 4u, s.hi / 4u, lid); }
    let st = row_stats(own, s.row, lid);
    for (var i = s.lo / 4u + lid; i < s.hi / 4u; i += WG) {
        let v = vec4<f32>(x4[i]);
        let e = 4u * i;
        // Integer division does not vectorise on CPU adapters: divide once
        // per vec4 and carry into the next channel (spatial >= 4), else
        // (spatial < 4, rare) divide per element.
        var c = vec4<u32>(channel(e, s.row));
        if p.spatial >= 4u {
            let rem = (e - s.row * p.len) % p.spatial;
            c += vec4<u32>(rem + vec4<u32>(0u, 1u, 2u, 3u) >= vec4<u32>(p.spatial));
        } else {
            c = vec4<u32>(c.x, channel(e + 1u, s.row), channel(e + 2u, s.row), channel(e + 3u, s.row));
        }
        y4[i] = T4(vec4<f32>(finish(v.x, c.x, st), finish(v.y, c.y, st),
                             finish(v.z, c.z, st), finish(v.w, c.w, st)));
    }
}
