// Temperature / top-k / top-p sampling with repetition penalty, picking the token
// src/sampler.rs `sample` picks for the same logits and the same draw u = (Step.seed >> 8) / 2^24
// (Step.seed = the `Rng::next_u32` the CPU sampler would consume). out[0] = the token id.
//
// Value of id i: v_i = penalized(logits[i]) / temperature; order: v descending, id ascending
// (the CPU's `total_cmp` order). The K candidates (K = top_k, or CAP = 1024 when top_k is 0 or
// larger than CAP) are found by an exact radix select on the 56-bit key
// (sortable bits of v_i) << 24 | (2^24 - 1 - i), which is unique per id, in 7 passes of 8 bits:
//   init -> 7 x (hist, select) -> gather -> [mass] -> pick
// `hist`  counts, per 8-bit digit, the ids whose higher digits match the prefix so far;
// `select` picks the digit where the count reaches the K remaining ids, extends the prefix;
// `gather` appends every id whose key >= the final prefix (exactly K ids) to `cand`;
// `mass`  (full_mass = 1 only) writes each chunk's softmax partial (max, sum e^(v - max));
// `pick`  sorts the K candidates (bitonic, in workgroup memory), then one invocation replays
//         the CPU's `candidates` + draw: softmax (over the K candidates, or over the whole
//         vocabulary with full_mass), top-p prefix and renormalization, cumulative draw.
// With full_mass, tokens past the top CAP are out of reach: a draw falling in that tail picks
// the last candidate (the CPU would pick a rarer token), and a nucleus not reached within CAP
// is renormalized by top_p instead of its true mass. Sums are f32 (the CPU sums in f64), so a
// draw within ~1e-6 of a cumulative boundary may differ.

struct Params {
    vocab: u32,
    k: u32,            // candidates, <= CAP and <= vocab
    temperature: f32,  // max(temperature, 1e-6)
    top_p: f32,
    penalty: f32,
    use_penalty: u32,  // also marks the chosen id in `seen`
    full_mass: u32,    // normalize over the whole vocabulary (top_k 0 or > CAP)
    n_part: u32,       // chunks (workgroups) of hist / gather / mass
}

struct Step {
    pos0: u32,
    n: u32,
    kv_len: u32,
    seed: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> seen: array<u32>;          // [ceil(vocab / 32)]
@group(0) @binding(4) var<storage, read_write> state: array<atomic<u32>, 8>;
@group(0) @binding(5) var<storage, read_write> hist: array<atomic<u32>, 256>;
@group(0) @binding(6) var<storage, read_write> cand: array<u32>;          // [CAP, 2] keys
@group(0) @binding(7) var<storage, read_write> mass: array<f32>;          // [n_part, 2]
@group(0) @binding(8) var<storage, read_write> out: array<u32>;           // [1]

const CAP: u32 = 1024u;
const CHUNK: u32 = 4096u;
const IDMAX: u32 = 0xffffffu;
// state words
const PRE_HI: u32 = 0u;
const PRE_LO: u32 = 1u;
const MASK_HI: u32 = 2u;
const MASK_LO: u32 = 3u;
const KLEFT: u32 = 4u;
const PASS: u32 = 5u;
const COUNT: u32 = 6u;

fn value(i: u32) -> f32 {
    var l = logits[i];
    if (params.use_penalty != 0u && (seen[i / 32u] & (1u << (i % 32u))) != 0u) {
        if (l > 0.0) {
            l = l / params.penalty;
        } else {
            l = l * params.penalty;
        }
    }
    return l / params.temperature;
}

// f32 bits -> u32 with the same order as `f32::total_cmp`.
fn vkey(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn vkey_inv(k: u32) -> f32 {
    if ((k & 0x80000000u) != 0u) {
        return bitcast<f32>(k & 0x7fffffffu);
    }
    return bitcast<f32>(~k);
}

@compute @workgroup_size(256)
fn init(@builtin(local_invocation_index) lid: u32) {
    atomicStore(&hist[lid], 0u);
    if (lid < 8u) {
        var w = 0u;
        if (lid == KLEFT) {
            w = params.k;
        }
        atomicStore(&state[lid], w);
    }
}

var<workgroup> lh: array<atomic<u32>, 256>;

@compute @workgroup_size(256)
fn hist_pass(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    atomicStore(&lh[lid], 0u);
    workgroupBarrier();
    let pass_ = atomicLoad(&state[PASS]);
    let pre_hi = atomicLoad(&state[PRE_HI]);
    let pre_lo = atomicLoad(&state[PRE_LO]);
    let mask_hi = atomicLoad(&state[MASK_HI]);
    let mask_lo = atomicLoad(&state[MASK_LO]);
    let end = min((wg.x + 1u) * CHUNK, params.vocab);
    for (var i = wg.x * CHUNK + lid; i < end; i += 256u) {
        let hi = vkey(value(i));
        let lo = IDMAX - i;
        if ((hi & mask_hi) == pre_hi && (lo & mask_lo) == pre_lo) {
            var digit = 0u;
            if (pass_ < 4u) {
                digit = (hi >> (24u - 8u * pass_)) & 255u;
            } else {
                digit = (lo >> (16u - 8u * (pass_ - 4u))) & 255u;
            }
            atomicAdd(&lh[digit], 1u);
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&lh[lid]);
    if (c != 0u) {
        atomicAdd(&hist[lid], c);
    }
}

@compute @workgroup_size(1)
fn select_digit() {
    if (params.k == 0u) {
        return;  // (never: K >= 1; this also keeps `params` in the entry's layout)
    }
    let k = atomicLoad(&state[KLEFT]);
    let pass_ = atomicLoad(&state[PASS]);
    var cum = 0u;
    var b = 255u;
    loop {
        let c = atomicLoad(&hist[b]);
        if (cum + c >= k || b == 0u) {
            break;
        }
        cum += c;
        b -= 1u;
    }
    atomicStore(&state[KLEFT], k - cum);
    if (pass_ < 4u) {
        let sh = 24u - 8u * pass_;
        atomicOr(&state[PRE_HI], b << sh);
        atomicOr(&state[MASK_HI], 255u << sh);
    } else {
        let sh = 16u - 8u * (pass_ - 4u);
        atomicOr(&state[PRE_LO], b << sh);
        atomicOr(&state[MASK_LO], 255u << sh);
    }
    for (var i = 0u; i < 256u; i++) {
        atomicStore(&hist[i], 0u);
    }
    atomicStore(&state[PASS], pass_ + 1u);
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t_hi = atomicLoad(&state[PRE_HI]);
    let t_lo = atomicLoad(&state[PRE_LO]);
    let end = min((wg.x + 1u) * CHUNK, params.vocab);
    for (var i = wg.x * CHUNK + lid; i < end; i += 256u) {
        let hi = vkey(value(i));
        let lo = IDMAX - i;
        if (hi > t_hi || (hi == t_hi && lo >= t_lo)) {
            let slot = atomicAdd(&state[COUNT], 1u);
            if (slot < CAP) {
                cand[2u * slot] = hi;
                cand[2u * slot + 1u] = lo;
            }
        }
    }
}

var<workgroup> wm: array<f32, 256>;
var<workgroup> ws: array<f32, 256>;

@compute @workgroup_size(256)
fn mass_pass(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let end = min((wg.x + 1u) * CHUNK, params.vocab);
    var m = -3.0e38;
    for (var i = wg.x * CHUNK + lid; i < end; i += 256u) {
        m = max(m, value(i));
    }
    wm[lid] = m;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            wm[lid] = max(wm[lid], wm[lid + s]);
        }
        workgroupBarrier();
    }
    let mx = wm[0];
    var acc = 0.0;
    for (var i = wg.x * CHUNK + lid; i < end; i += 256u) {
        acc += exp(value(i) - mx);
    }
    ws[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            ws[lid] += ws[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        mass[2u * wg.x] = mx;
        mass[2u * wg.x + 1u] = ws[0];
    }
}

var<workgroup> khi: array<u32, 1024>;
var<workgroup> klo: array<u32, 1024>;
var<workgroup> prob: array<f32, 1024>;

// Is key a before key b in descending order?
fn key_gt(ahi: u32, alo: u32, bhi: u32, blo: u32) -> bool {
    return ahi > bhi || (ahi == bhi && alo > blo);
}

fn bitonic_desc(lid: u32) {
    for (var size = 2u; size <= CAP; size = size << 1u) {
        for (var stride = size >> 1u; stride > 0u; stride = stride >> 1u) {
            for (var t = lid; t < CAP / 2u; t += 256u) {
                let i = 2u * t - (t & (stride - 1u));
                let j = i + stride;
                let desc = (i & size) == 0u;
                let j_first = key_gt(khi[j], klo[j], khi[i], klo[i]);
                if (j_first == desc) {
                    let th = khi[i];
                    let tl = klo[i];
                    khi[i] = khi[j];
                    klo[i] = klo[j];
                    khi[j] = th;
                    klo[j] = tl;
                }
            }
            workgroupBarrier();
        }
    }
}

// The CPU's `candidates` + cumulative draw over the sorted candidates, by one invocation.
fn choose() -> u32 {
    let k = params.k;
    let mval = vkey_inv(khi[0]);
    var sum = 0.0;
    var comp = 0.0;  // Neumaier compensation: the CPU sums in f64
    for (var i = 0u; i < k; i++) {
        let e = exp(vkey_inv(khi[i]) - mval);
        prob[i] = e;
        let t = sum + e;
        if (abs(sum) >= abs(e)) {
            comp += (sum - t) + e;
        } else {
            comp += (e - t) + sum;
        }
        sum = t;
    }
    sum = sum + comp;
    if (params.full_mass != 0u) {
        sum = 0.0;
        for (var w = 0u; w < params.n_part; w++) {
            sum += mass[2u * w + 1u] * exp(mass[2u * w] - mval);
        }
    }
    for (var i = 0u; i < k; i++) {
        prob[i] = prob[i] / sum;
    }
    var keep = k;
    if (params.top_p < 1.0) {
        var cum = 0.0;
        keep = 0u;
        for (var i = 0u; i < k; i++) {
            keep += 1u;
            cum += prob[i];
            if (cum >= params.top_p) {
                break;
            }
        }
        var s = 0.0;
        for (var i = 0u; i < keep; i++) {
            s += prob[i];
        }
        if (params.full_mass != 0u && cum < params.top_p) {
            s = params.top_p;  // the nucleus goes on past CAP: its mass is about top_p
        }
        for (var i = 0u; i < keep; i++) {
            prob[i] = prob[i] / s;
        }
    }
    let u = f32(step.seed >> 8u) * 5.9604644775390625e-8;
    var cum = 0.0;
    for (var i = 0u; i < keep; i++) {
        cum += prob[i];
        if (u < cum) {
            return IDMAX - klo[i];
        }
    }
    return IDMAX - klo[keep - 1u];
}

@compute @workgroup_size(256)
fn pick(@builtin(local_invocation_index) lid: u32) {
    for (var e = lid; e < CAP; e += 256u) {
        var hi = 0u;
        var lo = 0u;
        if (e < params.k) {
            hi = cand[2u * e];
            lo = cand[2u * e + 1u];
        }
        khi[e] = hi;
        klo[e] = lo;
    }
    workgroupBarrier();
    bitonic_desc(lid);
    if (lid == 0u) {
        let id = choose();
        out[0] = id;
        if (params.use_penalty != 0u) {
            seen[id / 32u] = seen[id / 32u] | (1u << (id % 32u));
        }
    }
}
