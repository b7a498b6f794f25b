//! The decoder's weights on the GPU: each matrix either uploaded already as its shard
//! arrived ([`Streamed`], [`super::stream`]) or uploaded here from the CPU model's [`Llama`]
//! (the same segments, byte for byte); and the size check that runs before anything is
//! allocated.

use super::weights::GpuMatrix;
use super::GpuContext;
use crate::error::{Error, Result};
use crate::model::llama::{Layer, Norm};
use crate::model::slots::{Proj, Slot};
use crate::model::{Llama, LlamaConfig};
use crate::quant::QTensor;
use std::collections::BTreeMap;

/// Matrices uploaded as their shards arrived, by place.
pub type Streamed = BTreeMap<Slot, GpuMatrix>;

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
    /// Every weight of `lm`, taking the matrices in `streamed` (which must match `lm`'s
    /// placeholders in format and shape) and uploading the others from `lm`.
    pub fn upload(ctx: &GpuContext, lm: &Llama, streamed: &mut Streamed) -> Result<GpuWeights> {
        let mut up = Uploader { ctx, lm, streamed };
        let layers = (0..lm.layers.len()).map(|i| up.layer(i)).collect::<Result<_>>()?;
        let lm_head = if lm.lm_head.is_some() { Some(up.matrix(Slot::Head, "lm_head")?) } else { None };
        Ok(GpuWeights {
            embed: up.matrix(Slot::Embed, "embed")?,
            layers,
            norm: upload_norm(ctx, &lm.norm, "norm"),
            lm_head,
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

struct Uploader<'a> {
    ctx: &'a GpuContext,
    lm: &'a Llama,
    streamed: &'a mut Streamed,
}

impl Uploader<'_> {
    fn matrix(&mut self, slot: Slot, label: &str) -> Result<GpuMatrix> {
        let cpu = self.lm.matrix(slot).ok_or_else(|| Error::Gpu(format!("{label}: no such matrix")))?;
        take_or_upload(self.ctx, self.streamed, slot, cpu, label)
    }

    fn linear(&mut self, i: usize, p: Proj, label: &str) -> Result<GpuLinear> {
        let bias = self.lm.layers[i].proj(p).bias.as_ref().map(|b| self.ctx.upload_f32(label, b));
        Ok(GpuLinear { m: self.matrix(Slot::Layer(i, p), label)?, bias })
    }

    fn layer(&mut self, i: usize) -> Result<GpuLayer> {
        let name = |s: &str| format!("layers.{i}.{s}");
        let l: &Layer = &self.lm.layers[i];
        let (input_norm, post_norm) = (
            upload_norm(self.ctx, &l.input_norm, &name("input_norm")),
            upload_norm(self.ctx, &l.post_norm, &name("post_norm")),
        );
        Ok(GpuLayer {
            input_norm,
            q: self.linear(i, Proj::Q, &name("q"))?,
            k: self.linear(i, Proj::K, &name("k"))?,
            v: self.linear(i, Proj::V, &name("v"))?,
            o: self.linear(i, Proj::O, &name("o"))?,
            post_norm,
            gate: self.linear(i, Proj::Gate, &name("gate"))?,
            up: self.linear(i, Proj::Up, &name("up"))?,
            down: self.linear(i, Proj::Down, &name("down"))?,
        })
    }
}

/// The matrix at `slot`: the one uploaded as its shard arrived (it must match `cpu`, the
/// model's placeholder, in format and shape), else uploaded now from `cpu`.
pub fn take_or_upload(
    ctx: &GpuContext,
    streamed: &mut Streamed,
    slot: Slot,
    cpu: &QTensor,
    label: &str,
) -> Result<GpuMatrix> {
    match streamed.remove(&slot) {
        Some(m) if (m.format, m.rows, m.cols) == (cpu.format(), cpu.rows, cpu.cols) => Ok(m),
        Some(m) => Err(Error::Gpu(format!(
            "{label}: uploaded as {} [{}, {}], the model holds {} [{}, {}]",
            m.format.name(),
            m.rows,
            m.cols,
            cpu.format().name(),
            cpu.rows,
            cpu.cols
        ))),
        None => GpuMatrix::upload(ctx, cpu, label),
    }
}

fn upload_norm(ctx: &GpuContext, n: &Norm, label: &str) -> GpuNorm {
    GpuNorm { w: n.w.as_ref().map(|w| ctx.upload_f32(label, w)), b: n.b.as_ref().map(|b| ctx.upload_f32(label, b)) }
}

/// What the model will allocate, checked against the adapter before any allocation:
/// weights (split per binding as needed), the KV cache per layer (one binding each) for the
/// requested context, and the activations of a decode step and of one prefill chunk.
/// `budget`: an optional cap on the total bytes (WebGPU does not report device memory;
/// callers may pass one).
pub struct Footprint {
    /// Largest capacity one per-layer cache binding allows.
    pub max_positions: usize,
    /// Rows of one prefill chunk whose widest activation fits a binding.
    pub prefill_chunk: usize,
}

/// What goes on the GPU besides the decoder's activations (from the model, or from a
/// manifest's segment lengths before any shard arrives).
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuNeed {
    /// Bytes of the decoder's weights.
    pub decoder: u64,
    /// Bytes of the vision tower's and projector's weights and one tile's activations (LLaVA).
    pub vision: u64,
    /// Positions the KV cache must reach (the engine's context length).
    pub context: usize,
}

const MIB: f64 = 1048576.0;

/// Check `need` (with the decoder `c`'s KV cache and activations) against `ctx`'s limits and
/// `budget`; the error names the sizes.
pub fn footprint(ctx: &GpuContext, c: &LlamaConfig, need: GpuNeed, budget: Option<u64>) -> Result<Footprint> {
    let max_binding = ctx.max_binding();
    let row = (c.n_kv_heads() * c.head_dim() * 4) as u64; // one position of one layer's K (or V)
    let max_positions = (max_binding / row.max(1)) as usize;
    if max_positions == 0 {
        return Err(Error::Gpu(format!(
            "one KV-cache position ({row} bytes) exceeds the adapter's {max_binding}-byte binding limit"
        )));
    }
    let (qd, kd) = (c.n_heads() * c.head_dim(), c.n_kv_heads() * c.head_dim());
    let widest = [c.hidden_size, c.intermediate_size, qd, c.vocab_size].into_iter().max().unwrap() as u64 * 4;
    if widest > max_binding {
        return Err(Error::Gpu(format!(
            "one activation row of {widest} bytes (hidden {}, MLP {}, vocabulary {}) exceeds the adapter's {max_binding}-byte binding limit",
            c.hidden_size, c.intermediate_size, c.vocab_size
        )));
    }
    let prefill_chunk = ((max_binding / widest) as usize).clamp(1, 512);
    let positions = need.context.clamp(1, max_positions) as u64;
    let kv = 2 * row * c.num_hidden_layers as u64 * positions;
    let per_row = (2 + 4 * c.hidden_size + 2 * qd + 2 * kd + 2 * c.intermediate_size) as u64 * 4;
    let acts = per_row * (prefill_chunk as u64 + 1) + (2 * c.hidden_size + c.vocab_size) as u64 * 8;
    let total = need.decoder + need.vision + kv + acts;
    if let Some(b) = budget.filter(|&b| total > b) {
        let vision = if need.vision > 0 {
            format!(" + vision tower and projector {:.1} MiB", need.vision as f64 / MIB)
        } else {
            String::new()
        };
        return Err(Error::Gpu(format!(
            "the model needs {:.1} MiB of GPU memory (decoder weights {:.1} MiB{vision} + KV cache for {positions} positions {:.1} MiB + activations {:.1} MiB), over the {:.1} MiB budget",
            total as f64 / MIB,
            need.decoder as f64 / MIB,
            kv as f64 / MIB,
            acts as f64 / MIB,
            b as f64 / MIB
        )));
    }
    Ok(Footprint { max_positions, prefill_chunk })
}
