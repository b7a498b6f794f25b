// The LLaVA merge: the embeddings of image tokens replaced by the image's features.
// x[r, c] = feats[row_of[r], c] for rows r < rows whose row_of[r] is a feature row
// (< feat_rows); the other rows (row_of[r] = 0xffffffff) keep the token embedding the gather
// wrote. CPU reference: src/model/llava.rs `Llava::embed_with_images`. One invocation per
// element of x.

struct Params {
    rows: u32,
    dim: u32,
    feat_rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> feats: array<f32>;
@group(0) @binding(2) var<storage, read> row_of: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.rows * params.dim) {
        return;
    }
    let f = row_of[i / params.dim];
    if (f >= params.feat_rows) {
        return;
    }
    x[i] = feats[f * params.dim + i % params.dim];
}
