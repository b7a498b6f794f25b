// RMSNorm of each row: y = w * (x / sqrt(mean(x^2) + eps)), x, y: [n, d], w: [d].
// CPU reference: src/model/ops.rs `rms_norm` (entry `main`), `rms_norm_plain` (entries
// `plain`: y = x / rms, and `plain_inplace`: the same on y in place, BitLinear's input norm).
// Gemma's (1 + w) is folded into w by the loader. One workgroup per row (grid folded into y).

struct Params {
    n: u32,    // rows
    d: u32,    // row length
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// include: wg_reduce

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= params.n) {
        return;
    }
    let base = row * params.d;
    var ss = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    let inv = 1.0 / sqrt(wg_sum(ss, lid) / f32(params.d) + params.eps);
    for (var i = lid; i < params.d; i += WG) {
        y[base + i] = w[i] * (x[base + i] * inv);
    }
}

@compute @workgroup_size(256)
fn plain(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= params.n) {
        return;
    }
    let base = row * params.d;
    var ss = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    let inv = 1.0 / sqrt(wg_sum(ss, lid) / f32(params.d) + params.eps);
    for (var i = lid; i < params.d; i += WG) {
        y[base + i] = x[base + i] * inv;
    }
}

@compute @workgroup_size(256)
fn plain_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= params.n) {
        return;
    }
    let base = row * params.d;
    var ss = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let v = y[base + i];
        ss += v * v;
    }
    let inv = 1.0 / sqrt(wg_sum(ss, lid) / f32(params.d) + params.eps);
    for (var i = lid; i < params.d; i += WG) {
        y[base + i] = y[base + i] * inv;
    }
}
