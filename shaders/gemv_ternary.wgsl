// Decode GEMV for ternary weights with int8 activations (BitNet b1.58 BitLinear158):
//   d = Σ_c (code[r][c] - 1) · qa[c] (exact integer),  y[y_off + r] = d · (gamma · s_a) (+ bias)
// Weights as on disk (docs/FORMAT.md `ternary`): q = u32[rows, wpr], wpr = ceil(cols/16),
// column 16k + j in bits 2j..2j+1 of word k. Activations from quantize_act_ternary.wgsl (plane
// layout: activation word 4k + i pairs with `(w >> 2i) & 0x03030303`, codes 0..2 as bytes), so
// one weight word is 4 dot4I8Packed; Σ code·qa − Σ qa = Σ (code − 1)·qa.
// Lanes read vec4<u32> (4 weight words) when wpr is a multiple of 4 (VEC), else single words,
// and a team takes NR rows so each activation load serves NR rows.
// Partial sums travel as f32, exact while |d| < 2^24 (2 · 128 · cols: cols < 65536).
// CPU reference: `kernels::ternary::rows_scalar`.

struct Params {
    rows: u32,      // rows of this part
    cols: u32,
    y_off: u32,     // first output row of this part
    has_bias: u32,
    group: u32,     // unused
    gamma: f32,     // the tensor's scale
    n: u32,         // 1
    ld_y: u32,      // unused
}

override VEC: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<u32>>;    // [rows * wpr] words
@group(0) @binding(2) var<storage, read> qa: array<vec4<u32>>;   // [wpr] (4 words per weight word)
@group(0) @binding(3) var<storage, read> qs: array<u32>;         // [s_a bits, Σ qa]
@group(0) @binding(4) var<storage, read> bias: array<f32>;       // [y_off + rows] (or a dummy)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;    // [y_off + rows]

// include: gemv_common

// Σ code · qa over the 16 columns of weight word w; a = its 4 activation words.
fn tdot(w: u32, a: vec4<u32>) -> i32 {
    let m = 0x03030303u;
    return dot4I8Packed(w & m, a.x) + dot4I8Packed((w >> 2u) & m, a.y) + dot4I8Packed((w >> 4u) & m, a.z)
        + dot4I8Packed((w >> 6u) & m, a.w);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = gemv_row(lid, wg, nwg);
    let lane = gemv_lane(lid);
    let wpr = (params.cols + 15u) / 16u;
    var d: array<i32, 4>;
    if (r0 < params.rows) {
        if (VEC) {
            for (var k = lane; k < wpr / 4u; k += WG / RPW) {
                let a0 = qa[4u * k];
                let a1 = qa[4u * k + 1u];
                let a2 = qa[4u * k + 2u];
                let a3 = qa[4u * k + 3u];
                for (var j = 0u; j < NR; j++) {
                    if (r0 + j >= params.rows) {
                        break;
                    }
                    let w = q[(r0 + j) * wpr / 4u + k];
                    d[j] += tdot(w.x, a0) + tdot(w.y, a1) + tdot(w.z, a2) + tdot(w.w, a3);
                }
            }
        } else {
            for (var k = lane; k < wpr; k += WG / RPW) {
                let a = qa[k];
                for (var j = 0u; j < NR; j++) {
                    if (r0 + j >= params.rows) {
                        break;
                    }
                    let i = (r0 + j) * wpr + k;
                    d[j] += tdot(q[i / 4u][i % 4u], a);
                }
            }
        }
    }
    let sa = params.gamma * bitcast<f32>(qs[0]);
    let sum = f32(bitcast<i32>(qs[1]));
    for (var j = 0u; j < NR; j++) {
        let total = team_sum(lid, f32(d[j]));
        let r = r0 + j;
        if (r < params.rows && lane == 0u) {
            store_row(r, (total - sum) * sa);
        }
    }
}
