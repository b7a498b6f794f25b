// Combine the split-K partials of attention_decode.wgsl: for head h,
// M = max_s m_s, L = sum_s l_s e^(m_s - M), out[h, d] = sum_s acc_s[d] e^(m_s - M) / L.
// part_ml: [heads, n_split, 2], part_acc: [heads, n_split, head_dim] -> out: [heads, head_dim].
// Empty splits carry m = -3e38, l = 0, acc = 0 and weigh nothing.
// CPU reference: src/model/attention.rs `attend` (the softmax-weighted sum).

struct Params {
    heads: u32,
    head_dim: u32,
    n_split: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> part_ml: array<f32>;
@group(0) @binding(2) var<storage, read> part_acc: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let ns = params.n_split;
    let hd = params.head_dim;
    var mx = -3.0e38;
    for (var s = 0u; s < ns; s++) {
        mx = max(mx, part_ml[2u * (h * ns + s)]);
    }
    var l = 0.0;
    for (var s = 0u; s < ns; s++) {
        let p = h * ns + s;
        l += part_ml[2u * p + 1u] * exp(part_ml[2u * p] - mx);
    }
    let inv = 1.0 / l;
    for (var d = lid; d < hd; d += 64u) {
        var a = 0.0;
        for (var s = 0u; s < ns; s++) {
            let p = h * ns + s;
            a += part_acc[p * hd + d] * exp(part_ml[2u * p] - mx);
        }
        out[h * hd + d] = a * inv;
    }
}
