// Rotary position embedding in place, HF rotate_half convention, on x: [n, heads, head_dim]:
// for pair j < head_dim/2 at position p = Step.pos0 + t (row t),
//   a = f32(p) * inv_freq[j] (an f32 product, as transformers computes it),
//   x[j] = x[j] cos a - x[j+h] sin a,  x[j+h] = x[j+h] cos a + x[j] sin a,
// cos and sin multiplied by attention_factor (YaRN's; 1 otherwise).
// inv_freq: [head_dim/2], computed on the CPU (default/linear/dynamic/llama3/yarn; the caller
// rewrites it when dynamic NTK changes it). CPU reference: src/model/rope.rs `Rope::apply`.
// One invocation per (row, head, pair), grid folded into y.

struct Params {
    n: u32,
    heads: u32,
    head_dim: u32,
    attention_factor: f32,
}

struct Step {
    pos0: u32,
    n: u32,
    kv_len: u32,
    seed: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

// include: trig

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = params.head_dim / 2u;
    let idx = gid.y * nwg.x * 256u + gid.x;
    if (idx >= params.n * params.heads * half) {
        return;
    }
    let j = idx % half;
    let th = idx / half;               // row * heads + head
    let t = th / params.heads;
    let a = f32(step.pos0 + t) * inv_freq[j];
    let sc = sincos(a) * params.attention_factor;
    let base = th * params.head_dim;
    let lo = x[base + j];
    let hi = x[base + j + half];
    x[base + j] = lo * sc.y - hi * sc.x;
    x[base + j + half] = hi * sc.y + lo * sc.x;
}
