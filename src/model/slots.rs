//! The decoder's weight matrices by place ([`Slot`]) and by checkpoint name, so that the
//! matrices can be uploaded to the GPU as their shards arrive and the CPU model keeps only
//! shape-only placeholders ([`crate::quant::QTensor::placeholder`]) for them; and so that the
//! CPU weights can be filled in again later (a lost GPU device). A LLaVA model's vision tower
//! and projector have slots too ([`super::llava_slots`]); [`gpu_slots`] lists them all.
//!
//! Names follow `model::load` for HF-named decoders (`model.layers.N.self_attn.q_proj.weight`,
//! ...), mapped through [`LlavaNames`] for LLaVA checkpoints. OLMo-named checkpoints (fused
//! `att_proj` / `ff_proj`) have no slots: their matrices are split on load, so they stay in
//! memory and are uploaded from the CPU model.

use super::config::Names;
use super::linear::Linear;
use super::llama::{Layer, Llama};
use super::llava::{is_llava, LlavaConfig, LlavaNames};
use super::LlamaConfig;
use crate::error::{Error, Result};
use crate::io::{TensorData, WeightSource};
use crate::quant::{QTensor, WeightFormat};
use std::collections::BTreeMap;

/// A block linear of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down];

    /// The HF name after `model.layers.N.`.
    fn hf_name(self) -> &'static str {
        match self {
            Proj::Q => "self_attn.q_proj",
            Proj::K => "self_attn.k_proj",
            Proj::V => "self_attn.v_proj",
            Proj::O => "self_attn.o_proj",
            Proj::Gate => "mlp.gate_proj",
            Proj::Up => "mlp.up_proj",
            Proj::Down => "mlp.down_proj",
        }
    }
}

/// A linear of a vision-tower encoder layer (LLaVA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VisionProj {
    Q,
    K,
    V,
    O,
    Fc1,
    Fc2,
}

impl VisionProj {
    pub const ALL: [VisionProj; 6] =
        [VisionProj::Q, VisionProj::K, VisionProj::V, VisionProj::O, VisionProj::Fc1, VisionProj::Fc2];

    /// The HF name after `encoder.layers.N.`.
    pub fn hf_name(self) -> &'static str {
        match self {
            VisionProj::Q => "self_attn.q_proj",
            VisionProj::K => "self_attn.k_proj",
            VisionProj::V => "self_attn.v_proj",
            VisionProj::O => "self_attn.out_proj",
            VisionProj::Fc1 => "mlp.fc1",
            VisionProj::Fc2 => "mlp.fc2",
        }
    }
}

impl Layer {
    pub fn proj(&self, p: Proj) -> &Linear {
        match p {
            Proj::Q => &self.q,
            Proj::K => &self.k,
            Proj::V => &self.v,
            Proj::O => &self.o,
            Proj::Gate => &self.gate,
            Proj::Up => &self.up,
            Proj::Down => &self.down,
        }
    }

    fn proj_mut(&mut self, p: Proj) -> &mut Linear {
        match p {
            Proj::Q => &mut self.q,
            Proj::K => &mut self.k,
            Proj::V => &mut self.v,
            Proj::O => &mut self.o,
            Proj::Gate => &mut self.gate,
            Proj::Up => &mut self.up,
            Proj::Down => &mut self.down,
        }
    }
}

/// Where a matrix sits in a [`Llama`] (or, for the last three, in a LLaVA model's vision
/// tower and projector, [`crate::model::llava::Llava::matrix`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// `[vocab, hidden]`
    Embed,
    /// `[vocab, hidden]` (untied models)
    Head,
    Layer(usize, Proj),
    /// A vision-tower encoder layer's linear.
    Vision(usize, VisionProj),
    /// The vision tower's patch embedding: the conv kernel as `[hidden, channels*p*p]` (f32).
    Patch,
    /// The projector's first (0) or second (1) linear.
    Projector(usize),
}

impl Llama {
    /// The matrix at `slot` (`None`: a tied head).
    pub fn matrix(&self, slot: Slot) -> Option<&QTensor> {
        match slot {
            Slot::Embed => Some(&self.embed.w),
            Slot::Head => self.lm_head.as_ref().map(|h| &h.w),
            Slot::Layer(i, p) => self.layers.get(i).map(|l| &l.proj(p).w),
            Slot::Vision(..) | Slot::Patch | Slot::Projector(_) => None,
        }
    }

    pub(crate) fn matrix_mut(&mut self, slot: Slot) -> Option<&mut QTensor> {
        match slot {
            Slot::Embed => Some(&mut self.embed.w),
            Slot::Head => self.lm_head.as_mut().map(|h| &mut h.w),
            Slot::Layer(i, p) => self.layers.get_mut(i).map(|l| &mut l.proj_mut(p).w),
            Slot::Vision(..) | Slot::Patch | Slot::Projector(_) => None,
        }
    }

    /// Whether every matrix is in memory (no placeholders): the CPU forward can run.
    pub fn has_cpu_weights(&self) -> bool {
        let layers = self.layers.iter().all(|l| Proj::ALL.iter().all(|&p| !l.proj(p).w.is_placeholder()));
        layers && !self.embed.w.is_placeholder() && self.lm_head.as_ref().is_none_or(|h| !h.w.is_placeholder())
    }

    /// Fill the placeholders named in `slots` from `src` (same formats and shapes).
    pub fn fill_placeholders(&mut self, src: &dyn WeightSource, slots: &BTreeMap<String, Slot>) -> Result<()> {
        for (name, &slot) in slots {
            if let Some(m) = self.matrix_mut(slot) {
                fill_matrix(m, src, name)?;
            }
        }
        Ok(())
    }
}

/// Replace the placeholder `m` by tensor `name` of `src`, which must have its format and
/// shape (a dense tensor of any rank with `rows * cols` values counts as `[rows, cols]`);
/// a matrix in memory already is left alone.
pub(crate) fn fill_matrix(m: &mut QTensor, src: &dyn WeightSource, name: &str) -> Result<()> {
    if !m.is_placeholder() {
        return Ok(());
    }
    let t = src.load(name)?;
    let q = match t.data {
        TensorData::Quant(q) => q,
        TensorData::F32(v) if v.len() == m.rows * m.cols => {
            QTensor { rows: m.rows, cols: m.cols, data: crate::quant::QData::F32(v) }
        }
        TensorData::F32(v) => {
            return Err(Error::Shape(format!(
                "`{name}` has {} values, the model holds [{}, {}]",
                v.len(),
                m.rows,
                m.cols
            )))
        }
    };
    if q.format() != m.format() || (q.rows, q.cols) != (m.rows, m.cols) || q.is_placeholder() {
        return Err(Error::Shape(format!(
            "`{name}` is {} [{}, {}], the model holds {} [{}, {}]",
            q.format().name(),
            q.rows,
            q.cols,
            m.format().name(),
            m.rows,
            m.cols
        )));
    }
    *m = q;
    Ok(())
}

/// Every matrix of the checkpoint that can go to the GPU without being needed on the CPU:
/// [`decoder_slots`] and, for LLaVA, the vision tower's and projector's
/// ([`super::llava_slots::vision_slots`]).
pub fn gpu_slots(
    config: &serde_json::Value,
    src: &dyn WeightSource,
    format_of: &dyn Fn(&str) -> Option<WeightFormat>,
) -> Result<BTreeMap<String, Slot>> {
    let mut out = decoder_slots(config, src, format_of)?;
    if is_llava(config) {
        let (cfg, names) = (LlavaConfig::from_value(config)?, LlavaNames::detect(src)?);
        out.extend(super::llava_slots::vision_slots(&cfg, &names, src, format_of));
    }
    Ok(out)
}

/// The checkpoint names of the decoder's matrices that can go to the GPU without ever being
/// needed on the CPU, with their slots; `src` needs only names and shapes, `format_of` gives a
/// tensor's stored format. LLaVA's embedding goes too (image prompts are merged on the GPU,
/// `shaders/llava_merge.wgsl`); BitNet models keep any block linear not stored ternary (it is
/// converted on load).
pub fn decoder_slots(
    config: &serde_json::Value,
    src: &dyn WeightSource,
    format_of: &dyn Fn(&str) -> Option<WeightFormat>,
) -> Result<BTreeMap<String, Slot>> {
    let (cfg, rules) = if is_llava(config) {
        (LlavaConfig::from_value(config)?.text, LlavaNames::detect(src)?.text)
    } else {
        (LlamaConfig::from_value(config)?, Vec::new())
    };
    let mut out = BTreeMap::new();
    if cfg.arch.names != Names::Hf {
        return Ok(out);
    }
    let map = |hf: String| -> String {
        rules.iter().find_map(|(from, to)| hf.strip_prefix(from.as_str()).map(|r| format!("{to}{r}"))).unwrap_or(hf)
    };
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (qd, kvd) = (cfg.n_heads() * cfg.head_dim(), cfg.n_kv_heads() * cfg.head_dim());
    let mut want = vec![
        (Slot::Head, "lm_head.weight".to_string(), [v, d]),
        (Slot::Embed, "model.embed_tokens.weight".into(), [v, d]),
    ];
    for i in 0..cfg.num_hidden_layers {
        for p in Proj::ALL {
            let shape = match p {
                Proj::Q => [qd, d],
                Proj::K | Proj::V => [kvd, d],
                Proj::O => [d, qd],
                Proj::Gate | Proj::Up => [f, d],
                Proj::Down => [d, f],
            };
            want.push((Slot::Layer(i, p), format!("model.layers.{i}.{}.weight", p.hf_name()), shape));
        }
    }
    for (slot, hf, shape) in want {
        let name = map(hf);
        let converted =
            cfg.arch.ternary && matches!(slot, Slot::Layer(..)) && format_of(&name) != Some(WeightFormat::Ternary);
        if src.shape(&name).is_ok_and(|s| s == shape) && !converted {
            out.insert(name, slot);
        }
    }
    Ok(out)
}
