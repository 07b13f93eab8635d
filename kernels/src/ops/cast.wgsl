// Storage dtype conversion: x is `T` (the source dtype), y is `D` (the
// destination dtype, aliased by an include). Values outside f16's range are
// saturated to +-65504 because WGSL leaves out-of-range conversions
// indeterminate.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<D>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    y[i] = D(clamp(f32(x[i]), -65504.0, 65504.0));
}
