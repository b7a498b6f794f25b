// Gated MLP in place: gate[i] = act(gate[i]) * up[i] with ACT (override) 0 = SiLU (SwiGLU),
// 1 = gelu_pytorch_tanh, 2 = exact erf GELU (GeGLU), as in act_fns.wgsl.
// CPU reference: src/model/ops.rs `glu`. One invocation per element, grid folded into y.

struct Params {
    n: u32,  // elements
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> gate: array<f32>;

override ACT: u32 = 0u;

// include: act_fns

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.n) {
        return;
    }
    gate[i] = activate(ACT, gate[i]) * up[i];
}
