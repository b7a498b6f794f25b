//! The vision tower's and projector's weights on the GPU, uploaded from the CPU model's
//! [`VisionTower`] and [`Projector`] (the same segments, byte for byte, as
//! [`super::decoder_weights`] does for the decoder).

use super::decoder_weights::GpuLinear;
use super::weights::GpuMatrix;
use super::GpuContext;
use crate::error::Result;
use crate::model::linear::Linear;
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
    pub fn upload(ctx: &GpuContext, tower: &VisionTower, projector: Option<&Projector>) -> Result<GpuVisionWeights> {
        let layers =
            tower.layers.iter().enumerate().map(|(i, l)| upload_layer(ctx, i, l)).collect::<Result<Vec<_>>>()?;
        let projector = match projector {
            None => None,
            Some(p) => {
                let second = match &p.second {
                    None => None,
                    Some((act, l)) => Some((*act, upload_linear(ctx, l, "projector.second")?)),
                };
                Some((upload_linear(ctx, &p.first, "projector.first")?, second))
            }
        };
        Ok(GpuVisionWeights {
            patch: upload_linear(ctx, &tower.patch, "vision.patch")?,
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

fn upload_linear(ctx: &GpuContext, l: &Linear, label: &str) -> Result<GpuLinear> {
    Ok(GpuLinear { m: GpuMatrix::upload(ctx, &l.w, label)?, bias: l.bias.as_ref().map(|b| ctx.upload_f32(label, b)) })
}

fn upload_norm(ctx: &GpuContext, (w, b): &(Vec<f32>, Vec<f32>), label: &str) -> GpuLayerNorm {
    GpuLayerNorm { w: ctx.upload_f32(label, w), b: ctx.upload_f32(label, b) }
}

fn upload_layer(ctx: &GpuContext, i: usize, l: &EncoderLayer) -> Result<GpuEncoderLayer> {
    let name = |s: &str| format!("vision.layers.{i}.{s}");
    Ok(GpuEncoderLayer {
        ln1: upload_norm(ctx, &l.ln1, &name("ln1")),
        q: upload_linear(ctx, &l.q, &name("q"))?,
        k: upload_linear(ctx, &l.k, &name("k"))?,
        v: upload_linear(ctx, &l.v, &name("v"))?,
        o: upload_linear(ctx, &l.o, &name("o"))?,
        ln2: upload_norm(ctx, &l.ln2, &name("ln2")),
        fc1: upload_linear(ctx, &l.fc1, &name("fc1"))?,
        fc2: upload_linear(ctx, &l.fc2, &name("fc2"))?,
    })
}
