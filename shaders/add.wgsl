// Residual add in place: acc[i] += x[i] over n floats.
// CPU reference: src/model/ops.rs `add_inplace`. One invocation per element, grid folded into y.

struct Params {
    n: u32,  // elements
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.n) {
        return;
    }
    acc[i] = acc[i] + x[i];
}
