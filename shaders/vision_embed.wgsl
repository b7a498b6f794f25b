// The ViT input rows: x[t] = (t == 0 and has_cls ? cls : patches[t - has_cls]) + pos[t] over
// x: [n, d] (n = patches + has_cls), patches: [n - has_cls, d], cls: [d], pos: [n, d]
// (CLIP prepends the class embedding; SigLIP has none, has_cls = 0 binds a dummy cls).
// CPU reference: src/vision/clip.rs `VisionTower::embed`. One invocation per element.

struct Params {
    n: u32,
    d: u32,
    has_cls: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> patches: array<f32>;
@group(0) @binding(2) var<storage, read> cls: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= params.n * params.d) {
        return;
    }
    let t = i / params.d;
    let c = i % params.d;
    var v = 0.0;
    if (t < params.has_cls) {
        v = cls[c];
    } else {
        v = patches[i - params.has_cls * params.d];
    }
    x[i] = v + pos[i];
}
