//! Weights streamed to the GPU as their shards arrive (`docs/ARCHITECTURE.md`, "Loading"):
//! [`GpuUpload::plan`] decides from `manifest.json` alone which tensors go straight to GPU
//! buffers (the decoder's matrices, [`decoder_slots`]) and checks that the model fits the
//! adapter, before anything is allocated; as a [`TensorSink`] of the manifest loader it then
//! uploads each of those tensors from the bytes of the shard being added (the same segments,
//! split by rows where a segment exceeds one storage binding, as [`GpuMatrix`] does), and the
//! loader keeps only a shape-only placeholder. Norms, biases, LLaVA's embedding, the vision
//! tower and the projector stay in memory (the CPU runs them or needs them).

use super::decoder_weights::{footprint, GpuNeed, Streamed};
use super::vision::llava_activation_bytes;
use super::weights::MAX_PART_BYTES;
use super::{GpuContext, GpuMatrix};
use crate::error::{Error, Result};
use crate::io::manifest::{Manifest, ManifestShapes, TensorEntry, TensorSink};
use crate::model::llava::{is_llava, LlavaConfig, LlavaNames};
use crate::model::slots::{decoder_slots, Slot};
use crate::model::LlamaConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The GPU side of a streamed load: the plan, then the matrices uploaded so far.
pub struct GpuUpload {
    pub ctx: Arc<GpuContext>,
    pub budget: Option<u64>,
    /// Checkpoint name → place of every tensor that goes to the GPU only.
    pub slots: BTreeMap<String, Slot>,
    pub streamed: Streamed,
}

impl GpuUpload {
    /// Plan the upload of `manifest`'s decoder to `ctx` and check that the model fits: every
    /// matrix row within one storage binding, and with `budget` (bytes) the decoder, a LLaVA
    /// model's vision tower and projector (with one tile's activations) and the KV cache for
    /// `context` positions (default: the config's `max_position_embeddings`). Nothing is
    /// allocated; the error names what does not fit.
    pub fn plan(
        ctx: Arc<GpuContext>,
        manifest: &Manifest,
        budget: Option<u64>,
        context: Option<usize>,
    ) -> Result<GpuUpload> {
        let src = ManifestShapes(manifest);
        let formats: BTreeMap<&str, _> = manifest.tensors.iter().map(|t| (t.name.as_str(), t.format)).collect();
        let slots = decoder_slots(&manifest.config, &src, &|n| formats.get(n).copied())?;
        let (cfg, prefixes, vision_acts): (LlamaConfig, Vec<String>, u64) = if is_llava(&manifest.config) {
            let text = LlavaNames::detect(&src)?.text.into_iter().map(|(_, to)| to).collect();
            let cfg = LlavaConfig::from_value(&manifest.config)?;
            let acts = llava_activation_bytes(&cfg);
            (cfg.text, text, acts)
        } else {
            (LlamaConfig::from_value(&manifest.config)?, vec![String::new()], 0)
        };
        let max = ctx.max_binding().min(MAX_PART_BYTES);
        let (mut decoder, mut vision) = (0u64, vision_acts);
        for t in &manifest.tensors {
            let bytes = t.segments.values().map(|s| s.length).sum::<u64>();
            if prefixes.iter().any(|p| t.name.starts_with(p.as_str())) {
                decoder += bytes;
            } else {
                vision += bytes;
            }
            if let [r, c] = t.shape[..] {
                GpuMatrix::check_rows(t.format, r, c, max, &t.name)?;
            }
        }
        let context = context.unwrap_or(cfg.max_position_embeddings);
        footprint(&ctx, &cfg, GpuNeed { decoder, vision, context }, budget)?;
        Ok(GpuUpload { ctx, budget, slots, streamed: Streamed::new() })
    }

    /// Bytes uploaded so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.streamed.values().map(|m| m.nbytes()).sum()
    }
}

impl TensorSink for GpuUpload {
    fn wants(&self, t: &TensorEntry) -> bool {
        self.slots.contains_key(&t.name)
    }

    fn take(&mut self, t: &TensorEntry, segments: &[(&str, &[u8])]) -> Result<()> {
        let (Some(&slot), &[r, c]) = (self.slots.get(&t.name), &t.shape[..]) else {
            return Err(Error::Shape(format!("`{}` {:?}: not a planned GPU matrix", t.name, t.shape)));
        };
        let max = self.ctx.max_binding().min(MAX_PART_BYTES);
        let m = GpuMatrix::upload_segments(&self.ctx, t.format, [r, c], segments, &t.name, max)?;
        self.ctx.take_error()?;
        self.streamed.insert(slot, m);
        Ok(())
    }
}
