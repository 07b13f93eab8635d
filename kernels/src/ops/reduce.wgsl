// Sum / mean over any set of axes, accumulated in f32.
// The launcher merges axes into at most 4 kept and 4 reduced groups, each
// with its input stride (padded in front with size 1, stride 0).
// WG (bool): one 256-wide workgroup per output with a tree reduction in
// workgroup memory (long reductions); otherwise one invocation per output
// (many short reductions).

struct Params {
    n_out: u32,
    n_red: u32,     // reduced elements per output
    scale: f32,     // 1 for sum, 1/n_red for mean
    _pad0: u32,
    kshape: vec4<u32>,
    kstride: vec4<u32>,
    rshape: vec4<u32>,
    rstride: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// Input offset of a linear index over groups 0..=top of (shape, stride).
fn offset(idx: u32, shape: vec4<u32>, stride: vec4<u32>, top: i32) -> u32 {
    var t = idx;
    var o = 0u;
    for (var d = top; d >= 0; d--) {
        let q = t / shape[d];
        o += (t - q * shape[d]) * stride[d];
        t = q;
    }
    return o;
}

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    // The innermost reduced group is walked by a plain stride; only the
    // outer groups need the (division-heavy) index split.
    let inner = p.rshape[3];
    let ist = p.rstride[3];
    let n_outer = p.n_red / inner;
    if WG {
        // g is uniform across the workgroup, so this early return keeps
        // the barriers below in uniform control flow.
        if g >= p.n_out { return; }
        let base = offset(g, p.kshape, p.kstride, 3);
        var s = 0.0;
        if inner >= 128u {
            for (var ro = 0u; ro < n_outer; ro++) {
                let b = base + offset(ro, p.rshape, p.rstride, 2);
                for (var ri = lid; ri < inner; ri += 256u) {
                    s += f32(x[b + ri * ist]);
                }
            }
        } else {
            for (var r = lid; r < p.n_red; r += 256u) {
                s += f32(x[base + offset(r, p.rshape, p.rstride, 3)]);
            }
        }
        part[lid] = s;
        workgroupBarrier();
        for (var w = 128u; w > 0u; w >>= 1u) {
            if lid < w { part[lid] += part[lid + w]; }
            workgroupBarrier();
        }
        if lid == 0u { y[g] = T(part[0] * p.scale); }
        return;
    }
    let i = g * 256u + lid;
    if i >= p.n_out { return; }
    let base = offset(i, p.kshape, p.kstride, 3);
    var s = 0.0;
    for (var ro = 0u; ro < n_outer; ro++) {
        let b = base + offset(ro, p.rshape, p.rstride, 2);
        for (var ri = 0u; ri < inner; ri++) {
            s += f32(x[b + ri * ist]);
        }
    }
    y[i] = T(s * p.scale);
}
