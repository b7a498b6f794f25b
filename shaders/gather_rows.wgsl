// Embedding gather: out[t][c] = W[ids[t]][c] for every token t < n and column c, from a weight
// matrix part of any format (gemm_wdecode.wgsl, FORMAT override) holding rows
// y_off .. y_off + rows; tokens whose id lies outside the part are left to the other parts.
// One invocation per output value. CPU reference: `QTensor::row`.

struct Params {
    rows: u32,      // rows of this part
    cols: u32,
    y_off: u32,     // first row of this part
    has_bias: u32,  // unused
    group: u32,     // int4 group size
    gamma: f32,     // ternary tensor scale (1 otherwise)
    n: u32,         // tokens
    ld_y: u32,      // unused
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // [n]
@group(0) @binding(2) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> wscales: array<u32>;
@group(0) @binding(4) var<storage, read> wmins: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // [n, cols]

// include: gemm_wdecode

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (i >= params.n * params.cols) {
        return;
    }
    let t = i / params.cols;
    let c = i % params.cols;
    let id = ids[t];
    if (id < params.y_off || id >= params.y_off + params.rows) {
        return;
    }
    var v = w_at(id - params.y_off, c);
    if (FORMAT == F_TERNARY) {
        v *= params.gamma;
    }
    out[i] = v;
}
