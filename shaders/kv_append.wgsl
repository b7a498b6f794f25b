// Append k, v: [n, kv_heads, head_dim] to the caches [capacity, kv_heads, head_dim] at rows
// Step.pos0 .. Step.pos0 + n (the position comes from Step so a decode plan replays).
// CPU reference: src/model/kv.rs `KvCache::append`. One invocation per float of k (and v).

struct Params {
    total: u32,  // n * kv_heads * head_dim
    row: u32,    // kv_heads * head_dim
}

struct Step {
    pos0: u32,
    n: u32,
    kv_len: u32,
    seed: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if (idx >= params.total) {
        return;
    }
    let dst = step.pos0 * params.row + idx;
    k_cache[dst] = k[idx];
    v_cache[dst] = v[idx];
}
