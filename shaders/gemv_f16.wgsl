// Decode GEMV for f16 weights: y[y_off + r] = Σ_c W[r][c] · x[c] (+ bias).
// Weights as on disk (docs/FORMAT.md `f16`): f16[rows * cols] row-major, read as vec4<u32>
// chunks of 8 halves and unpacked with unpack2x16float (works without shader-f16). A row may
// start inside a chunk (odd cols); only a row's first and last chunk test each element.
// CPU reference: `QTensor::dequantize` times x.

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
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;   // f16 [rows * cols], 8 a chunk
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [cols]
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // [y_off + rows] (or a dummy)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // [y_off + rows]

// include: gemv_common

fn xv(c: u32) -> vec4<f32> {
    return vec4<f32>(x[c], x[c + 1u], x[c + 2u], x[c + 3u]);
}

fn h4(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(a), unpack2x16float(b));
}

// Σ over the 8 weights of chunk `v` starting at flat element e0, for row elements [rs, re).
fn chunk_dot(v: vec4<u32>, e0: u32, rs: u32, re: u32) -> f32 {
    if (e0 >= rs && e0 + 8u <= re) {
        let c = e0 - rs;
        return dot(h4(v.x, v.y), xv(c)) + dot(h4(v.z, v.w), xv(c + 4u));
    }
    var acc = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let e = e0 + j;
        if (e >= rs && e < re) {
            acc += unpack2x16float(v[j / 2u])[j % 2u] * x[e - rs];
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
        for (var k = rs / 8u + gemv_lane(lid); k < (re + 7u) / 8u; k += WG / RPW) {
            acc += chunk_dot(w[k], k * 8u, rs, re);
        }
    }
    let total = team_sum(lid, acc);
    if (r < params.rows && gemv_lane(lid) == 0u) {
        store_row(r, total);
    }
}
