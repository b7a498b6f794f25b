//! The vision tower and the LLaVA projector on the GPU: the sequence of
//! [`crate::vision::clip::VisionTower::hidden_states`] and [`crate::model::llava::Llava::tile_features`]
//! (transformers' `CLIPVisionModel` / `SiglipVisionModel`, feature selection,
//! `LlavaMultiModalProjector`) recorded once as a [`Plan`] for one tile at the tower's image
//! size, and replayed per tile: the pixels are written, the plan submitted, the projected
//! features `[tokens, text_hidden]` copied back.
//!
//! Per tile: patch unfold (im2col) → patch GEMM (+ bias, SigLIP) → class token + position
//! embeddings → CLIP's `pre_layrnorm` → each layer (LayerNorm → Q, K, V → full attention →
//! out proj → residual; LayerNorm → fc1 → activation (CLIP `quick_gelu`) → fc2 → residual) →
//! the selected `hidden_states` rows (class token dropped under `default`) side by side →
//! projector (`linear_1` → act → `linear_2`). Weights are the checkpoint's segments, byte for
//! byte ([`GpuVisionWeights`]: streamed from the shards, or from the CPU model); INT8 / f16 /
//! INT4 vision weights go through the same GEMM as the decoder's prefill, or, for a smoothed
//! INT8 tower where it is faster, W8A8 ([`super::vision_kernel`] decides, [`super::linear_w8a8`]
//! runs it: the input of q/k/v, o, fc1 and fc2 quantized per token once, then `dot4I8Packed`
//! GEMMs). LLaVA-NeXT's tiles are submitted one after the other and read back together, then
//! packed on the CPU as
//! [`Llava::pack_tiles`] does.

use std::sync::Arc;

use super::decoder_weights::{GpuLinear, Streamed};
use super::linear::plan_linear;
use super::linear_w8a8::{plan_gemm_w8a8, plan_quantize_act, ActI8};
use super::ops::{act, add, layer_norm};
use super::ops_attn::attention_full;
use super::ops_vision::{copy_rows, patch_unfold, vision_embed, RowCopy};
use super::vision_kernel::{self, VisionKernelMode};
use super::vision_weights::{GpuLayerNorm, GpuVisionWeights};
use super::{GpuContext, Plan};
use crate::error::{Error, Result};
use crate::model::llava::{Llava, LlavaConfig};
use crate::quant::WeightFormat;
use crate::vision::clip::{VisionDims, VisionTower};
use crate::vision::projector::Projector;
use crate::vision::w8a8::TowerKernel;

/// Which hidden states become features: `hidden_states[i]` for each `i` of `layers` (side by
/// side along the feature axis), rows from `skip` on (1 drops the class token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSelect {
    pub layers: Vec<usize>,
    pub skip: usize,
}

/// Activation buffers of one tile (`n` = tower tokens, `t` = selected tokens).
struct Acts {
    pixels: wgpu::Buffer,  // [c, s, s]
    cols: wgpu::Buffer,    // [g*g, c*p*p]
    patches: wgpu::Buffer, // [g*g, hidden]
    e: wgpu::Buffer,       // [n, hidden] embeddings before the pre-norm
    x: wgpu::Buffer,       // [n, hidden] residual stream
    h: wgpu::Buffer,       // [n, hidden]
    q: wgpu::Buffer,       // [n, hidden]
    k: wgpu::Buffer,       // [n, hidden]
    v: wgpu::Buffer,       // [n, hidden]
    att: wgpu::Buffer,     // [n, hidden]
    tmp: wgpu::Buffer,     // [n, hidden]
    mlp: wgpu::Buffer,     // [n, intermediate]
    sel: wgpu::Buffer,     // [t, hidden * layers]
    p1: wgpu::Buffer,      // [t, text_hidden]
    out: wgpu::Buffer,     // [t, text_hidden] (or [t, hidden * layers] without a projector)
}

impl Acts {
    fn new(ctx: &GpuContext, d: &VisionDims, t: usize, feat: usize, out: usize) -> Result<Acts> {
        let (n, h, gg, cpp) = (d.num_positions(), d.hidden, d.num_patches(), d.channels * d.patch_size.pow(2));
        let sizes = [d.channels * d.image_size.pow(2), gg * cpp, n * d.intermediate, t * feat, t * out];
        let widest = 4 * sizes.into_iter().max().unwrap_or(0).max(n * h) as u64;
        if widest > ctx.max_binding() {
            return Err(Error::Gpu(format!(
                "a vision activation of {widest} bytes exceeds the adapter's {}-byte binding limit",
                ctx.max_binding()
            )));
        }
        let f = |label: &str, elems: usize| ctx.zeros(label, 4 * elems.max(1) as u64);
        Ok(Acts {
            pixels: f("vision.pixels", sizes[0]),
            cols: f("vision.cols", gg * cpp),
            patches: f("vision.patches", gg * h),
            e: f("vision.e", n * h),
            x: f("vision.x", n * h),
            h: f("vision.h", n * h),
            q: f("vision.q", n * h),
            k: f("vision.k", n * h),
            v: f("vision.v", n * h),
            att: f("vision.att", n * h),
            tmp: f("vision.tmp", n * h),
            mlp: f("vision.mlp", n * d.intermediate),
            sel: f("vision.sel", t * feat),
            p1: f("vision.p1", t * out),
            out: f("vision.out", t * out),
        })
    }
}

/// Features of a submitted tile on their way back.
pub struct FeaturesPending {
    staging: wgpu::Buffer,
    len: usize,
}

impl FeaturesPending {
    /// Wait for the tile and read its features `[tokens, out_dim]`.
    pub async fn read(self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let bytes = ctx.map_read(&self.staging, 4 * self.len as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }
}

pub struct GpuVision {
    ctx: Arc<GpuContext>,
    dims: VisionDims,
    select: FeatureSelect,
    /// Tokens per tile after selection and the width of each output row.
    tokens: usize,
    out_dim: usize,
    w: GpuVisionWeights,
    acts: Acts,
    /// Per-token int8 activations of the W8A8 linears (`[n, max(hidden, intermediate)]`).
    act8: Option<ActI8>,
    kernel: TowerKernel,
    plan: Plan,
}

impl GpuVision {
    /// Upload `tower` (and `projector`) and record one tile. Without a projector the output is
    /// the selected hidden states. INT8 linears run W8A8 where [`vision_kernel`] says so.
    pub fn new(
        ctx: Arc<GpuContext>,
        tower: &VisionTower,
        projector: Option<&Projector>,
        select: FeatureSelect,
    ) -> Result<GpuVision> {
        Self::new_with(ctx, tower, projector, select, VisionKernelMode::Auto)
    }

    /// [`GpuVision::new`] with the INT8 linears' kernel chosen by `mode`.
    pub fn new_with(
        ctx: Arc<GpuContext>,
        tower: &VisionTower,
        projector: Option<&Projector>,
        select: FeatureSelect,
        mode: VisionKernelMode,
    ) -> Result<GpuVision> {
        Self::with_streamed(ctx, tower, projector, select, &mut Streamed::new(), mode)
    }

    /// [`GpuVision::new_with`] taking the matrices already uploaded as their shards arrived (the
    /// model holds placeholders for them, [`crate::model::llava_slots`]) out of `streamed`.
    pub fn with_streamed(
        ctx: Arc<GpuContext>,
        tower: &VisionTower,
        projector: Option<&Projector>,
        select: FeatureSelect,
        streamed: &mut Streamed,
        mode: VisionKernelMode,
    ) -> Result<GpuVision> {
        let dims = tower.dims.clone();
        let n = dims.num_positions();
        if select.layers.is_empty() || select.skip >= n || select.layers.iter().any(|&l| l > tower.layers.len()) {
            return Err(Error::Invalid(format!(
                "features {select:?} of a tower with {n} tokens and {} layers",
                tower.layers.len()
            )));
        }
        let feat = dims.hidden * select.layers.len();
        if let Some(p) = projector {
            if p.in_features() != feat {
                return Err(Error::Shape(format!(
                    "projector takes {} features, the tower gives {feat}",
                    p.in_features()
                )));
            }
        }
        let out_dim = projector.map_or(feat, |p| p.out_features());
        let tokens = n - select.skip;
        let w = GpuVisionWeights::upload_streamed(&ctx, tower, projector, streamed)?;
        let acts = Acts::new(&ctx, &dims, tokens, feat, out_dim)?;
        let wants = match mode {
            VisionKernelMode::W8A8 => vision_kernel::int8_linears(tower),
            VisionKernelMode::Auto => vision_kernel::candidate(tower),
            VisionKernelMode::WeightOnly => false,
        };
        let act8 = wants.then(|| ActI8::new(&ctx, n, dims.hidden.max(dims.intermediate)));
        let kernel = TowerKernel::default();
        let mut v = GpuVision { ctx, dims, select, tokens, out_dim, w, acts, act8, kernel, plan: Plan::default() };
        v.kernel = vision_kernel::choose(&v, tower, mode)?;
        if !v.kernel.w8a8 {
            v.act8 = None;
        }
        v.plan = v.record()?;
        v.ctx.take_error()?;
        Ok(v)
    }

    /// The tower and projector of a LLaVA model, selecting features as its config says.
    pub fn for_llava(ctx: Arc<GpuContext>, m: &Llava) -> Result<GpuVision> {
        Self::for_llava_streamed(ctx, m, &mut Streamed::new())
    }

    /// [`GpuVision::for_llava`] taking the streamed matrices out of `streamed`.
    pub fn for_llava_streamed(ctx: Arc<GpuContext>, m: &Llava, streamed: &mut Streamed) -> Result<GpuVision> {
        let skip = m.cfg.vision.num_positions() - m.cfg.tile_tokens();
        let select = FeatureSelect { layers: m.cfg.feature_layers.clone(), skip };
        GpuVision::with_streamed(ctx, &m.tower, Some(&m.projector), select, streamed, VisionKernelMode::Auto)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    /// Feature rows per tile.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
    /// Width of each feature row (the text hidden size with a projector).
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
    /// Dispatches one tile records.
    pub fn dispatches(&self) -> usize {
        self.plan.dispatches.len()
    }
    /// Bytes of weights uploaded.
    pub fn weight_bytes(&self) -> u64 {
        self.w.nbytes()
    }
    /// How the INT8 linears run (W8A8 or weight-only) and the load-time probe behind it.
    pub fn kernel(&self) -> TowerKernel {
        self.kernel
    }

    /// For [`vision_kernel`]'s probe: fc1 of the first layer on at most `tokens` tokens
    /// (`acts.h` → `acts.mlp`) as `(weight-only plan, W8A8 plan, tokens)`.
    pub(super) fn fc1_plans(&self, tokens: usize) -> Result<(Plan, Plan, usize)> {
        let (ctx, a) = (&*self.ctx, &self.acts);
        let (Some(l), Some(act)) = (self.w.layers.first(), self.act8.as_ref()) else {
            return Err(Error::Gpu("the W8A8 probe needs a layer and int8 scratch".into()));
        };
        let n = tokens.min(self.dims.num_positions()).max(1);
        let x = crate::rng::Rng::new(7).normals(n * self.dims.hidden, 0.0); // [n, hidden]
        ctx.queue.write_buffer(&a.h, 0, bytemuck::cast_slice(&x));
        let int8 = linear(ctx, &l.fc1, &a.h, &a.mlp, n as u32)?;
        let mut w8a8 = plan_quantize_act(ctx, &a.h, act, n as u32, l.fc1.m.cols as u32)?;
        w8a8.extend(plan_gemm_w8a8(ctx, &l.fc1.m, l.fc1.bias.as_ref(), act, &a.mlp, n as u32)?);
        Ok((int8, w8a8, n))
    }

    /// Write one tile `pixels: [C, S, S]` (S = the tower's image size), submit the recorded
    /// plan and start copying its features back. Tiles submitted in a row reuse the same
    /// activations safely: the queue runs them in order.
    pub fn submit(&self, pixels: &[f32]) -> Result<FeaturesPending> {
        let d = &self.dims;
        let want = d.channels * d.image_size * d.image_size;
        if pixels.len() != want {
            return Err(Error::Shape(format!(
                "{} pixel values: the vision tower takes [{}, {2}, {2}]",
                pixels.len(),
                d.channels,
                d.image_size
            )));
        }
        self.ctx.take_error()?;
        self.ctx.queue.write_buffer(&self.acts.pixels, 0, bytemuck::cast_slice(pixels));
        let len = self.tokens * self.out_dim;
        let staging = self.ctx.staging(4 * len as u64);
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.plan.record(&mut pass);
        }
        enc.copy_buffer_to_buffer(&self.acts.out, 0, &staging, 0, 4 * len as u64);
        self.ctx.queue.submit([enc.finish()]);
        Ok(FeaturesPending { staging, len })
    }

    /// Features `[tokens, out_dim]` of one tile (native: waits for the GPU).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn encode(&self, pixels: &[f32]) -> Result<Vec<f32>> {
        pollster::block_on(self.submit(pixels)?.read(&self.ctx))
    }

    /// [`Llava::image_features`] on the GPU: every tile submitted, then read back and packed.
    /// `tiles` are `[C, H, W]` of `tile_hw`; `orig` the image's size before preprocessing.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn image_features(
        &self,
        m: &Llava,
        tiles: &[&[f32]],
        tile_hw: (usize, usize),
        orig: (usize, usize),
    ) -> Result<Vec<f32>> {
        let s = self.dims.image_size;
        if tile_hw != (s, s) {
            return Err(Error::Shape(format!(
                "image of {}x{} pixels: the vision tower takes {s}x{s}",
                tile_hw.0, tile_hw.1
            )));
        }
        let pending = tiles.iter().map(|t| self.submit(t)).collect::<Result<Vec<_>>>()?;
        let feats = pending.into_iter().map(|p| pollster::block_on(p.read(&self.ctx))).collect::<Result<Vec<_>>>()?;
        m.pack_tiles(feats, orig)
    }

    /// The whole tile: embeddings, layers up to the last selected state, selection, projector.
    fn record(&self) -> Result<Plan> {
        let (ctx, d, a) = (&*self.ctx, &self.dims, &self.acts);
        let (n, h) = (d.num_positions() as u32, d.hidden as u32);
        let mut p = Plan::default();
        p.extend(patch_unfold(
            ctx,
            &a.pixels,
            &a.cols,
            (d.channels as u32, d.image_size as u32, d.image_size as u32),
            d.patch_size as u32,
        )?);
        p.extend(linear(ctx, &self.w.patch, &a.cols, &a.patches, d.num_patches() as u32)?);
        let target = if self.w.pre_norm.is_some() { &a.e } else { &a.x };
        p.extend(vision_embed(ctx, &a.patches, self.w.class_embedding.as_ref(), &self.w.position, target, n, h)?);
        if let Some(GpuLayerNorm { w, b }) = &self.w.pre_norm {
            p.extend(layer_norm(ctx, &a.e, Some(w), Some(b), &a.x, n, h, d.eps)?);
        }
        let last = self.select.layers.iter().copied().max().unwrap_or(0);
        for step in 0..=last {
            if step > 0 {
                self.record_layer(&mut p, step - 1)?;
            }
            for (slot, _) in self.select.layers.iter().enumerate().filter(|(_, &l)| l == step) {
                let feat = h * self.select.layers.len() as u32;
                let r = RowCopy {
                    rows: self.tokens as u32,
                    cols: h,
                    skip: self.select.skip as u32,
                    ld_src: h,
                    ld_dst: feat,
                    off: slot as u32 * h,
                };
                let dst = if self.w.projector.is_some() { &a.sel } else { &a.out };
                p.extend(copy_rows(ctx, &a.x, dst, r)?);
            }
        }
        self.record_projector(&mut p)?;
        Ok(p)
    }

    /// One `CLIPEncoderLayer` / `SiglipEncoderLayer` on `acts.x`.
    fn record_layer(&self, p: &mut Plan, l: usize) -> Result<()> {
        let (ctx, d, a, w) = (&*self.ctx, &self.dims, &self.acts, &self.w.layers[l]);
        let (n, h) = (d.num_positions() as u32, d.hidden as u32);
        p.extend(layer_norm(ctx, &a.x, Some(&w.ln1.w), Some(&w.ln1.b), &a.h, n, h, d.eps)?);
        // q, k and v read the same input: the first W8A8 one quantizes it for the others.
        let q8 = self.lin(p, &w.q, &a.h, &a.q, n, true)?;
        let k8 = self.lin(p, &w.k, &a.h, &a.k, n, !q8)?;
        self.lin(p, &w.v, &a.h, &a.v, n, !(q8 || k8))?;
        let heads = d.heads as u32;
        p.extend(attention_full(ctx, &a.q, (&a.k, &a.v), &a.att, n, heads, h / heads)?);
        self.lin(p, &w.o, &a.att, &a.tmp, n, true)?;
        p.extend(add(ctx, &a.x, &a.tmp, n * h)?);
        p.extend(layer_norm(ctx, &a.x, Some(&w.ln2.w), Some(&w.ln2.b), &a.h, n, h, d.eps)?);
        self.lin(p, &w.fc1, &a.h, &a.mlp, n, true)?;
        p.extend(act(ctx, d.act, &a.mlp, n * d.intermediate as u32)?);
        self.lin(p, &w.fc2, &a.mlp, &a.tmp, n, true)?;
        p.extend(add(ctx, &a.x, &a.tmp, n * h)?);
        Ok(())
    }

    /// Record `y = l(x)` for `n` tokens: W8A8 when chosen and `l` is INT8 (quantizing `x`
    /// first when `quantize`; else the int8 scratch already holds `x`), else the weight-only
    /// GEMM. Returns whether it ran W8A8.
    fn lin(
        &self,
        p: &mut Plan,
        l: &GpuLinear,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: u32,
        quantize: bool,
    ) -> Result<bool> {
        match &self.act8 {
            Some(act) if self.kernel.w8a8 && l.m.format == WeightFormat::Int8 => {
                if quantize {
                    p.extend(plan_quantize_act(&self.ctx, x, act, n, l.m.cols as u32)?);
                }
                p.extend(plan_gemm_w8a8(&self.ctx, &l.m, l.bias.as_ref(), act, y, n)?);
                Ok(true)
            }
            _ => {
                p.extend(linear(&self.ctx, l, x, y, n)?);
                Ok(false)
            }
        }
    }

    /// `linear_1` → act → `linear_2` (or the one `linear`) from `acts.sel` into `acts.out`.
    fn record_projector(&self, p: &mut Plan) -> Result<()> {
        let (ctx, a, t) = (&*self.ctx, &self.acts, self.tokens as u32);
        match &self.w.projector {
            None => {}
            Some((first, None)) => p.extend(linear(ctx, first, &a.sel, &a.out, t)?),
            Some((first, Some((f, second)))) => {
                p.extend(linear(ctx, first, &a.sel, &a.p1, t)?);
                p.extend(act(ctx, *f, &a.p1, t * self.out_dim as u32)?);
                p.extend(linear(ctx, second, &a.p1, &a.out, t)?);
            }
        }
        Ok(())
    }
}

/// Bytes of one tile's activations on the GPU (the buffers [`GpuVision`] allocates): `tokens`
/// selected rows `feat` wide, projected to `out` (with the W8A8 path's int8 scratch, `n` tokens
/// of `max(hidden, intermediate)` bytes and a scale each).
pub fn activation_bytes(d: &VisionDims, tokens: usize, feat: usize, out: usize) -> u64 {
    let (n, h, gg) = (d.num_positions(), d.hidden, d.num_patches());
    let cpp = d.channels * d.patch_size.pow(2);
    let int8 = n * (h.max(d.intermediate).div_ceil(4) + 1);
    let elems = d.channels * d.image_size.pow(2) + gg * cpp + gg * h + 8 * n * h + n * d.intermediate + int8;
    4 * (elems + tokens * feat + 2 * tokens * out) as u64
}

/// [`activation_bytes`] of a LLaVA model's tower and projector, from its config alone.
pub fn llava_activation_bytes(cfg: &LlavaConfig) -> u64 {
    activation_bytes(&cfg.vision, cfg.tile_tokens(), cfg.vision.hidden * cfg.feature_layers.len(), cfg.text.hidden_size)
}

fn linear(ctx: &GpuContext, l: &GpuLinear, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32) -> Result<Plan> {
    plan_linear(ctx, &l.m, l.bias.as_ref(), x, y, n)
}
