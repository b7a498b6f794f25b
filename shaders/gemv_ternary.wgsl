// Decode GEMV for ternary weights with int8 activations (BitNet b1.58 BitLinear158):
//   d = Σ_c (code[r][c] - 1) · qa[c] (exact integer),  y[y_off + r] = d · (gamma · s_a) (+ bias)
// Weights as on disk (docs/FORMAT.md `ternary`): q = u32[rows, wpr], wpr = ceil(cols/16),
// column 16k + j in bits 2j..2j+1 of word k. Activations from quantize_act_ternary.wgsl (plane
// layout: activation word 4k + i pairs with `(w >> 2i) & 0x03030303`, codes 0..2 as bytes), so
// one weight word is 4 dot4I8Packed; Σ code·qa − Σ qa = Σ (code − 1)·qa.
// Lanes read vec4<u32> (4 weight words) when wpr is a multiple of 4 (VEC), else single words.
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
    let r = gemv_row(lid, wg, nwg);
    let lane = gemv_lane(lid);
    let wpr = (params.cols + 15u) / 16u;
    var d = 0;
    if (r < params.rows) {
        if (VEC) {
            let base = r * wpr / 4u;
            for (var k = lane; k < wpr / 4u; k += WG / RPW) {
                let w = q[base + k];
                d += tdot(w.x, qa[4u * k]) + tdot(w.y, qa[4u * k + 1u]) + tdot(w.z, qa[4u * k + 2u])
                    + tdot(w.w, qa[4u * k + 3u]);
            }
        } else {
            let base = r * wpr;
            for (var k = lane; k < wpr; k += WG / RPW) {
                let i = base + k;
                d += tdot(q[i / 4u][i % 4u], qa[k]);
            }
        }
    }
    let total = team_sum(lid, f32(d));
    if (r < params.rows && lane == 0u) {
        let dd = total - f32(bitcast<i32>(qs[1]));
        var v = dd * (params.gamma * bitcast<f32>(qs[0]));
        if (params.has_bias != 0u) {
            v += bias[params.y_off + r];
        }
        y[params.y_off + r] = v;
    }
}
