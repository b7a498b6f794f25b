//! Weights streamed to the GPU as their shards arrive (`docs/ARCHITECTURE.md`, "Loading"):
//! [`GpuUpload::plan`] decides from `manifest.json` alone which tensors go straight to GPU
//! buffers (the decoder's matrices, [`decoder_slots`]) and checks that the model fits the
//! adapter, before anything is allocated; as a [`TensorSink`] of the manifest loader it then
//! uploads each of those tensors from the bytes of the shard being added (the same segments,
//! split by rows where a segment exceeds one storage binding, as [`GpuMatrix`] does), and the
//! loader keeps only a shape-only placeholder. Norms, biases, LLaVA's embedding, the vision
//! tower and the projector stay in memory (the CPU runs them or needs them).

use super::decoder_weights::{footprint, Streamed};
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
    /// Plan the upload of `manifest`'s decoder to `ctx` and check that it fits: every matrix
    /// row within one storage binding, the KV cache's positions, and `budget` (bytes) when
    /// given. Nothing is allocated; the error says what does not fit.
    pub fn plan(ctx: Arc<GpuContext>, manifest: &Manifest, budget: Option<u64>) -> Result<GpuUpload> {
        let src = ManifestShapes(manifest);
        let formats: BTreeMap<&str, _> = manifest.tensors.iter().map(|t| (t.name.as_str(), t.format)).collect();
        let slots = decoder_slots(&manifest.config, &src, &|n| formats.get(n).copied())?;
        let (cfg, prefixes): (LlamaConfig, Vec<String>) = if is_llava(&manifest.config) {
            let text = LlavaNames::detect(&src)?.text.into_iter().map(|(_, to)| to).collect();
            (LlavaConfig::from_value(&manifest.config)?.text, text)
        } else {
            (LlamaConfig::from_value(&manifest.config)?, vec![String::new()])
        };
        let max = ctx.max_binding().min(MAX_PART_BYTES);
        let mut bytes = 0u64;
        for t in manifest.tensors.iter().filter(|t| prefixes.iter().any(|p| t.name.starts_with(p.as_str()))) {
            bytes += t.segments.values().map(|s| s.length).sum::<u64>();
            if let [r, c] = t.shape[..] {
                GpuMatrix::check_rows(t.format, r, c, max, &t.name)?;
            }
        }
        footprint(&ctx, &cfg, bytes, budget)?;
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
