// Attention of n query rows, tiled over queries and keys: workgroup (query block b, head h)
// holds BQ = 8 queries; key/value tiles of BK = 8 positions are staged in workgroup memory
// and shared by the 8 queries, with an online softmax per query (invocation (r, c): query r
// of the block, score column c, and head dims c, c + 8, ...). head_dim <= 256.
// q: [n, heads, head_dim] (after RoPE), k, v: [kv positions, kv_heads, head_dim] (the cache
// with the n new rows appended, or the vision tower's own k, v), out: [n, heads, head_dim].
// causal = 1: query i sits at p = Step.pos0 + i and sees keys j with p - window < j <= p
// (window 0 = none); causal = 0 (CLIP / SigLIP): every key j < Step.kv_len.
// GQA head h reads kv head h / (heads / kv_heads). Score = (q . k) * scale.
// CPU reference: src/model/attention.rs `attend`, src/vision/ops.rs `full_attention`.

struct Params {
    n: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    window: u32,
    causal: u32,
    scale: f32,
}

struct Step {
    pos0: u32,
    n: u32,
    kv_len: u32,
    seed: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const BQ: u32 = 8u;
const BK: u32 = 8u;
const NEG: f32 = -3.0e38;

var<workgroup> kv: array<f32, 2048>;  // [BK, head_dim <= 256]
var<workgroup> sc: array<f32, 64>;    // [BQ, BK]

// Stage rows k0 .. k0 + BK of `src` (the head's kv slice) into kv; rows >= kend read as 0.
fn stage_k(lid: u32, k0: u32, kend: u32, stride: u32, kvo: u32) {
    let hd = params.head_dim;
    for (var e = lid; e < BK * hd; e += 64u) {
        let j = k0 + e / hd;
        var val = 0.0;
        if (j < kend) {
            val = k[j * stride + kvo + e % hd];
        }
        kv[e] = val;
    }
}

fn stage_v(lid: u32, k0: u32, kend: u32, stride: u32, kvo: u32) {
    let hd = params.head_dim;
    for (var e = lid; e < BK * hd; e += 64u) {
        let j = k0 + e / hd;
        var val = 0.0;
        if (j < kend) {
            val = v[j * stride + kvo + e % hd];
        }
        kv[e] = val;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.y;
    let hd = params.head_dim;
    let r = lid / BK;
    let c = lid % BK;
    let i = wg.x * BQ + r;
    let valid = i < params.n;
    let p = step.pos0 + i;
    let kvo = (h / (params.heads / params.kv_heads)) * hd;
    let stride = params.kv_heads * hd;
    let qo = (i * params.heads + h) * hd;
    // the block's key range (uniform across the workgroup)
    var kstart = 0u;
    var kend = step.kv_len;
    if (params.causal != 0u) {
        let p_first = step.pos0 + wg.x * BQ;
        let p_last = step.pos0 + min(wg.x * BQ + BQ, params.n) - 1u;
        kend = min(p_last + 1u, step.kv_len);
        if (params.window > 0u && p_first + 1u > params.window) {
            kstart = p_first + 1u - params.window;
        }
    }
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, 32>;
    for (var ii = 0u; ii < 32u; ii++) {
        acc[ii] = 0.0;
    }
    for (var k0 = kstart; k0 < kend; k0 += BK) {
        stage_k(lid, k0, kend, stride, kvo);
        workgroupBarrier();
        let j = k0 + c;
        var vis = valid && j < kend;
        if (params.causal != 0u) {
            vis = vis && j <= p && (params.window == 0u || j + params.window > p);
        }
        var s = NEG;
        if (vis) {
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot += q[qo + d] * kv[c * hd + d];
            }
            s = dot * params.scale;
        }
        sc[lid] = s;
        workgroupBarrier();
        var tm = m;
        for (var cc = 0u; cc < BK; cc++) {
            tm = max(tm, sc[r * BK + cc]);
        }
        var pr = 0.0;
        if (vis) {
            pr = exp(s - tm);
        }
        let alpha = exp(m - tm);
        workgroupBarrier();
        sc[lid] = pr;
        stage_v(lid, k0, kend, stride, kvo);
        workgroupBarrier();
        l = l * alpha;
        for (var cc = 0u; cc < BK; cc++) {
            l += sc[r * BK + cc];
        }
        for (var ii = 0u; ii < 32u; ii++) {
            let d = c + BK * ii;
            if (d < hd) {
                var a = acc[ii] * alpha;
                for (var cc = 0u; cc < BK; cc++) {
                    a += sc[r * BK + cc] * kv[cc * hd + d];
                }
                acc[ii] = a;
            }
        }
        m = tm;
        workgroupBarrier();
    }
    if (valid) {
        let inv = 1.0 / l;
        for (var ii = 0u; ii < 32u; ii++) {
            let d = c + BK * ii;
            if (d < hd) {
                out[qo + d] = acc[ii] * inv;
            }
        }
    }
}
