// LayerNorm of each row: y = (x - mean) / sqrt(var + eps) * w + b with the biased variance,
// x, y: [n, d], w, b: [d] (each optional: has_w / has_b = 0 binds a dummy buffer).
// CPU reference: src/model/ops.rs `layer_norm` (OLMo) and src/vision/ops.rs `layer_norm` (CLIP).
// Two passes over the row (mean, then centered squares). One workgroup per row.

struct Params {
    n: u32,
    d: u32,
    eps: f32,
    has_w: u32,
    has_b: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// include: wg_reduce

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= params.n) {
        return;
    }
    let base = row * params.d;
    let nd = f32(params.d);
    var s = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        s += x[base + i];
    }
    let mean = wg_sum(s, lid) / nd;
    var ss = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let c = x[base + i] - mean;
        ss += c * c;
    }
    let inv = 1.0 / sqrt(wg_sum(ss, lid) / nd + params.eps);
    for (var i = lid; i < params.d; i += WG) {
        var z = (x[base + i] - mean) * inv;
        if (params.has_w != 0u) {
            z = z * w[i];
        }
        if (params.has_b != 0u) {
            z = z + b[i];
        }
        y[base + i] = z;
    }
}
