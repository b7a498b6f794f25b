//! Images on the GPU: while the engine runs there (natively), an image's tiles go through
//! [`GpuVision`] (the vision tower and projector recorded as GPU plans) instead of the CPU
//! tower. A GPU error while encoding moves the engine to the CPU for good, as a failed step
//! does ([`Engine::fallback_reason`] says why), and the image is encoded on the CPU.
//! In wasm the engine encodes on the CPU: the GPU path needs an awaited readback.

use super::{Engine, Model};
use crate::error::{Error, Result};
use crate::gpu::vision::GpuVision;
use crate::model::llava::Llava;
use crate::vision::features::{self, PreparedImage};

impl Engine {
    /// The GPU vision tower, when images are encoded there.
    pub fn gpu_vision(&self) -> Option<&GpuVision> {
        self.gpu_vision.as_deref()
    }

    /// Projected features `[tokens, text_hidden]` of a prepared image: on the GPU when the
    /// engine runs there, else (or after a GPU error, leaving the GPU) on the CPU.
    pub(super) fn encode_prepared(&mut self, p: &PreparedImage) -> Result<Vec<f32>> {
        let Model::Llava(m) = &self.model else {
            return Err(Error::Unsupported("images: this model is text-only".into()));
        };
        if let Some(v) = self.gpu_vision.as_deref() {
            match gpu_encode(v, p, m) {
                Ok(f) => return Ok(f),
                Err(e @ Error::Gpu(_)) => {
                    self.leave_gpu(&e);
                    // The GPU held the cached positions: the CPU starts from an empty cache.
                    self.reset();
                }
                Err(e) => return Err(e),
            }
        }
        let Model::Llava(m) = &self.model else { unreachable!("checked above") };
        features::encode(p, m)
    }
}

/// [`features::encode`] through `v`.
#[cfg(not(target_arch = "wasm32"))]
fn gpu_encode(v: &GpuVision, p: &PreparedImage, m: &Llava) -> Result<Vec<f32>> {
    let first = p.tiles.first().ok_or_else(|| Error::Invalid("an image with no tiles".into()))?;
    let hw = (first.height, first.width);
    if p.tiles.iter().any(|t| (t.height, t.width) != hw || t.channels != m.cfg.vision.channels) {
        return Err(Error::Shape("tiles of one image differ in size or channels".into()));
    }
    let tiles: Vec<&[f32]> = p.tiles.iter().map(|t| t.data.as_slice()).collect();
    v.image_features(m, &tiles, hw, p.orig)
}

#[cfg(target_arch = "wasm32")]
fn gpu_encode(_: &GpuVision, p: &PreparedImage, m: &Llava) -> Result<Vec<f32>> {
    features::encode(p, m)
}
