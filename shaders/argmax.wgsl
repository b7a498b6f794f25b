// Greedy pick: out[0] = index of the largest (penalized) logit, the lowest index on ties.
// Repetition penalty (CTRL, as transformers): a logit whose id has its bit set in `seen`
// ([ceil(vocab / 32)] u32 words) is divided by `penalty` when positive, multiplied otherwise.
// Two entries: `partial` (workgroup w reduces logits [w * CHUNK, (w + 1) * CHUNK) into
// part[w] = (value bits, index)), then `finish` (one workgroup over the partials; when `mark`
// is set it also sets the chosen id's bit in `seen`, so the next step penalizes it).
// CPU reference: src/sampler.rs `apply_repetition_penalty` + `argmax`.

struct Params {
    vocab: u32,
    n_part: u32,
    penalty: f32,
    use_penalty: u32,  // also marks the chosen id in `seen`
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> seen: array<u32>;
@group(0) @binding(3) var<storage, read_write> part: array<u32>;   // [n_part, 2]
@group(0) @binding(4) var<storage, read_write> out: array<u32>;    // [1]

const WG: u32 = 256u;
const CHUNK: u32 = 4096u;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

fn penalized(i: u32) -> f32 {
    let l = logits[i];
    if (params.use_penalty != 0u && (seen[i / 32u] & (1u << (i % 32u))) != 0u) {
        if (l > 0.0) {
            return l / params.penalty;
        }
        return l * params.penalty;
    }
    return l;
}

const NONE: u32 = 0xffffffffu;

// Is (v2, i2) before (v1, i1)? Anything beats NONE; larger value first, lower index on ties.
fn better(v2: f32, i2: u32, v1: f32, i1: u32) -> bool {
    return i2 != NONE && (i1 == NONE || v2 > v1 || (v2 == v1 && i2 < i1));
}

fn reduce(lid: u32) {
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s && better(bv[lid + s], bi[lid + s], bv[lid], bi[lid])) {
            bv[lid] = bv[lid + s];
            bi[lid] = bi[lid + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * CHUNK;
    let end = min(base + CHUNK, params.vocab);
    var v = 0.0;
    var idx = NONE;
    for (var i = base + lid; i < end; i += WG) {
        let x = penalized(i);
        if (better(x, i, v, idx)) {
            v = x;
            idx = i;
        }
    }
    bv[lid] = v;
    bi[lid] = idx;
    workgroupBarrier();
    reduce(lid);
    if (lid == 0u) {
        part[2u * wg.x] = bitcast<u32>(bv[0]);
        part[2u * wg.x + 1u] = bi[0];
    }
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) lid: u32) {
    var v = 0.0;
    var idx = NONE;
    for (var w = lid; w < params.n_part; w += WG) {
        let x = bitcast<f32>(part[2u * w]);
        let i = part[2u * w + 1u];
        if (better(x, i, v, idx)) {
            v = x;
            idx = i;
        }
    }
    bv[lid] = v;
    bi[lid] = idx;
    workgroupBarrier();
    reduce(lid);
    if (lid == 0u) {
        var best = bi[0];
        if (best == NONE) {
            best = 0u;
        }
        out[0] = best;
        if (params.use_penalty != 0u) {
            seen[best / 32u] = seen[best / 32u] | (1u << (best % 32u));
        }
    }
}
