// Attention of ONE query position over the KV cache, split-K ("flash decoding"): workgroup
// (split s, head h) takes an equal slice of the visible keys and writes its partial softmax
// state (max m, sum l, unnormalized acc[head_dim]); attention_reduce.wgsl combines the splits.
// q: [heads, head_dim] (after RoPE), caches: [capacity, kv_heads, head_dim],
// visible keys: Step.kv_len positions minus the sliding window (query at p = kv_len - 1 sees
// j with p - window < j <= p), GQA head h reads kv head h / (heads / kv_heads).
// Score = (q . k) * scale (1/sqrt(head_dim) as the CPU does). head_dim <= 256.
// Outputs: part_ml: [heads, n_split, 2], part_acc: [heads, n_split, head_dim].
// CPU reference: src/model/attention.rs `attend` (with n = 1).

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    n_split: u32,
    window: u32,   // 0 = none
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
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<f32>;
@group(0) @binding(6) var<storage, read_write> part_acc: array<f32>;

const TK: u32 = 64u;       // keys per tile = invocations
const NEG: f32 = -3.0e38;  // "minus infinity" that keeps exp(NEG - NEG) finite

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wg.x;
    let h = wg.y;
    let hd = params.head_dim;
    let kvo = (h / (params.heads / params.kv_heads)) * hd;
    let stride = params.kv_heads * hd;
    let kv_len = step.kv_len;
    var lo = 0u;
    if (params.window > 0u && kv_len > params.window) {
        lo = kv_len - params.window;
    }
    let chunk = (kv_len - lo + params.n_split - 1u) / params.n_split;
    let start = lo + s * chunk;
    let end = min(start + chunk, kv_len);
    for (var d = lid; d < hd; d += TK) {
        qs[d] = q[h * hd + d];
    }
    workgroupBarrier();
    var m = NEG;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = start; t0 < end; t0 += TK) {
        let j = t0 + lid;
        var sv = NEG;
        if (j < end) {
            var dot = 0.0;
            let kb = j * stride + kvo;
            for (var d = 0u; d < hd; d++) {
                dot += qs[d] * k_cache[kb + d];
            }
            sv = dot * params.scale;
        }
        sc[lid] = sv;
        workgroupBarrier();
        var tm = m;
        for (var t = 0u; t < TK; t++) {
            tm = max(tm, sc[t]);
        }
        workgroupBarrier();
        var pt = 0.0;
        if (j < end) {
            pt = exp(sv - tm);
        }
        sc[lid] = pt;
        workgroupBarrier();
        let alpha = exp(m - tm);
        let nt = min(TK, end - t0);
        l = l * alpha;
        for (var t = 0u; t < nt; t++) {
            l += sc[t];
        }
        for (var i = 0u; i < 4u; i++) {
            let d = lid + TK * i;
            if (d < hd) {
                var a = acc[i] * alpha;
                for (var t = 0u; t < nt; t++) {
                    a += sc[t] * v_cache[(t0 + t) * stride + kvo + d];
                }
                acc[i] = a;
            }
        }
        m = tm;
        workgroupBarrier();
    }
    let p = h * params.n_split + s;
    if (lid == 0u) {
        part_ml[2u * p] = m;
        part_ml[2u * p + 1u] = l;
    }
    for (var i = 0u; i < 4u; i++) {
        let d = lid + TK * i;
        if (d < hd) {
            part_acc[p * hd + d] = acc[i];
        }
    }
}
