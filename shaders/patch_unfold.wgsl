// Unfold an image into patch rows (im2col for the ViT patch embedding, a stride-p convolution):
// px: [c, h, w] → out: [(h/p) * (w/p), c * p * p], row gy * (w/p) + gx holding the patch at grid
// (gy, gx) in the conv kernel's (channel, ky, kx) order, so out · Wᵀ is the convolution.
// CPU reference: src/vision/clip.rs `unfold_patches`. One invocation per output element.

struct Params {
    c: u32,
    h: u32,
    w: u32,
    p: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    let p = params.p;
    let gw = params.w / p;
    let k = params.c * p * p;
    let total = (params.h / p) * gw * k;
    if (i >= total) {
        return;
    }
    let row = i / k;
    let col = i % k;
    let gy = row / gw;
    let gx = row % gw;
    let ch = col / (p * p);
    let ky = (col / p) % p;
    let kx = col % p;
    out[i] = px[ch * params.h * params.w + (gy * p + ky) * params.w + gx * p + kx];
}
