// Element-wise binary op with NumPy broadcasting:
//   y = OP(alpha * a, beta * b)        OP: 0 add, 1 sub, 2 mul, 3 div
// Two entry points:
//   main_vec4: equal shapes, element count divisible by 4 -> one vec4 per invocation.
//   main:      general strided path; the launcher collapses dims first, so the
//              per-element index decomposition loop is usually 1-3 iterations.
// The grid is 1-D, split over x/y (see Gpu::grid).

struct Params {
    n: u32,                        // invocations needed (elements, or vec4s in main_vec4)
    rank: u32,                     // collapsed output rank (<= 8)
    alpha: f32,
    beta: f32,
    shape: array<vec4<u32>, 2>,    // collapsed output shape, outermost first
    sa: array<vec4<u32>, 2>,       // a's element strides per output dim (0 = broadcast)
    sb: array<vec4<u32>, 2>,       // b's element strides per output dim (0 = broadcast)
}

@group(0) @binding(0) var<uniform> p: Params;
// Both views alias the same bindings; each entry point uses only one of them.
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(1) var<storage, read> a4: array<T4>;
@group(0) @binding(2) var<storage, read> b4: array<T4>;
@group(0) @binding(3) var<storage, read_write> y4: array<T4>;

fn combine(u: f32, v: f32) -> f32 {
    if OP == 1u { return u - v; }
    if OP == 2u { return u * v; }
    if OP == 3u { return u / v; }
    return u + v;
}

fn combine4(u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    if OP == 1u { return u - v; }
    if OP == 2u { return u * v; }
    if OP == 3u { return u / v; }
    return u + v;
}

@compute @workgroup_size(256)
fn main_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    let r = combine4(p.alpha * vec4<f32>(a4[i]), p.beta * vec4<f32>(b4[i]));
    y4[i] = T4(r);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    // Innermost dim first: peel coordinates off the linear output index.
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let c = u32(d) % 4u;
        let s = p.shape[q][c];
        let coord = rem % s;
        rem = rem / s;
        ia += coord * p.sa[q][c];
        ib += coord * p.sb[q][c];
    }
    y[i] = T(combine(p.alpha * f32(a[ia]), p.beta * f32(b[ib])));
}
