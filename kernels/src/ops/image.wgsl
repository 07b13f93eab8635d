// Conversion between interleaved 8/16-bit pixels and [1, C, H, W] tensors.
// Pixels travel as packed u32 words (little-endian bytes / u16s). The
// include sets S (source element) and D (destination element):
// u32 -> T for image_to_tensor, T -> u32 for tensor_to_image (TO_IMAGE).

struct Params {
    n: u32,          // to tensor: output elements; to image: output words
    hw: u32,         // pixels per plane
    channels: u32,   // interleaved channels of the image
    bits: u32,       // 8 or 16
    n_samples: u32,  // hw * channels (to image)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    scale: vec4<f32>,
    offset: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<S>;
@group(0) @binding(2) var<storage, read_write> dst: array<D>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if i >= p.n { return; }
    let per_word = 32u / p.bits;
    let mask = (1u << p.bits) - 1u;
    if TO_IMAGE {
        // One output word: its 4 bytes or 2 u16s are consecutive samples.
        let maxv = f32(mask);
        var word = 0u;
        for (var j = 0u; j < per_word; j++) {
            let k = i * per_word + j;
            if k >= p.n_samples { break; }
            let c = k % p.channels;
            let v = f32(src[c * p.hw + k / p.channels]) * p.scale[c] + p.offset[c];
            let raw = u32(floor(clamp(v, 0.0, maxv) + 0.5));
            word |= raw << (j * p.bits);
        }
        dst[i] = D(word);
        return;
    }
    // One output element: channel c of pixel `pix`, sample k of the image.
    let c = i / p.hw;
    let k = (i - c * p.hw) * p.channels + c;
    let raw = (u32(src[k / per_word]) >> ((k % per_word) * p.bits)) & mask;
    dst[i] = D(f32(raw) * p.scale[c] + p.offset[c]);
}
