// Strided row copy: dst[t * ld_dst + off + c] = src[(t + skip) * ld_src + c] for t < rows,
// c < cols. LLaVA's feature selection: rows skip.. of a vision hidden state (skip = 1 drops
// CLIP's class token) into a column block of the projector input (several selected layers
// sit side by side along the feature axis).
// CPU reference: src/model/llava.rs `Llava::tile_features`. One invocation per element.

struct Params {
    rows: u32,
    cols: u32,
    skip: u32,
    ld_src: u32,
    ld_dst: u32,
    off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.rows * params.cols) {
        return;
    }
    let t = i / params.cols;
    let c = i % params.cols;
    dst[t * params.ld_dst + params.off + c] = src[(t + params.skip) * params.ld_src + c];
}
