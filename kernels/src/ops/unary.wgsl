// Element-wise activation with scale and shift:
//   y = act(x * scale + shift, slope[c]) * out_scale + out_shift
// Each invocation handles one element; the grid is 1-D, split over x/y.

struct Params {
    n: u32,            // element count
    channels: u32,     // size of the channel axis (PReLU), 1 otherwise
    inner: u32,        // elements per channel step (product of dims after the channel axis)
    slope_n: u32,      // 1 = one shared slope, else per channel
    scale: f32,
    shift: f32,
    slope: f32,        // leaky_relu slope
    out_scale: f32,
    out_shift: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> slopes: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    var s = p.slope;
    if ACT == 3u {
        let c = select((i / p.inner) % p.channels, 0u, p.slope_n == 1u);
        s = f32(slopes[c]);
    }
    let v = f32(x[i]) * p.scale + p.shift;
    y[i] = T(activate(v, s) * p.out_scale + p.out_shift);
}
