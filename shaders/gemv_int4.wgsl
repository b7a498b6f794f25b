// Decode GEMV for INT4 weights: y[y_off + r] = Σ_c W[r][c] · x[c] (+ bias[y_off + r]).
// Weights as on disk (docs/FORMAT.md `int4_{sym,asym}_gG`): q = u32[rows, cols/8], column 8k+j
// of a row in bits 4j..4j+3 of its word k; scales (and mins for asym) = f16[rows, cols/G]
// read as packed u32 pairs (unpack2x16float, no shader-f16 needed).
// Activations stay f32 (no activation quantization): each lane takes 32 weights (one vec4<u32>,
// always inside one group since G ∈ {32, 64, 128}) of each of its team's NR rows and adds s·Σ nibble·x + c·Σ x with
// c = -8·s (sym) or c = min (asym). CPU reference: `QTensor::dequantize` times x (the CPU
// kernels quantize x to int8 per 32 values; this path is the more exact one).

struct Params {
    rows: u32,      // rows of this part
    cols: u32,      // multiple of the group size
    y_off: u32,     // first output row of this part
    has_bias: u32,
    group: u32,     // G: 32, 64 or 128
    gamma: f32,     // unused
    n: u32,         // 1
    ld_y: u32,      // unused
}

override SYM: bool = true;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<u32>>;   // [rows, cols/32]
@group(0) @binding(2) var<storage, read> scales: array<u32>;    // f16 pairs [rows * cols/G]
@group(0) @binding(3) var<storage, read> mins: array<u32>;      // f16 pairs (asym; else a dummy)
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;   // [cols/4]
@group(0) @binding(5) var<storage, read> bias: array<f32>;      // [y_off + rows] (or a dummy)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;   // [y_off + rows]

// include: gemv_common

fn half_of(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// Σ nibble_j · x_j over the 8 columns of one packed word; a = x[0..4], b = x[4..8].
fn dot8(w: u32, a: vec4<f32>, b: vec4<f32>) -> f32 {
    let lo = vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
    let hi = vec4<f32>((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
    return dot(lo, a) + dot(hi, b);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = gemv_row(lid, wg, nwg);
    let lane = gemv_lane(lid);
    let nk = params.cols / 32u;             // 32-weight chunks per row
    let gpr = params.cols / params.group;   // groups per row
    let cpg = params.group / 32u;           // chunks per group
    var acc: array<f32, 4>;
    if (r0 < params.rows) {
        for (var k = lane; k < nk; k += WG / RPW) {
            let xi = k * 8u;
            let x0 = x[xi];
            let x1 = x[xi + 1u];
            let x2 = x[xi + 2u];
            let x3 = x[xi + 3u];
            let x4 = x[xi + 4u];
            let x5 = x[xi + 5u];
            let x6 = x[xi + 6u];
            let x7 = x[xi + 7u];
            let sx = dot((x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7), vec4<f32>(1.0));
            for (var j = 0u; j < NR; j++) {
                let r = r0 + j;
                if (r >= params.rows) {
                    break;
                }
                let w = q[r * nk + k];
                let nx = dot8(w.x, x0, x1) + dot8(w.y, x2, x3) + dot8(w.z, x4, x5) + dot8(w.w, x6, x7);
                let g = r * gpr + k / cpg;
                let s = half_of(scales[g >> 1u], g);
                var c: f32;
                if (SYM) {
                    c = -8.0 * s;
                } else {
                    c = half_of(mins[g >> 1u], g);
                }
                acc[j] += s * nx + c * sx;
            }
        }
    }
    for (var j = 0u; j < NR; j++) {
        let total = team_sum(lid, acc[j]);
        let r = r0 + j;
        if (r < params.rows && lane == 0u) {
            store_row(r, total);
        }
    }
}
