// Decode GEMV for f32 weights: y[y_off + r] = Σ_c W[r][c] · x[c] (+ bias).
// Weights as on disk (docs/FORMAT.md `f32`): f32[rows * cols] row-major, read as vec4<f32>
// chunks; a row may start inside a chunk (cols not a multiple of 4), so only a row's first and
// last chunk test each element. CPU reference: `QTensor::dequantize` times x.

struct Params {
    rows: u32,      // rows of this part
    cols: u32,
    y_off: u32,     // first output row of this part
    has_bias: u32,
    group: u32,     // unused
    gamma: f32,     // unused
    n: u32,         // 1
    ld_y: u32,      // unused
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;   // [rows * cols], 4 a chunk
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [cols]
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // [y_off + rows] (or a dummy)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // [y_off + rows]

// include: gemv_common

// Σ over the 4 weights of chunk `v` starting at flat element e0, for row elements [rs, re).
fn chunk_dot(v: vec4<f32>, e0: u32, rs: u32, re: u32) -> f32 {
    if (e0 >= rs && e0 + 4u <= re) {
        let c = e0 - rs;
        return dot(v, vec4<f32>(x[c], x[c + 1u], x[c + 2u], x[c + 3u]));
    }
    var acc = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let e = e0 + j;
        if (e >= rs && e < re) {
            acc += v[j] * x[e - rs];
        }
    }
    return acc;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gemv_row(lid, wg, nwg);
    var acc = 0.0;
    if (r < params.rows) {
        let rs = r * params.cols;
        let re = rs + params.cols;
        for (var k = rs / 4u + gemv_lane(lid); k < (re + 3u) / 4u; k += WG / RPW) {
            acc += chunk_dot(w[k], k * 4u, rs, re);
        }
    }
    let total = team_sum(lid, acc);
    if (r < params.rows && gemv_lane(lid) == 0u) {
        store_row(r, total);
    }
}
