//! A LLaVA model's vision-tower and projector matrices by place ([`Slot::Vision`],
//! [`Slot::Patch`], [`Slot::Projector`]) and by checkpoint name, as [`super::slots`] does for
//! the decoder: with a GPU they go from each shard straight to GPU buffers
//! ([`crate::gpu::stream`]), the CPU model keeps shape-only placeholders, and after a GPU
//! failure they are filled in again from the shards ([`Llava::fill_placeholders`]).
//!
//! Names follow [`crate::vision::clip::VisionTower::load`] and [`Llava::load`] under
//! [`LlavaNames`]' prefixes. What stays in memory, all small: the LayerNorms and biases, the
//! class embedding, the position embeddings (`[num_positions, hidden]` f32, 2.4 MB for
//! CLIP-L/14 at 336 px; the GPU gets a copy at load) and NeXT's `image_newline`.

use super::linear::Linear;
use super::llava::{Llava, LlavaConfig, LlavaNames};
use super::slots::{fill_matrix, Slot, VisionProj};
use crate::error::{Error, Result};
use crate::io::WeightSource;
use crate::quant::{QTensor, WeightFormat};
use crate::vision::clip::EncoderLayer;
use std::collections::BTreeMap;

impl EncoderLayer {
    pub fn proj(&self, p: VisionProj) -> &Linear {
        match p {
            VisionProj::Q => &self.q,
            VisionProj::K => &self.k,
            VisionProj::V => &self.v,
            VisionProj::O => &self.o,
            VisionProj::Fc1 => &self.fc1,
            VisionProj::Fc2 => &self.fc2,
        }
    }

    fn proj_mut(&mut self, p: VisionProj) -> &mut Linear {
        match p {
            VisionProj::Q => &mut self.q,
            VisionProj::K => &mut self.k,
            VisionProj::V => &mut self.v,
            VisionProj::O => &mut self.o,
            VisionProj::Fc1 => &mut self.fc1,
            VisionProj::Fc2 => &mut self.fc2,
        }
    }
}

impl Llava {
    /// The matrix at `slot`: the tower's, the projector's, or the decoder's
    /// ([`crate::model::Llama::matrix`]). `None`: no such matrix (a layer not loaded, a
    /// one-linear projector, a tied head).
    pub fn matrix(&self, slot: Slot) -> Option<&QTensor> {
        match slot {
            Slot::Vision(i, p) => self.tower.layers.get(i).map(|l| &l.proj(p).w),
            Slot::Patch => Some(&self.tower.patch.w),
            Slot::Projector(0) => Some(&self.projector.first.w),
            Slot::Projector(_) => self.projector.second.as_ref().map(|(_, l)| &l.w),
            s => self.lm.matrix(s),
        }
    }

    fn matrix_mut(&mut self, slot: Slot) -> Option<&mut QTensor> {
        match slot {
            Slot::Vision(i, p) => self.tower.layers.get_mut(i).map(|l| &mut l.proj_mut(p).w),
            Slot::Patch => Some(&mut self.tower.patch.w),
            Slot::Projector(0) => Some(&mut self.projector.first.w),
            Slot::Projector(_) => self.projector.second.as_mut().map(|(_, l)| &mut l.w),
            s => self.lm.matrix_mut(s),
        }
    }

    /// Fill the placeholders named in `slots` (decoder, tower, projector) from `src`, by the
    /// checkpoint's names; a smoothed INT8 tower then picks its CPU kernel again
    /// ([`crate::vision::w8a8::choose`]).
    pub fn fill_placeholders(&mut self, src: &dyn WeightSource, slots: &BTreeMap<String, Slot>) -> Result<()> {
        for (name, &slot) in slots {
            if let Some(m) = self.matrix_mut(slot) {
                fill_matrix(m, src, name)?;
            }
        }
        if self.cfg.smoothed && slots.values().any(|s| matches!(s, Slot::Vision(..))) {
            crate::vision::w8a8::choose(&mut self.tower);
        }
        Ok(())
    }

    /// Whether the tower and projector hold every matrix, so the CPU can encode images.
    pub fn has_cpu_vision(&self) -> bool {
        let layers = self.tower.layers.iter().all(|l| VisionProj::ALL.iter().all(|&p| !l.proj(p).w.is_placeholder()));
        let second = self.projector.second.as_ref().is_none_or(|(_, l)| !l.w.is_placeholder());
        layers && second && !self.tower.patch.w.is_placeholder() && !self.projector.first.w.is_placeholder()
    }

    /// [`Llava::has_cpu_vision`] as an error for the CPU tower.
    pub(crate) fn check_cpu_vision(&self) -> Result<()> {
        if self.has_cpu_vision() {
            return Ok(());
        }
        Err(Error::Invalid(
            "the vision tower's weights are on the GPU only; the CPU path needs them loaded again".into(),
        ))
    }
}

/// The checkpoint names of the tower's and projector's matrices that can go to the GPU only,
/// with their slots: the linears of the layers LLaVA reads (up to the last selected feature
/// layer), the patch embedding when stored f32 (as the CPU tower keeps it), and the
/// projector's linears. `src` needs only names and shapes. Not for a tower converted on load
/// ([`crate::model::llava::VisionLoadOptions::tower`]).
pub fn vision_slots(
    cfg: &LlavaConfig,
    names: &LlavaNames,
    src: &dyn WeightSource,
    format_of: &dyn Fn(&str) -> Option<WeightFormat>,
) -> BTreeMap<String, Slot> {
    let v = &cfg.vision;
    let (d, f, t) = (v.hidden, v.intermediate, cfg.text.hidden_size);
    let needed = cfg.feature_layers.iter().copied().max().unwrap_or(0);
    let mut want = Vec::new();
    for i in 0..needed {
        for p in VisionProj::ALL {
            let shape = match p {
                VisionProj::Fc1 => vec![f, d],
                VisionProj::Fc2 => vec![d, f],
                _ => vec![d, d],
            };
            want.push((
                Slot::Vision(i, p),
                format!("{}encoder.layers.{i}.{}.weight", names.vision, p.hf_name()),
                shape,
            ));
        }
    }
    let ([l1, l2], p) = (&names.projector_layers, &names.projector);
    want.push((Slot::Projector(0), format!("{p}{l1}.weight"), vec![t, d * cfg.feature_layers.len()]));
    want.push((Slot::Projector(1), format!("{p}{l2}.weight"), vec![t, t]));
    let mut out: BTreeMap<String, Slot> = want
        .into_iter()
        .filter(|(_, name, shape)| src.shape(name).is_ok_and(|s| &s == shape))
        .map(|(slot, name, _)| (name, slot))
        .collect();
    let patch = format!("{}embeddings.patch_embedding.weight", names.vision);
    let (c, k) = (v.channels, v.patch_size);
    let conv = src.shape(&patch).is_ok_and(|s| s == [d, c, k, k] || s == [d, c * k * k]);
    if conv && format_of(&patch) == Some(WeightFormat::F32) {
        out.insert(patch, Slot::Patch);
    }
    out
}
