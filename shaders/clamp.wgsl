// Clamp in place: x[i] = clamp(x[i], -m, m) (OLMo's clip_qkv on q, k and v).
// CPU reference: src/model/llama.rs `layer_forward` (`e.clamp(-m, m)`). One invocation per element.

struct Params {
    n: u32,  // elements
    m: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.n) {
        return;
    }
    x[i] = clamp(x[i], -params.m, params.m);
}
