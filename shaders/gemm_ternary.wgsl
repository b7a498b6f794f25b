// Prefill GEMM for ternary weights with per-token int8 activations (BitNet b1.58
// BitLinear158), integer sums by dot4I8Packed:
//   d[t][r] = Σ_c (code[r][c] - 1) · qa[t][c] (exact i32),  y[t][y_off + r] = d · (gamma · s_a[t]) (+ bias)
// Weights as on disk (docs/FORMAT.md `ternary`: u32 [rows, wpr], wpr = ceil(cols/16), column
// 16k + j in bits 2j..2j+1 of word k); activations from quantize_act_ternary.wgsl in its plane
// layout (activation word 4k + i pairs with `(w >> 2i) & 0x03030303`), so one weight word is 4
// dot4I8Packed, and Σ code·qa − Σ qa = Σ (code − 1)·qa (qs[2t + 1] = Σ qa).
// Tiled: a workgroup computes 64 rows × 64 tokens of y, walking the row 2 weight words (32
// columns) at a time: W[64 rows][2 words] and qa[64 tokens][2 × 4 words] staged in workgroup
// memory (2.5 KiB); each of the 256 invocations accumulates 4 rows × 4 tokens (64 dot4I8Packed
// per step). Out-of-range rows / tokens / words are staged as zeros (a zero activation word
// adds nothing whatever the code).
// CPU reference: `kernels::ternary::rows_scalar` (the f32-staged `gemm_dequant` FORMAT 4 gives
// the same sums).

struct Params {
    rows: u32,      // rows of this part
    cols: u32,
    y_off: u32,     // first output row of this part
    has_bias: u32,
    group: u32,     // unused
    gamma: f32,     // the tensor's scale
    n: u32,         // tokens
    ld_y: u32,      // length of a row of y (all rows of the matrix)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<u32>;        // [rows, wpr]
@group(0) @binding(2) var<storage, read> qa: array<vec4<u32>>; // [n, wpr] (4 words per weight word)
@group(0) @binding(3) var<storage, read> qs: array<u32>;       // [n, 2] (s_a bits, Σ qa)
@group(0) @binding(4) var<storage, read> bias: array<f32>;     // [y_off + rows] (or a dummy)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // [n, ld_y]

const TM: u32 = 64u;   // rows per tile
const TN: u32 = 64u;   // tokens per tile
const TKW: u32 = 2u;   // weight words (16 columns each) per step

var<workgroup> w_tile: array<vec4<u32>, 32>;    // [TKW][TM / 4]: 4 rows' words
var<workgroup> x_tile: array<vec4<u32>, 128>;   // [TKW][TN]: a token's 4 activation words

// Σ code · qa over the 16 columns of weight word w; a = its 4 activation words.
fn tdot(w: u32, a: vec4<u32>) -> i32 {
    let m = 0x03030303u;
    return dot4I8Packed(w & m, a.x) + dot4I8Packed((w >> 2u) & m, a.y) + dot4I8Packed((w >> 4u) & m, a.z)
        + dot4I8Packed((w >> 6u) & m, a.w);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row_tiles = (params.rows + TM - 1u) / TM;
    let tile = wg.y * nwg.x + wg.x;
    if (tile >= row_tiles * ((params.n + TN - 1u) / TN)) {
        return;
    }
    let r0 = (tile % row_tiles) * TM;
    let t0 = (tile / row_tiles) * TN;
    let tr = lid % 16u;   // rows r0 + 4 tr .. + 4
    let tt = lid / 16u;   // tokens t0 + 4 tt .. + 4
    let wpr = (params.cols + 15u) / 16u;
    var acc: array<vec4<i32>, 4>;   // acc[token j][row i]
    for (var k0 = 0u; k0 < wpr; k0 += TKW) {
        if (lid < TM * TKW) {
            // weight word (row lid / 2, word lid % 2)
            let a = lid / TKW;
            let k = k0 + lid % TKW;
            var wv = 0u;
            if (r0 + a < params.rows && k < wpr) {
                wv = q[(r0 + a) * wpr + k];
            }
            w_tile[(lid % TKW) * 16u + a / 4u][a % 4u] = wv;
        }
        if (lid < TN * TKW) {
            // activation words of (token lid / 2, weight word lid % 2)
            let a = lid / TKW;
            let k = k0 + lid % TKW;
            var xv = vec4<u32>(0u);
            if (t0 + a < params.n && k < wpr) {
                xv = qa[(t0 + a) * wpr + k];
            }
            x_tile[(lid % TKW) * TN + a] = xv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TKW; kk++) {
            let w4 = w_tile[kk * 16u + tr];
            for (var j = 0u; j < 4u; j++) {
                let a = x_tile[kk * TN + 4u * tt + j];
                acc[j] += vec4<i32>(tdot(w4.x, a), tdot(w4.y, a), tdot(w4.z, a), tdot(w4.w, a));
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * tt + j;
        if (t >= params.n) {
            break;
        }
        let sa = params.gamma * bitcast<f32>(qs[2u * t]);
        let sum = bitcast<i32>(qs[2u * t + 1u]);
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * tr + i;
            if (r < params.rows) {
                var v = f32(acc[j][i] - sum) * sa;
                if (params.has_bias != 0u) {
                    v += bias[params.y_off + r];
                }
                y[t * params.ld_y + params.y_off + r] = v;
            }
        }
    }
}
