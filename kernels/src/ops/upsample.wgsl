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

// Bilinear with RUN = 8 and an output width a multiple of 8: the 8 outputs
// are straight-line code (no loop, so lavapipe masks nothing), source
// columns shared by neighbouring outputs are loaded once (upsampling reads
// each column pair for several outputs), and the run is stored as two
// aligned vectors. Loads and stores, per-lane loops on lavapipe, set the
// speed there.
@group(0) @binding(2) var<storage, read_write> y4: array<T4>;

struct Cols { c0: u32, c1: u32, t0: f32, t1: f32, b0: f32, b1: f32 }

// Output column ox from rows r0 (top) and r1 (bottom), loading only the
// source columns that `s` (the previous output's) does not hold.
fn bil(ox: u32, r0: u32, r1: u32, ly: f32, s: ptr<function, Cols>) -> f32 {
    let fx = src_coord(ox, p.scale_w);
    let x0 = min(u32(fx), p.in_w - 1u);
    let x1 = min(x0 + 1u, p.in_w - 1u);
    let lx = fx - f32(x0);
    if x0 != (*s).c0 {
        if x0 == (*s).c1 {
            (*s).t0 = (*s).t1;
            (*s).b0 = (*s).b1;
        } else {
            (*s).t0 = f32(x[r0 + x0]);
            (*s).b0 = f32(x[r1 + x0]);
        }
        (*s).c0 = x0;
    }
    if x1 != (*s).c1 {
        if x1 == x0 {
            (*s).t1 = (*s).t0;
            (*s).b1 = (*s).b0;
        } else {
            (*s).t1 = f32(x[r0 + x1]);
            (*s).b1 = f32(x[r1 + x1]);
        }
        (*s).c1 = x1;
    }
    let top = (*s).t0 * (1.0 - lx) + (*s).t1 * lx;
    let bot = (*s).b0 * (1.0 - lx) + (*s).b1 * lx;
    return top * (1.0 - ly) + bot * ly;
}

@compute @workgroup_size(256)
fn bil8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = (wid.x + wid.y * nwg.x) * 256u + lid;
    if g >= p.n { return; }
    let row = g / p.runs_row;
    let ox0 = (g - row * p.runs_row) * 8u;
    let oy = row % p.out_h;
    let plane = row / p.out_h;
    let base = plane * p.in_h * p.in_w;
    let oplane = (plane / p.c) * p.out_c + p.out_off + plane % p.c;
    let o4 = ((oplane * p.out_h + oy) * p.out_w + ox0) / 4u;
    let fy = src_coord(oy, p.scale_h);
    let y0 = min(u32(fy), p.in_h - 1u);
    let y1 = min(y0 + 1u, p.in_h - 1u);
    let ly = fy - f32(y0);
    let r0 = base + y0 * p.in_w;
    let r1 = base + y1 * p.in_w;
    var s = Cols(0xffffffffu, 0xffffffffu, 0.0, 0.0, 0.0, 0.0);
    let v0 = bil(ox0, r0, r1, ly, &s);
    let v1 = bil(ox0 + 1u, r0, r1, ly, &s);
    let v2 = bil(ox0 + 2u, r0, r1, ly, &s);
    let v3 = bil(ox0 + 3u, r0, r1, ly, &s);
    let v4 = bil(ox0 + 4u, r0, r1, ly, &s);
    let v5 = bil(ox0 + 5u, r0, r1, ly, &s);
    let v6 = bil(ox0 + 6u, r0, r1, ly, &s);
    let v7 = bil(ox0 + 7u, r0, r1, ly, &s);
    y4[o4] = T4(vec4<f32>(v0, v1, v2, v3));
    y4[o4 + 1u] = T4(vec4<f32>(v4, v5, v6, v7));
}
