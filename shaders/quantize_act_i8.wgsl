// Per-token int8 activations for the W8A8 GEMM (SmoothQuant W8A8 with dynamic per-token
// scales), one workgroup per token t of x: [n, cols] f32:
//   amax = max_c |x[t][c]|,  inv = 127 / amax (0 when amax = 0),  s_a[t] = amax / 127,
//   qa[t][c] = clamp(round_half_even(x[t][c] · inv), -127, 127)
// qa is written 4 per u32 in column order (byte j of word k = column 4k + j), wpr = ceil(cols/4)
// words per token, the bytes past cols 0: the layout gemm_w8a8.wgsl feeds to dot4I8Packed.
// The same f32 operations as the CPU reference `kernels::w8a8::TokAct::new`; WGSL lets the
// division be off by up to 2.5 ULP, so a code can differ by one where x·inv lies within a few
// ULP of a half-integer (lavapipe divides exactly).

struct Params {
    n: u32,
    cols: u32,
    wpr: u32,       // words per token: ceil(cols / 4)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [n, cols]
@group(0) @binding(2) var<storage, read_write> qa: array<u32>;   // [n, wpr]
@group(0) @binding(3) var<storage, read_write> qs: array<f32>;   // [n] s_a

// include: wg_reduce

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
    let amax = wg_max(m, lid);
    var inv = 0.0;
    if (amax > 0.0) {
        inv = 127.0 / amax;
    }
    for (var k = lid; k < params.wpr; k += 256u) {
        var packed = 0u;
        for (var b = 0u; b < 4u; b++) {
            let c = 4u * k + b;
            if (c < cols) {
                let v = i32(clamp(round(x[xt + c] * inv), -127.0, 127.0));
                packed |= (bitcast<u32>(v) & 0xffu) << (8u * b);
            }
        }
        qa[t * params.wpr + k] = packed;
    }
    if (lid == 0u) {
        qs[t] = amax / 127.0;
    }
}
