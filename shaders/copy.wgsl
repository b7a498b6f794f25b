// Streaming copy `dst[i] = src[i]` over u32 words: the reference for the adapter's memory
// bandwidth that `webvlm bench --backend gpu` quotes every kernel against.
// Each invocation moves one vec4<u32> (16 bytes) per grid stride.

struct Params {
    n_vec4: u32,  // number of vec4<u32> to copy
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * 256u;
    for (var i = gid.x; i < params.n_vec4; i += stride) {
        dst[i] = src[i];
    }
}
