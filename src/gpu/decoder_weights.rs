//! The decoder's weights on the GPU, uploaded from the CPU model's [`Llama`] (the same
//! segments, byte for byte), and the size check that runs before anything is allocated.

use super::weights::GpuMatrix;
use super::GpuContext;
use crate::error::{Error, Result};
use crate::model::linear::Linear;
use crate::model::llama::{Layer, Norm};
use crate::model::Llama;

/// A norm's optional weight and bias `[hidden]`.
pub struct GpuNorm {
    pub w: Option<wgpu::Buffer>,
    pub b: Option<wgpu::Buffer>,
}

/// A linear layer: weight `[out, in]` in its stored format, optional bias `[out]`.
pub struct GpuLinear {
    pub m: GpuMatrix,
    pub bias: Option<wgpu::Buffer>,
}

pub struct GpuLayer {
    pub input_norm: GpuNorm,
    pub q: GpuLinear,
    pub k: GpuLinear,
    pub v: GpuLinear,
    pub o: GpuLinear,
    pub post_norm: GpuNorm,
    pub gate: GpuLinear,
    pub up: GpuLinear,
    pub down: GpuLinear,
}

/// Every weight of a decoder.
pub struct GpuWeights {
    /// `[vocab, hidden]`; the output head too when tied.
    pub embed: GpuMatrix,
    pub layers: Vec<GpuLayer>,
    pub norm: GpuNorm,
    /// `[vocab, hidden]`, `None` when tied to `embed`.
    pub lm_head: Option<GpuMatrix>,
}

impl GpuWeights {
    pub fn upload(ctx: &GpuContext, lm: &Llama) -> Result<GpuWeights> {
        let layers = lm.layers.iter().enumerate().map(|(i, l)| upload_layer(ctx, i, l)).collect::<Result<_>>()?;
        Ok(GpuWeights {
            embed: GpuMatrix::upload(ctx, &lm.embed.w, "embed")?,
            layers,
            norm: upload_norm(ctx, &lm.norm, "norm"),
            lm_head: lm.lm_head.as_ref().map(|h| GpuMatrix::upload(ctx, &h.w, "lm_head")).transpose()?,
        })
    }

    /// The output projection.
    pub fn head(&self) -> &GpuMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    pub fn nbytes(&self) -> u64 {
        let lin = |l: &GpuLinear| l.m.nbytes();
        let layers: u64 = self
            .layers
            .iter()
            .map(|y| [&y.q, &y.k, &y.v, &y.o, &y.gate, &y.up, &y.down].map(lin).iter().sum::<u64>())
            .sum();
        layers + self.embed.nbytes() + self.lm_head.as_ref().map_or(0, |h| h.nbytes())
    }
}

fn upload_linear(ctx: &GpuContext, l: &Linear, label: &str) -> Result<GpuLinear> {
    Ok(GpuLinear { m: GpuMatrix::upload(ctx, &l.w, label)?, bias: l.bias.as_ref().map(|b| ctx.upload_f32(label, b)) })
}

fn upload_norm(ctx: &GpuContext, n: &Norm, label: &str) -> GpuNorm {
    GpuNorm { w: n.w.as_ref().map(|w| ctx.upload_f32(label, w)), b: n.b.as_ref().map(|b| ctx.upload_f32(label, b)) }
}

fn upload_layer(ctx: &GpuContext, i: usize, l: &Layer) -> Result<GpuLayer> {
    let name = |s: &str| format!("layers.{i}.{s}");
    Ok(GpuLayer {
        input_norm: upload_norm(ctx, &l.input_norm, &name("input_norm")),
        q: upload_linear(ctx, &l.q, &name("q"))?,
        k: upload_linear(ctx, &l.k, &name("k"))?,
        v: upload_linear(ctx, &l.v, &name("v"))?,
        o: upload_linear(ctx, &l.o, &name("o"))?,
        post_norm: upload_norm(ctx, &l.post_norm, &name("post_norm")),
        gate: upload_linear(ctx, &l.gate, &name("gate"))?,
        up: upload_linear(ctx, &l.up, &name("up"))?,
        down: upload_linear(ctx, &l.down, &name("down"))?,
    })
}

/// What the decoder will allocate, checked against the adapter before any allocation:
/// weights (split per binding as needed), the KV cache per layer for `capacity` positions
/// (one binding each), and the activations of one prefill chunk. `budget`: an optional cap
/// on the total bytes (WebGPU does not report device memory; callers may pass one).
pub struct Footprint {
    /// Largest capacity one per-layer cache binding allows.
    pub max_positions: usize,
    /// Rows of one prefill chunk whose widest activation fits a binding.
    pub prefill_chunk: usize,
}

pub fn footprint(ctx: &GpuContext, lm: &Llama, budget: Option<u64>) -> Result<Footprint> {
    let c = &lm.cfg;
    let max_binding = ctx.max_binding();
    let row = (c.n_kv_heads() * c.head_dim() * 4) as u64; // one position of one layer's K (or V)
    let weights = lm.weight_bytes() as u64;
    let max_positions = (max_binding / row.max(1)) as usize;
    if max_positions == 0 {
        return Err(Error::Gpu(format!(
            "one KV-cache position ({row} bytes) exceeds the adapter's {max_binding}-byte binding limit"
        )));
    }
    let widest =
        [c.hidden_size, c.intermediate_size, c.n_heads() * c.head_dim(), c.vocab_size].into_iter().max().unwrap()
            as u64
            * 4;
    let prefill_chunk = ((max_binding / widest) as usize).clamp(1, 512);
    let kv_per_position = 2 * row * c.num_hidden_layers as u64;
    if let Some(b) = budget {
        let need = weights + kv_per_position * 256;
        if need > b {
            return Err(Error::Gpu(format!(
                "the model needs {:.1} MiB of GPU memory (weights {:.1} MiB + a 256-position KV cache), over the {:.1} MiB budget",
                need as f64 / 1048576.0,
                weights as f64 / 1048576.0,
                b as f64 / 1048576.0
            )));
        }
    }
    Ok(Footprint { max_positions, prefill_chunk })
}
