// Device roofline probes: what one multiply-add and one per-lane vec4 load or
// store cost on this adapter. `roofline.rs` turns their timings into the
// lower bound on a model's time that the IS-Net benchmark prints.

struct Params {
    n: u32,      // invocations
    iters: u32,  // `mac`: loop trips
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

// Multiply-add chains `c = c * a + b` from registers only, 32 vec4 steps per
// loop trip: the multiply-add ceiling. Lavapipe splits `fma` into a multiply
// and an add, so the WGSL spells the two out. Which chain count runs fastest
// depends on the CPU's latencies, so there are two shapes and the caller
// keeps the faster: `mac_wide` (8 chains) and `mac_deep` (2 chains).
//
// The steps are written out on purpose. Written as loops they measure the
// loop, not the multiply-adds: on lavapipe an inner constant loop gave 33 G/s
// and an array of chains indexed in a loop 19 G/s, against 50-65 G/s here.
//
// No probe branches on its index: a lane past `n` redoes the last lane's work
// and writes the same values. A bounds check with an early return would put
// the loops under an execution mask, which lavapipe pays for on every
// loop-carried value, and the figures would understate the device.
@compute @workgroup_size(64)
fn mac_wide(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = min(gid.x, p.n - 1u);
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    let c = vec4<f32>(f32(g % 16u), 1.0, 2.0, 3.0);
    var c0 = c;
    var c1 = c + 1.0;
    var c2 = c + 2.0;
    var c3 = c + 3.0;
    var c4 = c + 4.0;
    var c5 = c + 5.0;
    var c6 = c + 6.0;
    var c7 = c + 7.0;
    for (var i = 0u; i < p.iters; i++) {
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c2 = c2 * a + b;
        c3 = c3 * a + b;
        c4 = c4 * a + b;
        c5 = c5 * a + b;
        c6 = c6 * a + b;
        c7 = c7 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c2 = c2 * a + b;
        c3 = c3 * a + b;
        c4 = c4 * a + b;
        c5 = c5 * a + b;
        c6 = c6 * a + b;
        c7 = c7 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c2 = c2 * a + b;
        c3 = c3 * a + b;
        c4 = c4 * a + b;
        c5 = c5 * a + b;
        c6 = c6 * a + b;
        c7 = c7 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c2 = c2 * a + b;
        c3 = c3 * a + b;
        c4 = c4 * a + b;
        c5 = c5 * a + b;
        c6 = c6 * a + b;
        c7 = c7 * a + b;
    }
    dst[g] = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7));
}

@compute @workgroup_size(64)
fn mac_deep(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = min(gid.x, p.n - 1u);
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    let c = vec4<f32>(f32(g % 16u), 1.0, 2.0, 3.0);
    var c0 = c;
    var c1 = c + 1.0;
    for (var i = 0u; i < p.iters; i++) {
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c0 = c0 * a + b;
        c1 = c1 * a + b;
    }
    dst[g] = c0 + c1;
}

// LANE_VECS vec4 loads per invocation; neighbouring lanes read neighbouring
// vec4s, as the Winograd passes do. The constant trip count lets the driver
// unroll the loop, so the figure is the loads' own cost.
@compute @workgroup_size(64)
fn load(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = min(gid.x, p.n - 1u);
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < LANE_VECS; i++) {
        s += src[i * p.n + g];
    }
    dst[g] = s;
}

// LANE_VECS vec4 stores per invocation, laid out as `load` reads.
@compute @workgroup_size(64)
fn store(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = min(gid.x, p.n - 1u);
    let v = vec4<f32>(f32(g));
    for (var i = 0u; i < LANE_VECS; i++) {
        dst[i * p.n + g] = v + f32(i);
    }
}
