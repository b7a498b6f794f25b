//! Plan builders for the decoder's non-matmul ops (norms, RoPE, KV append, element-wise):
//! each returns a [`Plan`] of dispatches built once and replayed. Per-token values (the
//! position) come from the [`super::Step`] uniform the caller binds, never from baked
//! parameters. Attention is in [`super::ops_attn`], sampling in [`super::ops_sample`].
//!
//! CPU references: `src/model/ops.rs` (norms, activations, add), `src/model/rope.rs`,
//! `src/model/kv.rs`, `src/vision/ops.rs` (LayerNorm, activations), `src/model/llama.rs`
//! (embedding / logit scale, `clip_qkv`). The shaders are `shaders/{op}.wgsl`.

use super::{grid, Dispatch, GpuContext, Plan};
use crate::error::{Error, Result};
use crate::model::config::Act;
use crate::vision::ops::Activation;

/// Invocations per workgroup of the element-wise kernels.
const WG: u32 = 256;

/// One kernel launch to add to a plan: shader file, entry point, override constants,
/// parameter words (binding 0) and `(binding, buffer)` pairs for the rest.
pub(crate) struct Launch<'a> {
    pub label: &'static str,
    pub shader: &'a str,
    pub entry: &'a str,
    pub overrides: &'a [(&'a str, f64)],
    pub params: &'a [u32],
    pub buffers: &'a [(u32, &'a wgpu::Buffer)],
    pub groups: [u32; 3],
}

impl Launch<'_> {
    /// Compile (cached), bind and append to `plan`; the parameter buffer joins `plan.keep`.
    pub(crate) fn push(&self, ctx: &GpuContext, plan: &mut Plan) -> Result<()> {
        let pipe = ctx.pipeline(self.shader, self.entry, self.overrides)?;
        let params = ctx.uniform(self.label, self.params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
        entries.extend(
            self.buffers.iter().map(|(b, buf)| wgpu::BindGroupEntry { binding: *b, resource: buf.as_entire_binding() }),
        );
        #[cfg(not(target_arch = "wasm32"))]
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("binding `{}` ({} {}): {e}", self.label, self.shader, self.entry)));
        }
        plan.push(Dispatch { label: self.label, pipe, bind, groups: self.groups });
        plan.keep.push(params);
        Ok(())
    }
}

/// f32 parameter word.
pub(crate) fn fw(x: f32) -> u32 {
    x.to_bits()
}

/// Workgroups for `n` invocations of a 256-wide element-wise kernel, folded into y.
fn elementwise_grid(n: u32) -> [u32; 3] {
    grid(n.div_ceil(WG))
}

/// A 4-byte placeholder for an optional binding the kernel does not read.
fn dummy(ctx: &GpuContext) -> wgpu::Buffer {
    ctx.zeros("unused", 4)
}

fn check_rows(what: &str, n: u32, d: u32) -> Result<()> {
    if n == 0 || d == 0 {
        return Err(Error::Gpu(format!("{what}: empty shape [{n}, {d}]")));
    }
    Ok(())
}

/// RMSNorm `y = w * x / rms(x)` of each row (`w: None`: weightless). `x`, `y`: `[n, d]`, `w`: `[d]`.
pub fn rms_norm(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    w: Option<&wgpu::Buffer>,
    y: &wgpu::Buffer,
    n: u32,
    d: u32,
    eps: f32,
) -> Result<Plan> {
    check_rows("rms_norm", n, d)?;
    let mut plan = Plan::default();
    let (entry, buffers): (&str, Vec<(u32, &wgpu::Buffer)>) = match w {
        Some(w) => ("main", vec![(1, x), (2, w), (3, y)]),
        None => ("plain", vec![(1, x), (3, y)]),
    };
    let params = [n, d, fw(eps)];
    Launch {
        label: "rms_norm",
        shader: "rms_norm",
        entry,
        overrides: &[],
        params: &params,
        buffers: &buffers,
        groups: grid(n),
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// Weightless RMSNorm of each row of `x: [n, d]` in place (BitLinear158's input norm).
pub fn rms_norm_inplace(ctx: &GpuContext, x: &wgpu::Buffer, n: u32, d: u32, eps: f32) -> Result<Plan> {
    check_rows("rms_norm_inplace", n, d)?;
    let mut plan = Plan::default();
    let params = [n, d, fw(eps)];
    Launch {
        label: "rms_norm_inplace",
        shader: "rms_norm",
        entry: "plain_inplace",
        overrides: &[],
        params: &params,
        buffers: &[(3, x)],
        groups: grid(n),
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// LayerNorm (biased variance) of each row, then `* w`, `+ b` when given. `x`, `y`: `[n, d]`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    w: Option<&wgpu::Buffer>,
    b: Option<&wgpu::Buffer>,
    y: &wgpu::Buffer,
    n: u32,
    d: u32,
    eps: f32,
) -> Result<Plan> {
    check_rows("layer_norm", n, d)?;
    let mut plan = Plan::default();
    let none = dummy(ctx);
    let params = [n, d, fw(eps), w.is_some() as u32, b.is_some() as u32];
    let buffers = [(1, x), (2, w.unwrap_or(&none)), (3, b.unwrap_or(&none)), (4, y)];
    Launch {
        label: "layer_norm",
        shader: "layer_norm",
        entry: "main",
        overrides: &[],
        params: &params,
        buffers: &buffers,
        groups: grid(n),
    }
    .push(ctx, &mut plan)?;
    plan.keep.push(none);
    Ok(plan)
}

/// RoPE in place on `x: [n, heads, head_dim]`, row `t` at position `Step.pos0 + t`;
/// `inv_freq: [head_dim / 2]` from [`crate::model::rope::Rope::frequencies`], `attention_factor`
/// from the same `Rope` (YaRN; 1 otherwise).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    inv_freq: &wgpu::Buffer,
    x: &wgpu::Buffer,
    n: u32,
    heads: u32,
    head_dim: u32,
    attention_factor: f32,
) -> Result<Plan> {
    if !head_dim.is_multiple_of(2) || n == 0 || heads == 0 {
        return Err(Error::Gpu(format!("rope over [{n}, {heads}, {head_dim}]")));
    }
    let mut plan = Plan::default();
    let params = [n, heads, head_dim, fw(attention_factor)];
    let total = n * heads * head_dim / 2;
    let buffers = [(1, step), (2, inv_freq), (3, x)];
    Launch {
        label: "rope",
        shader: "rope",
        entry: "main",
        overrides: &[],
        params: &params,
        buffers: &buffers,
        groups: elementwise_grid(total),
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// Copy `k`, `v`: `[n, row]` (row = kv_heads · head_dim) into the caches `[capacity, row]`
/// at rows `Step.pos0 ..`.
pub fn kv_append(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    (k, v): (&wgpu::Buffer, &wgpu::Buffer),
    (k_cache, v_cache): (&wgpu::Buffer, &wgpu::Buffer),
    n: u32,
    row: u32,
) -> Result<Plan> {
    check_rows("kv_append", n, row)?;
    let mut plan = Plan::default();
    let params = [n * row, row];
    let buffers = [(1, step), (2, k), (3, v), (4, k_cache), (5, v_cache)];
    Launch {
        label: "kv_append",
        shader: "kv_append",
        entry: "main",
        overrides: &[],
        params: &params,
        buffers: &buffers,
        groups: elementwise_grid(n * row),
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// One in-place element-wise kernel over `len` floats.
fn elementwise(
    ctx: &GpuContext,
    shader: &'static str,
    act: Option<u32>,
    extra: Option<f32>,
    buffers: &[(u32, &wgpu::Buffer)],
    len: u32,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut params = vec![len];
    params.extend(extra.map(fw));
    let overrides: Vec<(&str, f64)> = act.map(|a| ("ACT", a as f64)).into_iter().collect();
    Launch {
        label: shader,
        shader,
        entry: "main",
        overrides: &overrides,
        params: &params,
        buffers,
        groups: elementwise_grid(len),
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// `acc += x` over `len` floats (the residual add).
pub fn add(ctx: &GpuContext, acc: &wgpu::Buffer, x: &wgpu::Buffer, len: u32) -> Result<Plan> {
    elementwise(ctx, "add", None, None, &[(1, x), (2, acc)], len)
}

/// `x *= s` over `len` floats (Gemma's embedding scale, OLMo's logit scale).
pub fn scale(ctx: &GpuContext, x: &wgpu::Buffer, s: f32, len: u32) -> Result<Plan> {
    elementwise(ctx, "scale", None, Some(s), &[(1, x)], len)
}

/// `x = clamp(x, -m, m)` over `len` floats (OLMo's `clip_qkv`).
pub fn clamp(ctx: &GpuContext, x: &wgpu::Buffer, m: f32, len: u32) -> Result<Plan> {
    elementwise(ctx, "clamp", None, Some(m), &[(1, x)], len)
}

/// `gate = act(gate) * up` over `len` floats (SwiGLU / GeGLU).
pub fn glu(ctx: &GpuContext, act: Act, gate: &wgpu::Buffer, up: &wgpu::Buffer, len: u32) -> Result<Plan> {
    let code = match act {
        Act::Silu => 0,
        Act::GeluTanh => 1,
        Act::Gelu => 2,
    };
    elementwise(ctx, "glu", Some(code), None, &[(1, up), (2, gate)], len)
}

/// `x = act(x)` in place over `len` floats (vision MLPs, the projector).
pub fn act(ctx: &GpuContext, act: Activation, x: &wgpu::Buffer, len: u32) -> Result<Plan> {
    let code = match act {
        Activation::Silu => 0,
        Activation::GeluTanh => 1,
        Activation::Gelu => 2,
        Activation::QuickGelu => 3,
        Activation::Relu => 4,
    };
    elementwise(ctx, "act", Some(code), None, &[(1, x)], len)
}
