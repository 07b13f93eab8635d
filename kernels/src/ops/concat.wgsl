// Strided block copy: `rows` rows of `row` contiguous elements from x to y,
//   y[dst_off + r * dst_stride + c] = x[src_off + r * src_stride + c].
// Concat writes each input into its slice of the output with it (rows =
// product of the dims before the axis, row = axis * inner); slice uses it to
// read a window of the input.

struct Params {
    n: u32,          // elements copied = rows * row
    row: u32,
    src_stride: u32,
    dst_stride: u32,
    src_off: u32,
    dst_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    let r = i / p.row;
    let c = i - r * p.row;
    y[p.dst_off + r * p.dst_stride + c] = x[p.src_off + r * p.src_stride + c];
}
