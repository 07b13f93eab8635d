// Deformable 2-D convolution (torchvision.ops.deform_conv2d, DCNv1/v2) as a
// deformable im2col followed by the shared matmul (see deform_conv2d.rs).
// Entry points (they share the bindings below):
//   gather: columns [NB, Cin*KH*KW, PC] for images [n0, n0+NB) and output
//           pixels [p0, p0+PC): the bilinear sample of channel c at tap k,
//           times the modulation mask. One invocation per (image, offset
//           group, tap, pixel): the 4 corner weights are computed once and
//           reused for every channel of the offset group.
//   place:  copies a matmul result [NB, Cout, PC] into the output at
//           pixels [p0, p0+PC) and adds the bias.
//   add_bias: adds the bias in place (when one matmul produced the whole output).
//   pack:   weights [Cout, Cin, KH, KW] (x) -> [Cout/32][KH*KW][Cin][32] (out).
//   fused:  CPU adapters (8-lane subgroups): the whole conv in one pass,
//           see below.
// Prelude constants: HAS_MASK, HAS_BIAS.

struct Params {
    cin: u32, h: u32, w: u32, ho: u32,
    wo: u32, kh: u32, kw: u32, sh: u32,
    sw: u32, ph: u32, pw: u32, dh: u32,
    dw: u32, groups: u32, cpg: u32, cout: u32,
    n0: u32, nb: u32, p0: u32, pc: u32,
    total: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> offset: array<T>;
@group(0) @binding(3) var<storage, read> mask: array<T>;
@group(0) @binding(4) var<storage, read> bias: array<T>;
@group(0) @binding(5) var<storage, read> wp: array<T4>;
@group(0) @binding(6) var<storage, read_write> out: array<T>;

// Bilinear corners of the sample of (image n, offset group g, tap, output
// pixel q): indices into one channel plane and weights (mask folded in).
// Corners outside the image read index 0 with weight 0.
struct Sample { i: vec4<u32>, w: vec4<f32> }

fn setup(n: u32, g: u32, tap: u32, q: u32) -> Sample {
    let kk = p.kh * p.kw;
    let hwo = p.ho * p.wo;
    let oy = q / p.wo;
    let ox = q % p.wo;
    let ky = tap / p.kw;
    let kx = tap % p.kw;
    let ob = ((n * p.groups + g) * 2u * kk + 2u * tap) * hwo + q;
    // The integer part is exact; the offset is added in f32 as torchvision does.
    let y = f32(i32(oy * p.sh + ky * p.dh) - i32(p.ph)) + f32(offset[ob]);
    let xx = f32(i32(ox * p.sw + kx * p.dw) - i32(p.pw)) + f32(offset[ob + hwo]);
    var m = 1.0;
    if HAS_MASK { m = f32(mask[((n * p.groups + g) * kk + tap) * hwo + q]); }
    let hf = f32(p.h);
    let wf = f32(p.w);
    // torchvision: a sample at or beyond one pixel outside the image is 0;
    // otherwise each corner outside the image contributes 0.
    let inside = !(y <= -1.0 || y >= hf || xx <= -1.0 || xx >= wf);
    let y0f = floor(y);
    let x0f = floor(xx);
    let ly = y - y0f;
    let lx = xx - x0f;
    let hy = 1.0 - ly;
    let hx = 1.0 - lx;
    // Clamp before converting: huge offsets must not overflow i32.
    let y0 = i32(clamp(y0f, -2.0, hf));
    let x0 = i32(clamp(x0f, -2.0, wf));
    let ih = i32(p.h);
    let iw = i32(p.w);
    let oky0 = inside && y0 >= 0;
    let oky1 = inside && y0 + 1 <= ih - 1;
    let okx0 = x0 >= 0;
    let okx1 = x0 + 1 <= iw - 1;
    // Corner weights with the mask folded in; invalid corners read index 0
    // with weight 0.
    let w1 = select(0.0, hy * hx, oky0 && okx0) * m;
    let w2 = select(0.0, hy * lx, oky0 && okx1) * m;
    let w3 = select(0.0, ly * hx, oky1 && okx0) * m;
    let w4 = select(0.0, ly * lx, oky1 && okx1) * m;
    let r0 = u32(max(y0, 0)) * p.w;
    let r1 = u32(clamp(y0 + 1, 0, ih - 1)) * p.w;
    let c0 = u32(max(x0, 0));
    let c1 = u32(clamp(x0 + 1, 0, iw - 1));
    let i1 = select(0u, r0 + c0, oky0 && okx0);
    let i2 = select(0u, r0 + c1, oky0 && okx1);
    let i3 = select(0u, r1 + c0, oky1 && okx0);
    let i4 = select(0u, r1 + c1, oky1 && okx1);
    return Sample(vec4<u32>(i1, i2, i3, i4), vec4<f32>(w1, w2, w3, w4));
}

fn sample(s: Sample, xb: u32) -> f32 {
    let v = vec4<f32>(f32(x[xb + s.i.x]), f32(x[xb + s.i.y]), f32(x[xb + s.i.z]),
                      f32(x[xb + s.i.w]));
    return dot(s.w, v);
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let kk = p.kh * p.kw;
    // Pixel fastest: neighbouring lanes read neighbouring offsets and write
    // neighbouring columns.
    let j = i % p.pc;
    let tap = (i / p.pc) % kk;
    let g = (i / (p.pc * kk)) % p.groups;
    let b = i / (p.pc * kk * p.groups);
    let n = p.n0 + b;
    let q = p.p0 + j;
    let s = setup(n, g, tap, q);
    let hw = p.h * p.w;
    let kdim = p.cin * kk;
    var xb = (n * p.cin + g * p.cpg) * hw;
    var cb = (b * kdim + g * p.cpg * kk + tap) * p.pc + j;
    for (var c = 0u; c < p.cpg; c++) {
        out[cb] = T(sample(s, xb));
        xb += hw;
        cb += kk * p.pc;
    }
}

@compute @workgroup_size(256)
fn place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let j = i % p.pc;
    let co = (i / p.pc) % p.cout;
    let b = i / (p.pc * p.cout);
    var v = f32(x[i]);
    if HAS_BIAS { v += f32(bias[co]); }
    out[((p.n0 + b) * p.cout + co) * p.ho * p.wo + p.p0 + j] = T(v);
}

@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let co = (i / (p.ho * p.wo)) % p.cout;
    out[i] = T(f32(out[i]) + f32(bias[co]));
}

@compute @workgroup_size(256)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.total { return; }
    let kk = p.kh * p.kw;
    let e = i % 32u;
    let c = (i / 32u) % p.cin;
    let tap = (i / (32u * p.cin)) % kk;
    let co = (i / (32u * p.cin * kk)) * 32u + e;
    var v = T(0.0);
    if co < p.cout { v = x[(co * p.cin + c) * kk + tap]; }
    out[i] = v;
}

// One output pixel x 32 output channels per lane. The channel block comes
// from the workgroup id, so the 8 lanes of a subgroup need the same 32
// weights per (tap, channel): lane l loads vec4 l and subgroupBroadcast
// hands them round (lavapipe runs every storage load as a per-lane loop, so
// loads, not FMAs, set the speed). The bilinear corners are computed once per
// (tap, offset group) and reused for its channels. `total` = workgroups.
// Accumulators are named variables: private arrays spill on lavapipe.
@compute @workgroup_size(64)
fn fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let lane = lid % 8u;
    let wgi = wid.x + wid.y * nwg.x;
    let hwo = p.ho * p.wo;
    let pix_blocks = (hwo + 63u) / 64u;
    let co_blocks = (p.cout + 31u) / 32u;
    let cb = wgi % co_blocks;
    let pb = (wgi / co_blocks) % pix_blocks;
    let n = min(wgi / (co_blocks * pix_blocks), p.nb - 1u);
    let q = min(pb * 64u + lid, hwo - 1u);
    let kk = p.kh * p.kw;
    let hw = p.h * p.w;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    for (var tap = 0u; tap < kk; tap++) {
        for (var g = 0u; g < p.groups; g++) {
            let s = setup(n, g, tap, q);
            var xb = (n * p.cin + g * p.cpg) * hw;
            var wi = ((cb * kk + tap) * p.cin + g * p.cpg) * 8u + lane;
            for (var c = 0u; c < p.cpg; c++) {
                let v = vec4<f32>(sample(s, xb));
                let wl = vec4<f32>(wp[wi]);
                a0 = fma(v, subgroupBroadcast(wl, 0u), a0);
                a1 = fma(v, subgroupBroadcast(wl, 1u), a1);
                a2 = fma(v, subgroupBroadcast(wl, 2u), a2);
                a3 = fma(v, subgroupBroadcast(wl, 3u), a3);
                a4 = fma(v, subgroupBroadcast(wl, 4u), a4);
                a5 = fma(v, subgroupBroadcast(wl, 5u), a5);
                a6 = fma(v, subgroupBroadcast(wl, 6u), a6);
                a7 = fma(v, subgroupBroadcast(wl, 7u), a7);
                xb += hw;
                wi += 8u;
            }
        }
    }
    if wgi >= p.total || pb * 64u + lid >= hwo { return; }
    let co0 = cb * 32u;
    store4(a0, n, co0, q); store4(a1, n, co0 + 4u, q);
    store4(a2, n, co0 + 8u, q); store4(a3, n, co0 + 12u, q);
    store4(a4, n, co0 + 16u, q); store4(a5, n, co0 + 20u, q);
    store4(a6, n, co0 + 24u, q); store4(a7, n, co0 + 28u, q);
}

fn store4(a: vec4<f32>, n: u32, co: u32, q: u32) {
    for (var e = 0u; e < 4u; e++) {
        if co + e < p.cout {
            var v = a[e];
            if HAS_BIAS { v += f32(bias[co + e]); }
            out[(n * p.cout + co + e) * p.ho * p.wo + q] = T(v);
        }
    }
}
