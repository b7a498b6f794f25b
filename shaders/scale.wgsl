// Scale in place: x[i] *= s (Gemma's embedding scale sqrt(hidden), OLMo's logit scale).
// CPU reference: src/model/llama.rs `forward_embeds`. One invocation per element.

struct Params {
    n: u32,  // elements
    s: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.n) {
        return;
    }
    x[i] = x[i] * params.s;
}
