// Shared by the gemv_* kernels (included with `// include: gemv_common`): the workgroup
// layout and the per-row reduction. A workgroup of WG = 256 invocations handles RPW
// consecutive output rows with a *team* of TPR = WG / RPW invocations per row (RPW is a power
// of two chosen on the host from the row length, so short rows do not leave most lanes idle).
// Each team streams its row with coalesced loads, each lane keeps a partial sum, and the team
// adds them in workgroup memory (a tree; no subgroup operations needed). Kernels whose
// activations cost more bytes than their weights (int4, ternary) let a team take NR rows at
// once, so each activation load serves NR rows.
// The including kernel declares `params` (with `y_off`, `has_bias`), `bias` and `y` first.

const WG: u32 = 256u;
override RPW: u32 = 4u;  // teams per workgroup (power of two, 1..256)
override NR: u32 = 1u;   // rows per team (1..4, kernels that support it)

var<workgroup> partial: array<f32, 256>;

// First output row of this invocation's team (the grid is folded into x and y, see
// `gpu::grid`); the team's rows are that one and the NR - 1 after it.
fn gemv_row(lid: u32, wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return ((wg.y * nwg.x + wg.x) * RPW + lid / (WG / RPW)) * NR;
}

// Lane of this invocation inside its row's team.
fn gemv_lane(lid: u32) -> u32 {
    return lid % (WG / RPW);
}

// Sum of `v` over this invocation's team; every invocation of the workgroup must call it.
fn team_sum(lid: u32, v: f32) -> f32 {
    let tpr = WG / RPW;
    workgroupBarrier();  // a previous call's readers are done with `partial`
    partial[lid] = v;
    workgroupBarrier();
    for (var s = tpr / 2u; s > 0u; s = s >> 1u) {
        if (lid % tpr < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    return partial[lid - lid % tpr];
}

// Output row `r` of this part: `v` plus its bias when there is one (lane 0 of the team calls it).
fn store_row(r: u32, v: f32) {
    var out = v;
    if (params.has_bias != 0u) {
        out += bias[params.y_off + r];
    }
    y[params.y_off + r] = out;
}
