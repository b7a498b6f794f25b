//! Weights streamed to the GPU as their shards arrive (`docs/ARCHITECTURE.md`, "Loading"):
//! [`GpuUpload::plan`] decides from `manifest.json` alone which tensors go straight to GPU
//! buffers ([`gpu_slots`]: the decoder's matrices with the embedding, and a LLaVA model's
//! vision-tower linears, patch embedding and projector) and checks that the model fits the
//! adapter, before anything is allocated; as a [`TensorSink`] of the manifest loader it then
//! uploads each of those tensors from the bytes of the shard being added (the same segments,
//! split by rows where a segment exceeds one storage binding, as [`GpuMatrix`] does), and the
//! loader keeps only a shape-only placeholder. Norms, biases and the vision tower's class and
//! position embeddings stay in memory (small; uploaded from there); the tower's tensors LLaVA
//! never reads (layers after the selected one, `post_layernorm`) are taken and dropped.

use super::decoder_weights::{footprint, GpuNeed, Streamed};
use super::vision::llava_activation_bytes;
use super::weights::MAX_PART_BYTES;
use super::{GpuContext, GpuMatrix};
use crate::error::{Error, Result};
use crate::io::manifest::{Manifest, ManifestShapes, TensorEntry, TensorSink};
use crate::model::llava::{is_llava, LlavaConfig, LlavaNames};
use crate::model::slots::{gpu_slots, Slot};
use crate::model::LlamaConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The GPU side of a streamed load: the plan, then the matrices uploaded so far.
pub struct GpuUpload {
    pub ctx: Arc<GpuContext>,
    pub budget: Option<u64>,
    /// Checkpoint name → place of every tensor that goes to the GPU only.
    pub slots: BTreeMap<String, Slot>,
    pub streamed: Streamed,
    /// Tensors the model never reads (a LLaVA tower's layers after the last selected feature
    /// layer, its `post_layernorm`): taken and dropped, so they never sit in memory either.
    pub unused: BTreeSet<String>,
}

impl GpuUpload {
    /// Plan the upload of `manifest`'s matrices to `ctx` and check that the model fits: every
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
        let slots = gpu_slots(&manifest.config, &src, &|n| formats.get(n).copied())?;
        let mut unused = BTreeSet::new();
        let (cfg, prefixes, vision_acts): (LlamaConfig, Vec<String>, u64) = if is_llava(&manifest.config) {
            let names = LlavaNames::detect(&src)?;
            let cfg = LlavaConfig::from_value(&manifest.config)?;
            unused = unused_vision(manifest, &cfg, &names);
            let acts = llava_activation_bytes(&cfg);
            (cfg.text, names.text.into_iter().map(|(_, to)| to).collect(), acts)
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
        Ok(GpuUpload { ctx, budget, slots, streamed: Streamed::new(), unused })
    }

    /// Bytes uploaded so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.streamed.values().map(|m| m.nbytes()).sum()
    }
}

impl TensorSink for GpuUpload {
    fn wants(&self, t: &TensorEntry) -> bool {
        self.slots.contains_key(&t.name) || self.unused.contains(&t.name)
    }

    fn take(&mut self, t: &TensorEntry, segments: &[(&str, &[u8])]) -> Result<()> {
        if self.unused.contains(&t.name) {
            return Ok(());
        }
        // A conv kernel `[hidden, C, p, p]` (the patch embedding) is the matrix `[hidden, C*p*p]`.
        let (Some(&slot), Some((&r, rest))) = (self.slots.get(&t.name), t.shape.split_first()) else {
            return Err(Error::Shape(format!("`{}` {:?}: not a planned GPU matrix", t.name, t.shape)));
        };
        let c = rest.iter().product::<usize>();
        if rest.is_empty() {
            return Err(Error::Shape(format!("`{}` {:?}: not a matrix", t.name, t.shape)));
        }
        let max = self.ctx.max_binding().min(MAX_PART_BYTES);
        let m = GpuMatrix::upload_segments(&self.ctx, t.format, [r, c], segments, &t.name, max)?;
        self.ctx.take_error()?;
        self.streamed.insert(slot, m);
        Ok(())
    }
}

/// The tower's tensors LLaVA never reads: layers from the last selected feature layer on
/// (`hidden_states[i]` is the output of layer `i - 1`) and `post_layernorm`.
fn unused_vision(manifest: &Manifest, cfg: &LlavaConfig, names: &LlavaNames) -> BTreeSet<String> {
    let needed = cfg.feature_layers.iter().copied().max().unwrap_or(0);
    let (layers, post) = (format!("{}encoder.layers.", names.vision), format!("{}post_layernorm.", names.vision));
    let beyond = |n: &str| {
        let i = n.strip_prefix(layers.as_str()).and_then(|r| r.split('.').next()?.parse::<usize>().ok());
        i.is_some_and(|i| i >= needed)
    };
    manifest
        .tensors
        .iter()
        .map(|t| &t.name)
        .filter(|n| n.starts_with(post.as_str()) || beyond(n.as_str()))
        .cloned()
        .collect()
}
