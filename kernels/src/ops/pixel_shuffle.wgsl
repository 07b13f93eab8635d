// Pixel shuffle / unshuffle, one invocation per output element.
// Shuffle:   x [N, C*r*r, H, W]   -> y [N, C, H*r, W*r]
// Unshuffle: x [N, C, H*r, W*r]   -> y [N, C*r*r, H, W]
// with y[n, c, h*r+i, w*r+j] <-> x[n, c*r*r + i*r + j, h, w]. UNSHUFFLE
// (bool) picks the direction; h, w, c below always index the small grid.

struct Params {
    n: u32,  // element count
    c: u32,  // channels of the large-image side
    h: u32,  // height of the small-image side
    w: u32,
    r: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o = (wid.x + wid.y * nwg.x) * 256u + lid;
    if o >= p.n { return; }
    let r = p.r;
    let big_w = p.w * r;
    let big_h = p.h * r;
    // Decompose the index in the large-image layout [N, C, H*r, W*r] ...
    var t = o;
    if UNSHUFFLE {
        // ... except for unshuffle, whose output is the channel-major side:
        // walk [N, C, r, r, H, W] and map to the large image.
        let w = t % p.w; t /= p.w;
        let h = t % p.h; t /= p.h;
        let j = t % r; t /= r;
        let i = t % r; t /= r;
        let c = t % p.c;
        let n = t / p.c;
        y[o] = x[((n * p.c + c) * big_h + h * r + i) * big_w + w * r + j];
        return;
    }
    let bx = t % big_w; t /= big_w;
    let by = t % big_h; t /= big_h;
    let c = t % p.c;
    let n = t / p.c;
    let cin = (c * r + by % r) * r + bx % r;
    y[o] = x[((n * p.c * r * r + cin) * p.h + by / r) * p.w + bx / r];
}
