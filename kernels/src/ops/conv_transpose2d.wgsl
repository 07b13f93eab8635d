// Transposed 2-D convolution (PyTorch ConvTranspose2d), NCHW. One output
// element per invocation gathers the inputs that scatter onto it:
//   oy = iy * sh - ph + ky * dh  <=>  iy = (oy + ph - ky * dh) / sh, exact.
// Weights [Cin, Cout/groups, KH, KW]. Prelude constant: HAS_BIAS.

struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, ph: u32,
    pw: u32, dh: u32, dw: u32, cin_g: u32,
    cout_g: u32, total: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

// Input index along one axis for output o and tap k, or -1 when no input
// lands there.
fn src(o: u32, k: u32, s: u32, pad: u32, d: u32, size: u32) -> i32 {
    let t = i32(o + pad) - i32(k * d);
    if t < 0 || t % i32(s) != 0 { return -1; }
    let i = t / i32(s);
    return select(-1, i, i < i32(size));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let ox = i % p.wo;
    let oy = (i / p.wo) % p.ho;
    let co = (i / (p.wo * p.ho)) % p.cout;
    let n = i / (p.wo * p.ho * p.cout);
    let g = co / p.cout_g;
    let cg = co % p.cout_g;
    var acc = 0.0;
    if HAS_BIAS { acc = f32(bias[co]); }
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = src(oy, ky, p.sh, p.ph, p.dh, p.h);
        if iy < 0 { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = src(ox, kx, p.sw, p.pw, p.dw, p.w);
            if ix < 0 { continue; }
            for (var c = 0u; c < p.cin_g; c++) {
                let ci = g * p.cin_g + c;
                let xv = f32(x[((n * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)]);
                acc += xv * f32(w[((ci * p.cout_g + cg) * p.kh + ky) * p.kw + kx]);
            }
        }
    }
    y[i] = T(acc);
}
