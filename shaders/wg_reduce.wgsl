// Shared helper (included, not an op): sums and maxima over a 256-invocation workgroup.
// `wg_sum(v, lid)` / `wg_max(v, lid)` must be called from uniform control flow by every invocation.

const WG: u32 = 256u;
var<workgroup> wg_red: array<f32, 256>;

fn wg_sum(v: f32, lid: u32) -> f32 {
    wg_red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            wg_red[lid] += wg_red[lid + s];
        }
        workgroupBarrier();
    }
    let r = wg_red[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    wg_red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            wg_red[lid] = max(wg_red[lid], wg_red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = wg_red[0];
    workgroupBarrier();
    return r;
}
