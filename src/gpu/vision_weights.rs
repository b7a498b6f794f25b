//! The vision tower's and projector's weights on the GPU: each matrix either uploaded already
//! as its shard arrived ([`Streamed`], [`super::stream`]; the CPU model holds a placeholder) or
//! uploaded here from the CPU model's [`VisionTower`] and [`Projector`] (the same segments,
//! byte for byte, as [`super::decoder_weights`] does for the decoder).

use super::decoder_weights::{take_or_upload, GpuLinear, Streamed};
use super::GpuContext;
use crate::error::Result;
use crate::model::linear::Linear;
use crate::model::slots::{Slot, VisionProj};
use crate::vision::clip::{EncoderLayer, VisionTower};
use crate::vision::ops::Activation;
use crate::vision::projector::Projector;

/// A LayerNorm's weight and bias `[hidden]`.
pub struct GpuLayerNorm {
    pub w: wgpu::Buffer,
    pub b: wgpu::Buffer,
}

/// One encoder layer.
pub struct GpuEncoderLayer {
    pub ln1: GpuLayerNorm,
    pub q: GpuLinear,
    pub k: GpuLinear,
    pub v: GpuLinear,
    pub o: GpuLinear,
    pub ln2: GpuLayerNorm,
    /// `[intermediate, hidden]`
    pub fc1: GpuLinear,
    /// `[hidden, intermediate]`
    pub fc2: GpuLinear,
}

/// Every weight of a tower (the layers it was loaded with) and, optionally, its projector.
pub struct GpuVisionWeights {
    /// `[hidden, channels*p*p]`, bias for SigLIP.
    pub patch: GpuLinear,
    /// `[hidden]`, CLIP only.
    pub class_embedding: Option<wgpu::Buffer>,
    /// `[num_positions, hidden]`
    pub position: wgpu::Buffer,
    /// CLIP's `pre_layrnorm`.
    pub pre_norm: Option<GpuLayerNorm>,
    pub layers: Vec<GpuEncoderLayer>,
    /// `[text_hidden, features]` and, for `mlp2x`, the activation and `[text_hidden, text_hidden]`.
    pub projector: Option<(GpuLinear, Option<(Activation, GpuLinear)>)>,
}

impl GpuVisionWeights {
    /// Upload every weight of `tower` (and `projector`) from memory.
    pub fn upload(ctx: &GpuContext, tower: &VisionTower, projector: Option<&Projector>) -> Result<GpuVisionWeights> {
        Self::upload_streamed(ctx, tower, projector, &mut Streamed::new())
    }

    /// Every weight of `tower` (and `projector`), taking the matrices in `streamed` (which
    /// must match the model's placeholders in format and shape) and uploading the rest.
    pub fn upload_streamed(
        ctx: &GpuContext,
        tower: &VisionTower,
        projector: Option<&Projector>,
        streamed: &mut Streamed,
    ) -> Result<GpuVisionWeights> {
        let mut up = Up { ctx, streamed };
        let layers = tower.layers.iter().enumerate().map(|(i, l)| up.layer(i, l)).collect::<Result<Vec<_>>>()?;
        let projector = match projector {
            None => None,
            Some(p) => {
                let second = match &p.second {
                    None => None,
                    Some((act, l)) => Some((*act, up.linear(l, Slot::Projector(1), "projector.second")?)),
                };
                Some((up.linear(&p.first, Slot::Projector(0), "projector.first")?, second))
            }
        };
        Ok(GpuVisionWeights {
            patch: up.linear(&tower.patch, Slot::Patch, "vision.patch")?,
            class_embedding: tower.class_embedding.as_ref().map(|c| ctx.upload_f32("vision.class", c)),
            position: ctx.upload_f32("vision.position", &tower.position),
            pre_norm: tower.pre_norm.as_ref().map(|n| upload_norm(ctx, n, "vision.pre_norm")),
            layers,
            projector,
        })
    }

    /// Bytes of the linear weights on the GPU.
    pub fn nbytes(&self) -> u64 {
        let lin = |l: &GpuLinear| l.m.nbytes();
        let layers: u64 =
            self.layers.iter().map(|y| [&y.q, &y.k, &y.v, &y.o, &y.fc1, &y.fc2].map(lin).iter().sum::<u64>()).sum();
        let proj = self.projector.as_ref().map_or(0, |(a, b)| lin(a) + b.as_ref().map_or(0, |(_, l)| lin(l)));
        layers + lin(&self.patch) + proj + self.position.size()
    }
}

/// Uploads, taking streamed matrices by slot.
struct Up<'a> {
    ctx: &'a GpuContext,
    streamed: &'a mut Streamed,
}

impl Up<'_> {
    fn linear(&mut self, l: &Linear, slot: Slot, label: &str) -> Result<GpuLinear> {
        let m = take_or_upload(self.ctx, self.streamed, slot, &l.w, label)?;
        Ok(GpuLinear { m, bias: l.bias.as_ref().map(|b| self.ctx.upload_f32(label, b)) })
    }

    fn layer(&mut self, i: usize, l: &EncoderLayer) -> Result<GpuEncoderLayer> {
        let (ctx, name) = (self.ctx, |s: &str| format!("vision.layers.{i}.{s}"));
        let (ln1, ln2) = (upload_norm(ctx, &l.ln1, &name("ln1")), upload_norm(ctx, &l.ln2, &name("ln2")));
        let mut lin = |p: VisionProj, s: &str| self.linear(l.proj(p), Slot::Vision(i, p), &name(s));
        Ok(GpuEncoderLayer {
            ln1,
            q: lin(VisionProj::Q, "q")?,
            k: lin(VisionProj::K, "k")?,
            v: lin(VisionProj::V, "v")?,
            o: lin(VisionProj::O, "o")?,
            ln2,
            fc1: lin(VisionProj::Fc1, "fc1")?,
            fc2: lin(VisionProj::Fc2, "fc2")?,
        })
    }
}

fn upload_norm(ctx: &GpuContext, (w, b): &(Vec<f32>, Vec<f32>), label: &str) -> GpuLayerNorm {
    GpuLayerNorm { w: ctx.upload_f32(label, w), b: ctx.upload_f32(label, b) }
}
