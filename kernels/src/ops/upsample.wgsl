// 2-D resize of NCHW planes. Each invocation writes RUN consecutive outputs
// of one row, so the index split (integer divisions, which CPU adapters
// emulate lane by lane) is paid once per run; GPUs use RUN = 1 for
// coalesced stores. BILINEAR (bool) picks bilinear over nearest; ALIGN
// (bool) is align_corners. Coordinates follow PyTorch's F.interpolate.

struct Params {
    n: u32,         // runs in the output
    runs_row: u32,  // runs per output row
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    step: u32,      // in_w / out_w: nearest source step per output ...
    step_rem: u32,  // ... and its remainder in_w % out_w
    scale_h: f32,   // in/out, or (in-1)/(out-1) with ALIGN
    scale_w: f32,
    c: u32,         // channels of x
    out_c: u32,     // channels of y: x's planes land at out_off.. of each batch
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// Fractional source coordinate, clamped at 0 for half-pixel centres.
fn src_coord(dst: u32, scale: f32) -> f32 {
    if ALIGN { return scale * f32(dst); }
    return max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = (wid.x + wid.y * nwg.x) * 256u + lid;
    if g >= p.n { return; }
    let row = g / p.runs_row;              // plane * out_h + oy
    let ox0 = (g - row * p.runs_row) * RUN;
    let oy = row % p.out_h;
    let plane = row / p.out_h;
    let base = plane * p.in_h * p.in_w;
    let oplane = (plane / p.c) * p.out_c + p.out_off + plane % p.c;
    let obase = (oplane * p.out_h + oy) * p.out_w;
    let end = min(ox0 + RUN, p.out_w);
    if !BILINEAR {
        // floor(dst * in / out) exactly, stepped without dividing again.
        let sy = min(oy * p.in_h / p.out_h, p.in_h - 1u);
        let srow = base + sy * p.in_w;
        let t = ox0 * p.in_w;
        var sx = t / p.out_w;
        var rem = t - sx * p.out_w;
        for (var ox = ox0; ox < end; ox++) {
            y[obase + ox] = x[srow + min(sx, p.in_w - 1u)];
            sx += p.step;
            rem += p.step_rem;
            if rem >= p.out_w { rem -= p.out_w; sx += 1u; }
        }
        return;
    }
    let fy = src_coord(oy, p.scale_h);
    let y0 = min(u32(fy), p.in_h - 1u);
    let y1 = min(y0 + 1u, p.in_h - 1u);
    let ly = fy - f32(y0);
    let r0 = base + y0 * p.in_w;
    let r1 = base + y1 * p.in_w;
    for (var ox = ox0; ox < end; ox++) {
        let fx = src_coord(ox, p.scale_w);
        let x0 = min(u32(fx), p.in_w - 1u);
        let x1 = min(x0 + 1u, p.in_w - 1u);
        let lx = fx - f32(x0);
        let top = f32(x[r0 + x0]) * (1.0 - lx) + f32(x[r0 + x1]) * lx;
        let bot = f32(x[r1 + x0]) * (1.0 - lx) + f32(x[r1 + x1]) * lx;
        y[obase + ox] = T(top * (1.0 - ly) + bot * ly);
    }
}
