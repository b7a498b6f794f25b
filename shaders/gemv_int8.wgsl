// Decode GEMV for INT8 weights: y[y_off + r] = scales[r] · Σ_c q[r][c] · x[c] (+ bias).
// Weights as on disk (docs/FORMAT.md `int8`): q = i8[rows * cols] row-major (any cols, so a
// row may start inside a word), scales = f32[rows]. The flat q array is read as vec4<u32>
// chunks of 16 weights; a team walks the chunks that overlap its row, and only the first and
// last chunk of a row need the per-element range test. Activations stay f32.
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
@group(0) @binding(1) var<storage, read> q: array<vec4<u32>>;   // i8 [rows * cols], 16 a chunk
@group(0) @binding(2) var<storage, read> scales: array<f32>;    // [rows]
@group(0) @binding(3) var<storage, read> x: array<f32>;         // [cols]
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [y_off + rows] (or a dummy)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [y_off + rows]

// include: gemv_common

// The four signed bytes of a word, as f32.
fn i8x4(w: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}

fn xv(c: u32) -> vec4<f32> {
    return vec4<f32>(x[c], x[c + 1u], x[c + 2u], x[c + 3u]);
}

// Σ over the 16 weights of chunk `w` starting at flat element e0, for row elements [rs, re).
fn chunk_dot(w: vec4<u32>, e0: u32, rs: u32, re: u32) -> f32 {
    if (e0 >= rs && e0 + 16u <= re) {
        let c = e0 - rs;
        return dot(i8x4(w.x), xv(c)) + dot(i8x4(w.y), xv(c + 4u)) + dot(i8x4(w.z), xv(c + 8u))
            + dot(i8x4(w.w), xv(c + 12u));
    }
    var acc = 0.0;
    for (var j = 0u; j < 16u; j++) {
        let e = e0 + j;
        if (e >= rs && e < re) {
            acc += i8x4(w[j / 4u])[j % 4u] * x[e - rs];
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
        for (var k = rs / 16u + gemv_lane(lid); k < (re + 15u) / 16u; k += WG / RPW) {
            acc += chunk_dot(q[k], k * 16u, rs, re);
        }
    }
    let total = team_sum(lid, acc);
    if (r < params.rows && gemv_lane(lid) == 0u) {
        store_row(r, total * scales[r]);
    }
}
