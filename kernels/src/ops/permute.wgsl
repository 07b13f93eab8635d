// Permutation of up to 6 axes, one invocation per output element: the
// output index is split over the output shape and each coordinate steps
// through the input by that axis' input stride. The launcher merges axes
// that stay adjacent and pads the shape to 6 with leading 1s.
// `main4`: the same over vec4 elements, when the innermost axis stays innermost with a
// length that is a multiple of 4 (the launcher divides that length and every stride by 4):
// a quarter of the index arithmetic (six integer divisions, costly on CPU adapters) and
// whole-vector copies.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    shape: array<vec4<u32>, 2>,    // output shape, dims 0..6
    stride: array<vec4<u32>, 2>,   // input stride of each output dim
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;
@group(0) @binding(1) var<storage, read> x4: array<T4>;
@group(0) @binding(2) var<storage, read_write> y4: array<T4>;

// Input index of output element i.
fn source(i: u32) -> u32 {
    var t = i;
    var src = 0u;
    for (var d = 5; d >= 0; d--) {
        let s = p.shape[d / 4][d % 4];
        let q = t / s;
        src += (t - q * s) * p.stride[d / 4][d % 4];
        t = q;
    }
    return src;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    y[i] = x[source(i)];
}

@compute @workgroup_size(256)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    y4[i] = x4[source(i)];
}
