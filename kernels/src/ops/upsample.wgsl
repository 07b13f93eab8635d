// 2-D resize of NCHW planes, one invocation per output element.
// BILINEAR (bool) picks bilinear over nearest; ALIGN (bool) is
// align_corners for bilinear. Source coordinates follow PyTorch's
// F.interpolate so models trained with it see the same pixels.

struct Params {
    n: u32,       // output element count
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    _pad0: u32,
    scale_h: f32, // in/out, or (in-1)/(out-1) with ALIGN
    scale_w: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// Nearest: floor(dst * in / out) in exact integer arithmetic (the product
// fits u32 for any size a binding can hold along one axis).
fn nearest(dst: u32, n_in: u32, n_out: u32) -> u32 {
    return min(dst * n_in / n_out, n_in - 1u);
}

// Fractional source coordinate, clamped at 0 for half-pixel centres.
fn src_coord(dst: u32, scale: f32) -> f32 {
    if ALIGN { return scale * f32(dst); }
    return max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let plane = i / (p.out_w * p.out_h);
    let base = plane * p.in_h * p.in_w;
    if !BILINEAR {
        let sy = nearest(oy, p.in_h, p.out_h);
        let sx = nearest(ox, p.in_w, p.out_w);
        y[i] = x[base + sy * p.in_w + sx];
        return;
    }
    let fy = src_coord(oy, p.scale_h);
    let fx = src_coord(ox, p.scale_w);
    let y0 = min(u32(fy), p.in_h - 1u);
    let x0 = min(u32(fx), p.in_w - 1u);
    let y1 = min(y0 + 1u, p.in_h - 1u);
    let x1 = min(x0 + 1u, p.in_w - 1u);
    let ly = fy - f32(y0);
    let lx = fx - f32(x0);
    let r0 = base + y0 * p.in_w;
    let r1 = base + y1 * p.in_w;
    let top = f32(x[r0 + x0]) * (1.0 - lx) + f32(x[r0 + x1]) * lx;
    let bot = f32(x[r1 + x0]) * (1.0 - lx) + f32(x[r1 + x1]) * lx;
    y[i] = T(top * (1.0 - ly) + bot * ly);
}
