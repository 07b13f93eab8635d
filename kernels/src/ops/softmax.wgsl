// Numerically stable softmax over the last axis. One workgroup per row:
// pass 1 keeps an online (running max, running sum of exp) pair per thread
// and merges the pairs with a shared-memory tree; pass 2 writes
// exp(x - max) / sum. Two reads of the row instead of three.
// WG (threads per workgroup) comes from the launcher.

struct Params {
    rows: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// A finite "minus infinity" so exp(m1 - m) never sees inf - inf = NaN for
// threads that saw no element.
const LOWEST: f32 = -3.0e38;

var<workgroup> sh_m: array<f32, WG>;
var<workgroup> sh_s: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.rows { return; }
    let base = row * p.len;

    var m = LOWEST;
    var s = 0.0;
    for (var j = lid; j < p.len; j += WG) {
        let v = f32(x[base + j]);
        if v > m {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
    sh_m[lid] = m;
    sh_s[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            let m1 = sh_m[lid];
            let m2 = sh_m[lid + stride];
            let mm = max(m1, m2);
            sh_s[lid] = sh_s[lid] * exp(m1 - mm) + sh_s[lid + stride] * exp(m2 - mm);
            sh_m[lid] = mm;
        }
        workgroupBarrier();
    }
    let row_max = sh_m[0];
    let inv = 1.0 / sh_s[0];
    for (var j = lid; j < p.len; j += WG) {
        y[base + j] = T(exp(f32(x[base + j]) - row_max) * inv);
    }
}
