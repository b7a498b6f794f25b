// Activation in place: x[i] = act(x[i]) with ACT (override) 0 = silu, 1 = gelu_tanh,
// 2 = gelu (erf), 3 = quick_gelu, 4 = relu (CLIP / SigLIP MLPs and the projector).
// CPU reference: src/vision/ops.rs `Activation::eval`. One invocation per element.

struct Params {
    n: u32,  // elements
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

override ACT: u32 = 3u;

// include: act_fns

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.n) {
        return;
    }
    x[i] = activate(ACT, x[i]);
}
