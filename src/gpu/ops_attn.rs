//! Attention plan builders: decode (one query, split-K over the cache, then a reduce),
//! prefill (tiled over queries and keys, causal, GQA, sliding window) and the vision tower's
//! full bidirectional attention. Shaders: `shaders/attention_{decode,reduce,prefill}.wgsl`.
//!
//! CPU references: `src/model/attention.rs` `attend` (scale `1/sqrt(head_dim)`, window: the
//! query at `p` sees keys `j` with `p - window < j <= p`) and `src/vision/ops.rs`
//! `full_attention`.

use super::ops::{fw, Launch};
use super::{GpuContext, Plan, Step};
use crate::error::{Error, Result};

/// Largest head_dim the attention kernels hold in workgroup memory and registers.
pub const MAX_HEAD_DIM: u32 = 256;

/// Head layout of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Sliding window (`None`: full causal attention).
    pub window: Option<u32>,
    /// Score scale; the decoder's is `1 / sqrt(head_dim)`.
    pub scale: f32,
}

impl AttnDims {
    /// The decoder's dims with its default scale `1 / sqrt(head_dim)` (as `attend` computes it).
    pub fn new(heads: u32, kv_heads: u32, head_dim: u32, window: Option<u32>) -> AttnDims {
        AttnDims { heads, kv_heads, head_dim, window, scale: 1.0 / (head_dim as f32).sqrt() }
    }

    fn check(&self) -> Result<()> {
        let ok = self.heads > 0
            && self.kv_heads > 0
            && self.heads.is_multiple_of(self.kv_heads)
            && (1..=MAX_HEAD_DIM).contains(&self.head_dim)
            && self.heads <= 65535;
        if !ok {
            return Err(Error::Gpu(format!("attention over {self:?} (head_dim <= {MAX_HEAD_DIM})")));
        }
        Ok(())
    }
}

/// Split count for a decode plan over a cache of `capacity` positions: about 64 positions
/// per split at full length, at most 64 splits.
pub fn decode_splits(capacity: u32) -> u32 {
    capacity.div_ceil(64).clamp(1, 64)
}

/// Attention of one query `q: [heads, head_dim]` over the first `Step.kv_len` positions of
/// the caches `[capacity, kv_heads, head_dim]` → `out: [heads, head_dim]`, in `n_split`
/// slices per head plus a reduce. Replayable: the cache length is read from `step`.
pub fn attention_decode(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    q: &wgpu::Buffer,
    (k_cache, v_cache): (&wgpu::Buffer, &wgpu::Buffer),
    out: &wgpu::Buffer,
    dims: AttnDims,
    n_split: u32,
) -> Result<Plan> {
    dims.check()?;
    let n_split = n_split.clamp(1, 65535);
    let mut plan = Plan::default();
    let parts = (dims.heads * n_split) as u64;
    let part_ml = ctx.zeros("attn part_ml", 8 * parts); // [heads, n_split, 2]
    let part_acc = ctx.zeros("attn part_acc", 4 * parts * dims.head_dim as u64); // [heads, n_split, hd]
    let window = dims.window.unwrap_or(0);
    let params = [dims.heads, dims.kv_heads, dims.head_dim, n_split, window, fw(dims.scale)];
    let buffers = [(1, step), (2, q), (3, k_cache), (4, v_cache), (5, &part_ml), (6, &part_acc)];
    Launch {
        label: "attention_decode",
        shader: "attention_decode",
        entry: "main",
        overrides: &[],
        params: &params,
        buffers: &buffers,
        groups: [n_split, dims.heads, 1],
    }
    .push(ctx, &mut plan)?;
    let params = [dims.heads, dims.head_dim, n_split];
    Launch {
        label: "attention_reduce",
        shader: "attention_reduce",
        entry: "main",
        overrides: &[],
        params: &params,
        buffers: &[(1, &part_ml), (2, &part_acc), (3, out)],
        groups: [dims.heads, 1, 1],
    }
    .push(ctx, &mut plan)?;
    plan.keep.extend([part_ml, part_acc]);
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn prefill_launch(
    ctx: &GpuContext,
    plan: &mut Plan,
    step: &wgpu::Buffer,
    q: &wgpu::Buffer,
    (k, v): (&wgpu::Buffer, &wgpu::Buffer),
    out: &wgpu::Buffer,
    n: u32,
    dims: AttnDims,
    causal: bool,
) -> Result<()> {
    dims.check()?;
    let blocks = n.div_ceil(8);
    if n == 0 || blocks > 65535 {
        return Err(Error::Gpu(format!("attention over {n} query rows")));
    }
    let window = dims.window.unwrap_or(0);
    let params = [n, dims.heads, dims.kv_heads, dims.head_dim, window, causal as u32, fw(dims.scale)];
    let buffers = [(1, step), (2, q), (3, k), (4, v), (5, out)];
    Launch {
        label: "attention_prefill",
        shader: "attention_prefill",
        entry: "main",
        overrides: &[],
        params: &params,
        buffers: &buffers,
        groups: [blocks, dims.heads, 1],
    }
    .push(ctx, plan)
}

/// Causal attention of `q: [n, heads, head_dim]` (rows at positions `Step.pos0 ..`) over the
/// caches `[capacity, kv_heads, head_dim]` holding `Step.kv_len = pos0 + n` positions (the new
/// rows already appended) → `out: [n, heads, head_dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_prefill(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    q: &wgpu::Buffer,
    kv_cache: (&wgpu::Buffer, &wgpu::Buffer),
    out: &wgpu::Buffer,
    n: u32,
    dims: AttnDims,
) -> Result<Plan> {
    let mut plan = Plan::default();
    prefill_launch(ctx, &mut plan, step, q, kv_cache, out, n, dims, true)?;
    Ok(plan)
}

/// The vision tower's bidirectional attention: `q`, `k`, `v`, `out`: `[n, heads, head_dim]`
/// (= `[n, hidden]`), scale `head_dim^-0.5`, no mask (`CLIPAttention`, `SiglipAttention`).
pub fn attention_full(
    ctx: &GpuContext,
    q: &wgpu::Buffer,
    kv: (&wgpu::Buffer, &wgpu::Buffer),
    out: &wgpu::Buffer,
    n: u32,
    heads: u32,
    head_dim: u32,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let step = ctx.uniform("vision step", bytemuck::cast_slice(&[Step { pos0: 0, n, kv_len: n, seed: 0 }]));
    let dims = AttnDims { heads, kv_heads: heads, head_dim, window: None, scale: (head_dim as f32).powf(-0.5) };
    prefill_launch(ctx, &mut plan, &step, q, kv, out, n, dims, false)?;
    plan.keep.push(step);
    Ok(plan)
}
