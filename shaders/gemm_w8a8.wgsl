// W8A8 prefill GEMM (SmoothQuant W8A8): for tokens t < n and the part's rows r < rows,
//   y[t][y_off + r] = f32(Σ_c qa[t][c] · qw[r][c]) · (s_a[t] · s_w[r]) (+ bias[y_off + r])
// with the integer sum exact in i32 by dot4I8Packed (|Σ| ≤ cols · 127², fine below 133 000
// columns). qw, s_w: INT8 weights as on disk (docs/FORMAT.md `int8`: i8 [rows, cols] row-major,
// 4 per u32 little-endian, rows not padded, so row r starts at byte r · cols whatever its
// alignment; f32 scale per row). qa, s_a: per-token int8 activations from quantize_act_i8.wgsl
// (wpr = ceil(cols / 4) words per token, the bytes past cols 0).
// Tiled like gemm_dequant.wgsl: a workgroup computes 64 rows × 64 tokens of y, walking the
// row in steps of TKW = 8 words (32 columns). Each step stages W[64 rows][8 words] (each word
// put together from the two u32 it straddles) and qa[64 tokens][8 words] in workgroup memory
// (4 KiB); each of the 256 invocations then accumulates 4 rows × 4 tokens, 16 dot4I8Packed per
// word. A weight word reaching past its row holds the next row's bytes: the activation bytes
// there are 0, so they add nothing. Out-of-range rows / tokens / words are staged as zeros.
// CPU reference: `kernels::w8a8` (`dot_scalar` sums, `sum as f32 * (s_a · s_w)`, + bias).

struct Params {
    rows: u32,      // rows of this part
    cols: u32,
    y_off: u32,     // first output row of this part
    has_bias: u32,
    n: u32,         // tokens
    ld_y: u32,      // length of a row of y (all rows of the matrix)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> wq: array<u32>;       // the part's int8 rows, packed
@group(0) @binding(2) var<storage, read> wscales: array<f32>;  // [rows] s_w
@group(0) @binding(3) var<storage, read> qa: array<u32>;       // [n, wpr]
@group(0) @binding(4) var<storage, read> qs: array<f32>;       // [n] s_a
@group(0) @binding(5) var<storage, read> bias: array<f32>;     // [y_off + rows] (or a dummy)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [n, ld_y]

const TM: u32 = 64u;   // rows per tile
const TN: u32 = 64u;   // tokens per tile
const TKW: u32 = 8u;   // words (4 columns each) per step

// w_tile[k * 16 + i] = the word k of rows r0 + 4i .. r0 + 4i + 4, likewise x_tile for tokens.
var<workgroup> w_tile: array<vec4<u32>, 128>;   // [TKW][TM / 4]
var<workgroup> x_tile: array<vec4<u32>, 128>;   // [TKW][TN / 4]

// Columns 4k .. 4k + 3 of row r as one packed word (bytes from the two u32 it straddles).
fn w_word(r: u32, k: u32) -> u32 {
    let b = r * params.cols + 4u * k;
    let i = b / 4u;
    let sh = 8u * (b % 4u);
    let lo = wq[i];
    if (sh == 0u) {
        return lo;
    }
    let hi = wq[min(i + 1u, arrayLength(&wq) - 1u)];
    return (lo >> sh) | (hi << (32u - sh));
}

// The 4 × 4 integer dot products of rows w4 with tokens x4 (acc[token][row]).
fn outer(w4: vec4<u32>, x4: vec4<u32>, acc: ptr<function, array<vec4<i32>, 4>>) {
    for (var j = 0u; j < 4u; j++) {
        let a = x4[j];
        (*acc)[j] += vec4<i32>(dot4I8Packed(w4.x, a), dot4I8Packed(w4.y, a), dot4I8Packed(w4.z, a),
            dot4I8Packed(w4.w, a));
    }
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
    let wpr = (params.cols + 3u) / 4u;
    var acc: array<vec4<i32>, 4>;
    for (var k0 = 0u; k0 < wpr; k0 += TKW) {
        // stage: element e = lid + 256 i is (row or token e / 8, word e % 8)
        for (var i = 0u; i < 2u; i++) {
            let e = lid + 256u * i;
            let a = e / TKW;
            let kk = e % TKW;
            let k = k0 + kk;
            var wv = 0u;
            if (r0 + a < params.rows && k < wpr) {
                wv = w_word(r0 + a, k);
            }
            w_tile[kk * 16u + a / 4u][a % 4u] = wv;
            var xv = 0u;
            if (t0 + a < params.n && k < wpr) {
                xv = qa[(t0 + a) * wpr + k];
            }
            x_tile[kk * 16u + a / 4u][a % 4u] = xv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TKW; kk++) {
            outer(w_tile[kk * 16u + tr], x_tile[kk * 16u + tt], &acc);
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * tt + j;
        if (t >= params.n) {
            break;
        }
        let sa = qs[t];
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * tr + i;
            if (r < params.rows) {
                var v = f32(acc[j][i]) * (sa * wscales[r]);
                if (params.has_bias != 0u) {
                    v += bias[params.y_off + r];
                }
                y[t * params.ld_y + params.y_off + r] = v;
            }
        }
    }
}
