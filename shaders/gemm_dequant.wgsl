// Prefill GEMM for every weight format: y[t][y_off + r] = Σ_c W[r][c] · x[t][c] (+ bias), for
// tokens t < n, the weight part's rows r < rows; y rows are ld_y long.
// Tiled: a workgroup computes a 64-row × 64-token tile of y, walking the columns in steps of
// 16. Each step stages W[64 rows][16 cols] dequantized to f32 (gemm_wdecode.wgsl, FORMAT
// override) and x[64 tokens][16 cols] in workgroup memory (8 KiB); each of the 256
// invocations then accumulates 4 rows × 4 tokens. Out-of-range rows/tokens/columns are staged
// as zeros.
// Ternary weights take gemm_ternary.wgsl (int8 activations, dot4I8Packed) instead.
// CPU reference: `QTensor::dequantize` times x (f32, f16, int8, int4).

struct Params {
    rows: u32,      // rows of this part
    cols: u32,
    y_off: u32,     // first output row of this part
    has_bias: u32,
    group: u32,     // int4 group size
    gamma: f32,     // ternary tensor scale
    n: u32,         // tokens
    ld_y: u32,      // length of a row of y (all rows of the matrix)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wscales: array<u32>;
@group(0) @binding(3) var<storage, read> wmins: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;        // [n, cols]
@group(0) @binding(5) var<storage, read> bias: array<f32>;     // [y_off + rows] (or a dummy)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [n, ld_y]

// include: gemm_wdecode

const TM: u32 = 64u;   // rows per tile
const TN: u32 = 64u;   // tokens per tile
const TK: u32 = 16u;   // columns per step

// Staged tiles, 4 rows (tokens) per vec4 so each invocation's inner step is 2 vec4 loads and a
// 4 × 4 outer product: w_tile[k * 16 + i] = W[r0 + 4i .. r0 + 4i + 4][k0 + k], likewise x_tile.
var<workgroup> w_tile: array<vec4<f32>, 256>;   // [TK][TM / 4]
var<workgroup> x_tile: array<vec4<f32>, 256>;   // [TK][TN / 4]

fn x_at(t: u32, c: u32) -> f32 {
    return x[t * params.cols + c];
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
    var acc: array<vec4<f32>, 4>;   // acc[token j][row i]
    for (var k0 = 0u; k0 < params.cols; k0 += TK) {
        // stage: element e = lid + 256 i is (row or token e / 16, column e % 16)
        for (var i = 0u; i < 4u; i++) {
            let e = lid + 256u * i;
            let a = e / TK;
            let kk = e % TK;
            let c = k0 + kk;
            var wv = 0.0;
            if (r0 + a < params.rows && c < params.cols) {
                wv = w_at(r0 + a, c);
            }
            w_tile[kk * 16u + a / 4u][a % 4u] = wv;
            var xv = 0.0;
            if (t0 + a < params.n && c < params.cols) {
                xv = x_at(t0 + a, c);
            }
            x_tile[kk * 16u + a / 4u][a % 4u] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < TK; k++) {
            let w4 = w_tile[k * 16u + tr];
            let x4 = x_tile[k * 16u + tt];
            acc[0] += w4 * x4.x;
            acc[1] += w4 * x4.y;
            acc[2] += w4 * x4.z;
            acc[3] += w4 * x4.w;
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * tt + j;
        if (t >= params.n) {
            break;
        }
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * tr + i;
            if (r < params.rows) {
                var v = acc[j][i];
                if (params.has_bias != 0u) {
                    v += bias[params.y_off + r];
                }
                y[t * params.ld_y + params.y_off + r] = v;
            }
        }
    }
}
