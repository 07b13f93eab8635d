// 2-D max / average pooling of NCHW planes, one invocation per output.
// MAX (bool) picks max over average. Windows follow PyTorch: padding never
// wins a max, and the average divides by the window clipped to the padded
// input (count_include_pad) or to the input itself.

struct Params {
    n: u32,
    in_h: i32,
    in_w: i32,
    out_h: u32,
    out_w: u32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    include_pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    let ox = i32(i % p.out_w);
    let oy = i32((i / p.out_w) % p.out_h);
    let plane = i / (p.out_w * p.out_h);
    let base = plane * u32(p.in_h * p.in_w);
    let ys = oy * p.sh - p.ph;
    let xs = ox * p.sw - p.pw;
    let y0 = max(ys, 0);
    let x0 = max(xs, 0);
    let y1 = min(ys + p.kh, p.in_h);
    let x1 = min(xs + p.kw, p.in_w);
    if MAX {
        // The launcher's size rules guarantee every window holds an input.
        var m = f32(x[base + u32(y0 * p.in_w + x0)]);
        for (var yy = y0; yy < y1; yy++) {
            let row = base + u32(yy * p.in_w);
            for (var xx = x0; xx < x1; xx++) {
                let v = f32(x[row + u32(xx)]);
                // NaN propagates, as in PyTorch.
                if v > m || v != v { m = v; }
            }
        }
        y[i] = T(m);
        return;
    }
    var s = 0.0;
    for (var yy = y0; yy < y1; yy++) {
        let row = base + u32(yy * p.in_w);
        for (var xx = x0; xx < x1; xx++) {
            s += f32(x[row + u32(xx)]);
        }
    }
    var count = (y1 - y0) * (x1 - x0);
    if p.include_pad != 0u {
        count = (min(ys + p.kh, p.in_h + p.ph) - ys) * (min(xs + p.kw, p.in_w + p.pw) - xs);
    }
    y[i] = T(s / f32(max(count, 1)));
}

// 2x2 windows, stride 2, no padding, input width a multiple of 8: each
// invocation writes 4 consecutive outputs of a row from 4 aligned vector
// loads and one vector store (on lavapipe every load and store is a
// per-lane loop, and one vector costs far less than 4 scalars). With an odd
// input height (ceil_mode) the last window row repeats the last input row.
@group(0) @binding(1) var<storage, read> x4: array<T4>;
@group(0) @binding(2) var<storage, read_write> y4: array<T4>;

// Max that lets NaN win, as the scalar loop does.
fn mx(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(a, b, b > a | b != b);
}

@compute @workgroup_size(256)
fn max2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    let q = p.out_w / 4u;             // output vectors per row
    let row = i / q;                  // plane * out_h + oy
    let k = i - row * q;
    let oy = row % p.out_h;
    let plane = row / p.out_h;
    let w4 = u32(p.in_w) / 4u;
    let y0 = 2u * oy;
    let y1 = min(y0 + 1u, u32(p.in_h) - 1u);
    let b = plane * u32(p.in_h) * w4 + 2u * k;
    let a0 = vec4<f32>(x4[b + y0 * w4]);
    let a1 = vec4<f32>(x4[b + y0 * w4 + 1u]);
    let c0 = vec4<f32>(x4[b + y1 * w4]);
    let c1 = vec4<f32>(x4[b + y1 * w4 + 1u]);
    let m0 = mx(a0, c0);
    let m1 = mx(a1, c1);
    // Pairs (x, y) and (z, w) of each row vector are one window each.
    let l = vec4<f32>(m0.x, m0.z, m1.x, m1.z);
    let r = vec4<f32>(m0.y, m0.w, m1.y, m1.w);
    y4[i] = T4(mx(l, r));
}
