//! Plan builders for the vision tower's own kernels (the rest of the tower reuses the
//! decoder's: GEMM, LayerNorm, full attention, activations, add): the patch unfold (im2col of
//! the stride-`p` patch convolution), the input rows (class token, patches, position
//! embeddings), the strided row copy that selects LLaVA's features, and the LLaVA merge that
//! puts image features in place of the image tokens' embeddings (used by the decoder).
//!
//! CPU references: `src/vision/clip.rs` (`unfold_patches`, `VisionTower::embed`) and
//! `src/model/llava.rs` (`Llava::tile_features`, `Llava::embed_with_images`). Shaders:
//! `shaders/patch_unfold.wgsl`, `shaders/vision_embed.wgsl`, `shaders/copy_rows.wgsl`,
//! `shaders/llava_merge.wgsl`.

use super::ops::Launch;
use super::{grid, GpuContext, Plan};
use crate::error::{Error, Result};

/// Workgroups for `len` invocations of a 256-wide element-wise kernel.
fn groups(len: u64) -> Result<[u32; 3]> {
    let wgs = len.div_ceil(256);
    if len == 0 || wgs > u32::MAX as u64 {
        return Err(Error::Gpu(format!("an element-wise vision kernel over {len} elements")));
    }
    Ok(grid(wgs as u32))
}

/// `px: [c, h, w]` → `out: [(h/p)*(w/p), c*p*p]` (`unfold_patches`).
pub fn patch_unfold(
    ctx: &GpuContext,
    px: &wgpu::Buffer,
    out: &wgpu::Buffer,
    (c, h, w): (u32, u32, u32),
    p: u32,
) -> Result<Plan> {
    if p == 0 || h < p || w < p || c == 0 {
        return Err(Error::Gpu(format!("patch unfold of [{c}, {h}, {w}] by {p}")));
    }
    let len = (h / p) as u64 * (w / p) as u64 * (c * p * p) as u64;
    if px.size() < 4 * (c * h * w) as u64 || out.size() < 4 * len {
        return Err(Error::Gpu(format!("patch unfold of [{c}, {h}, {w}] by {p}: buffers too small")));
    }
    let mut plan = Plan::default();
    Launch {
        label: "patch_unfold",
        shader: "patch_unfold",
        entry: "main",
        overrides: &[],
        params: &[c, h, w, p],
        buffers: &[(1, px), (2, out)],
        groups: groups(len)?,
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// `x: [n, d]` = (class embedding, then `patches: [n - 1, d]` when `cls` is given, else the
/// patches) + `pos: [n, d]`.
pub fn vision_embed(
    ctx: &GpuContext,
    patches: &wgpu::Buffer,
    cls: Option<&wgpu::Buffer>,
    pos: &wgpu::Buffer,
    x: &wgpu::Buffer,
    n: u32,
    d: u32,
) -> Result<Plan> {
    let len = n as u64 * d as u64;
    let has_cls = cls.is_some() as u32;
    if n <= has_cls || x.size() < 4 * len || pos.size() < 4 * len || patches.size() < 4 * (len - (has_cls * d) as u64) {
        return Err(Error::Gpu(format!("vision embeddings [{n}, {d}]: buffers too small")));
    }
    let mut plan = Plan::default();
    let none = ctx.zeros("vision_embed.no_cls", 16);
    Launch {
        label: "vision_embed",
        shader: "vision_embed",
        entry: "main",
        overrides: &[],
        params: &[n, d, has_cls],
        buffers: &[(1, patches), (2, cls.unwrap_or(&none)), (3, pos), (4, x)],
        groups: groups(len)?,
    }
    .push(ctx, &mut plan)?;
    plan.keep.push(none);
    Ok(plan)
}

/// Where [`copy_rows`] reads and writes: `rows` rows of `cols` floats, from row `skip` of a
/// source with `ld_src` floats per row, to column `off` of a destination with `ld_dst`.
#[derive(Clone, Copy, Debug)]
pub struct RowCopy {
    pub rows: u32,
    pub cols: u32,
    pub skip: u32,
    pub ld_src: u32,
    pub ld_dst: u32,
    pub off: u32,
}

/// `dst[t, off..off+cols] = src[t + skip, ..cols]` for `t < rows`.
pub fn copy_rows(ctx: &GpuContext, src: &wgpu::Buffer, dst: &wgpu::Buffer, r: RowCopy) -> Result<Plan> {
    let src_need = 4 * ((r.rows + r.skip) as u64 * r.ld_src as u64);
    let dst_need = 4 * (r.rows as u64 * r.ld_dst as u64);
    if r.cols > r.ld_src || r.off + r.cols > r.ld_dst || src.size() < src_need || dst.size() < dst_need {
        return Err(Error::Gpu(format!("row copy {r:?}: shapes or buffers do not fit")));
    }
    let mut plan = Plan::default();
    Launch {
        label: "copy_rows",
        shader: "copy_rows",
        entry: "main",
        overrides: &[],
        params: &[r.rows, r.cols, r.skip, r.ld_src, r.ld_dst, r.off],
        buffers: &[(1, src), (2, dst)],
        groups: groups(r.rows as u64 * r.cols as u64)?,
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// The LLaVA merge: `x[r] = feats[row_of[r]]` for each row `r < n` whose `row_of[r]` is a row
/// of `feats` (`u32::MAX`: the row keeps its token embedding). `feats: [k, d]` (`k` = its
/// size in rows), `row_of: [n]` u32, `x: [n, d]`.
pub fn llava_merge(
    ctx: &GpuContext,
    feats: &wgpu::Buffer,
    row_of: &wgpu::Buffer,
    x: &wgpu::Buffer,
    n: u32,
    d: u32,
) -> Result<Plan> {
    let len = n as u64 * d as u64;
    if d == 0 || x.size() < 4 * len || row_of.size() < 4 * n as u64 {
        return Err(Error::Gpu(format!("LLaVA merge of [{n}, {d}]: buffers too small")));
    }
    let k = (feats.size() / (4 * d as u64)).min(u32::MAX as u64) as u32;
    let mut plan = Plan::default();
    Launch {
        label: "llava_merge",
        shader: "llava_merge",
        entry: "main",
        overrides: &[],
        params: &[n, d, k],
        buffers: &[(1, feats), (2, row_of), (3, x)],
        groups: groups(len)?,
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}
