//! Images on the GPU: while the engine runs there, an image's tiles go through [`GpuVision`]
//! (the vision tower and projector recorded as GPU plans) instead of the CPU tower. A GPU
//! error while encoding moves the engine to the CPU for good, as a failed step does
//! ([`Engine::fallback_reason`] says why), and the image is encoded on the CPU.
//!
//! Two ways in: natively [`Engine::start_with_images`] encodes synchronously (the readback
//! blocks); in wasm a readback must be awaited, so the browser first calls
//! [`Engine::submit_images`] (tiles of every uncached image submitted), awaits
//! [`ImagesPending::read`] with the engine not borrowed, and hands the result to
//! [`Engine::complete_images`], which puts the features in the feature cache;
//! `start_with_images` then finds them there. `Timings::image_encoder` says where a run's
//! images were encoded.
//!
//! When the tower and projector were streamed to the GPU only, the CPU encoder needs them back
//! first: natively [`Engine::encode_prepared`] reads them through the engine's
//! [`super::WeightReload`]; the browser fills them from its shard source before the run
//! starts (`wasm/images.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{now_ms, Backend, Engine, ImageInput, Model};
use crate::error::{Error, Result};
use crate::gpu::vision::{FeaturesPending, GpuVision};
use crate::gpu::GpuContext;
use crate::model::llava::Llava;
use crate::vision::features::{self, image_hash, PreparedImage};
use crate::vision::image::Image;

/// Projected features per image, keyed by image hash.
type Feats = Vec<(u64, Arc<Vec<f32>>)>;
/// Per image read back: its hash, original `(height, width)` and each tile's features.
type TileFeats = Vec<(u64, (usize, usize), Vec<Vec<f32>>)>;

/// One uncached image's tiles on their way back from the GPU tower.
struct TilesPending {
    key: u64,
    orig: (usize, usize),
    tiles: Vec<FeaturesPending>,
}

/// Images submitted by [`Engine::submit_images`]; await [`ImagesPending::read`].
pub struct ImagesPending {
    ctx: Arc<GpuContext>,
    images: Vec<TilesPending>,
    t0: f64,
}

/// What [`ImagesPending::read`] got back, for [`Engine::complete_images`]: per image its
/// hash, original size and each tile's features `[tokens, text_hidden]`, or the GPU's error.
pub struct ImagesRead {
    images: Result<TileFeats>,
    t0: f64,
}

impl ImagesPending {
    /// Wait for every submitted tile (in wasm: `mapAsync` awaited) and read its features.
    pub async fn read(self) -> ImagesRead {
        let mut out = Vec::with_capacity(self.images.len());
        for img in self.images {
            let mut tiles = Vec::with_capacity(img.tiles.len());
            for t in img.tiles {
                match t.read(&self.ctx).await {
                    Ok(f) => tiles.push(f),
                    Err(e) => return ImagesRead { images: Err(e), t0: self.t0 },
                }
            }
            out.push((img.key, img.orig, tiles));
        }
        ImagesRead { images: Ok(out), t0: self.t0 }
    }

    /// Images submitted.
    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

impl Engine {
    /// The GPU vision tower, when images are encoded there.
    pub fn gpu_vision(&self) -> Option<&GpuVision> {
        self.gpu_vision.as_deref()
    }

    /// Preprocess every image of `images` whose features are not cached and submit its tiles
    /// to the GPU vision tower. `Ok(None)`: nothing went to the GPU (no GPU tower, every
    /// image cached, or the GPU failed on submit, which moves the engine to the CPU);
    /// [`Engine::start_with_images`] then encodes what it must on the CPU.
    pub fn submit_images(&mut self, images: &[Image]) -> Result<Option<ImagesPending>> {
        let (Some(v), Model::Llava(m)) = (self.gpu_vision.as_deref(), &self.model) else { return Ok(None) };
        let t0 = now_ms();
        let cfg = self.processor.as_ref().ok_or_else(|| {
            Error::Invalid("the checkpoint has no image processor config (preprocessor_config.json)".into())
        })?;
        let mut seen = BTreeSet::new();
        let mut subs = Vec::new();
        for img in images {
            let key = image_hash(img);
            if self.feature_cache.get(key).is_some() || !seen.insert(key) {
                continue;
            }
            let p = features::prepare(img, cfg, m)?;
            let submitted = tiles(&p, m).and_then(|ts| ts.into_iter().map(|t| v.submit(t)).collect());
            match submitted {
                Ok(tiles) => subs.push(TilesPending { key, orig: p.orig, tiles }),
                Err(e @ Error::Gpu(_)) => {
                    self.leave_gpu(&e);
                    self.reset();
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((!subs.is_empty()).then(|| ImagesPending { ctx: v.context().clone(), images: subs, t0 }))
    }

    /// Take the features of [`Engine::submit_images`]' images into the feature cache. A GPU
    /// error moves the engine to the CPU (the conversation starts afresh there) and is no
    /// error here: [`Engine::start_with_images`] encodes those images on the CPU.
    pub fn complete_images(&mut self, read: ImagesRead) -> Result<()> {
        let Model::Llava(m) = &self.model else {
            return Err(Error::Unsupported("images: this model is text-only".into()));
        };
        match read.images {
            Ok(list) => {
                let mut packed = Vec::with_capacity(list.len());
                for (key, orig, tiles) in list {
                    packed.push((key, m.pack_tiles(tiles, orig)?));
                }
                for (key, f) in packed {
                    self.feature_cache.insert(key, Arc::new(f));
                }
                let before = self.encoded.map_or(0.0, |(_, ms)| ms);
                self.encoded = Some((Backend::Gpu, before + now_ms() - read.t0));
                Ok(())
            }
            Err(e @ Error::Gpu(_)) => {
                self.leave_gpu(&e);
                self.reset();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Each image's hash and features (cached, pre-encoded by [`Engine::complete_images`],
    /// or encoded now), the milliseconds encoding took (both steps) and where it ran.
    pub(super) fn encode_images(&mut self, images: &[ImageInput]) -> Result<(Feats, f64, Option<Backend>)> {
        let t0 = now_ms();
        let feats = self.image_features(images);
        let (on, pre_ms) = self.encoded.take().map_or((None, 0.0), |(b, ms)| (Some(b), ms));
        let ms = if images.is_empty() { 0.0 } else { now_ms() - t0 + pre_ms };
        Ok((feats?, ms, on))
    }

    /// Projected features `[tokens, text_hidden]` of a prepared image: on the GPU when the
    /// engine runs there, else (or after a GPU error, leaving the GPU) on the CPU.
    pub(super) fn encode_prepared(&mut self, p: &PreparedImage) -> Result<Vec<f32>> {
        let Model::Llava(m) = &self.model else {
            return Err(Error::Unsupported("images: this model is text-only".into()));
        };
        let ms = self.encoded.map_or(0.0, |(_, ms)| ms);
        if let Some(v) = self.gpu_vision.as_deref() {
            match gpu_encode(v, p, m) {
                Ok(Some(f)) => {
                    self.encoded = Some((Backend::Gpu, ms));
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e @ Error::Gpu(_)) => {
                    self.leave_gpu(&e);
                    // The GPU held the cached positions: the CPU starts from an empty cache.
                    self.reset();
                }
                Err(e) => return Err(e),
            }
        }
        if self.needs_weights() {
            let src = self.reload_weights()?;
            self.fill_weights(src.as_ref())?;
        }
        let Model::Llava(m) = &self.model else { unreachable!("checked above") };
        self.encoded = Some((Backend::Cpu, ms));
        features::encode(p, m)
    }
}

/// The tiles of `p` as pixel slices `[C, H, W]`, checked to agree in size and channels.
fn tiles<'a>(p: &'a PreparedImage, m: &Llava) -> Result<Vec<&'a [f32]>> {
    let first = p.tiles.first().ok_or_else(|| Error::Invalid("an image with no tiles".into()))?;
    let hw = (first.height, first.width);
    if p.tiles.iter().any(|t| (t.height, t.width) != hw || t.channels != m.cfg.vision.channels) {
        return Err(Error::Shape("tiles of one image differ in size or channels".into()));
    }
    Ok(p.tiles.iter().map(|t| t.data.as_slice()).collect())
}

/// [`features::encode`] through `v` (native: the readback blocks).
#[cfg(not(target_arch = "wasm32"))]
fn gpu_encode(v: &GpuVision, p: &PreparedImage, m: &Llava) -> Result<Option<Vec<f32>>> {
    let first = p.tiles.first().ok_or_else(|| Error::Invalid("an image with no tiles".into()))?;
    let hw = (first.height, first.width);
    v.image_features(m, &tiles(p, m)?, hw, p.orig).map(Some)
}

/// In wasm a readback cannot block: images not encoded through [`Engine::submit_images`]
/// are encoded on the CPU.
#[cfg(target_arch = "wasm32")]
fn gpu_encode(_: &GpuVision, _: &PreparedImage, _: &Llava) -> Result<Option<Vec<f32>>> {
    Ok(None)
}
