// Per-token int8 activations for ternary weights (BitNet b1.58 `activation_quant`), one
// workgroup per token t of x: [n, cols] f32:
//   inv = 127 / max(max_c |x[t][c]|, 1e-5),  qa[c] = clamp(round_half_even(x[t][c] · inv), -128, 127)
// qa is written packed 4 per u32 in the *plane layout* of the ternary kernels: for every
// 16-column weight word k, activation word 4k + i holds (bytes 0..3) the quants of columns
// 16k + i, 16k + 4 + i, 16k + 8 + i, 16k + 12 + i, i.e. the columns whose 2-bit codes sit in
// bits 2i..2i+1 of the weight word's bytes 0..3, so `(w >> 2i) & 0x03030303` lines up with it
// for dot4I8Packed. Columns ≥ cols are 0. qs[2t] = 1 / inv (f32 bits), qs[2t+1] = Σ qa (i32).
// CPU reference: `kernels::ternary::TernAct::new` (natural order `q`, `s`, `sum`).

struct Params {
    n: u32,
    cols: u32,
    wpr: u32,       // weight words per row: ceil(cols / 16)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [n, cols]
@group(0) @binding(2) var<storage, read_write> qa: array<u32>;   // [n, 4 * wpr]
@group(0) @binding(3) var<storage, read_write> qs: array<u32>;   // [n, 2]

// include: wg_reduce
var<workgroup> red_sum: array<i32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wg.y * nwg.x + wg.x;
    if (t >= params.n) {
        return;
    }
    let cols = params.cols;
    let xt = t * cols;
    var m = 0.0;
    for (var c = lid; c < cols; c += 256u) {
        m = max(m, abs(x[xt + c]));
    }
    let inv = 127.0 / max(wg_max(m, lid), 1e-5);
    var sum = 0;
    let words = 4u * params.wpr;
    for (var a = lid; a < words; a += 256u) {
        let c0 = (a / 4u) * 16u + a % 4u;
        var packed = 0u;
        for (var b = 0u; b < 4u; b++) {
            let c = c0 + 4u * b;
            if (c < cols) {
                let v = i32(clamp(round(x[xt + c] * inv), -128.0, 127.0));
                sum += v;
                packed |= (bitcast<u32>(v) & 0xffu) << (8u * b);
            }
        }
        qa[t * words + a] = packed;
    }
    red_sum[lid] = sum;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red_sum[lid] += red_sum[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        qs[2u * t] = bitcast<u32>(1.0 / inv);
        qs[2u * t + 1u] = bitcast<u32>(red_sum[0]);
    }
}
