//! From an [`Image`] to the features a LLaVA model puts in the prompt, the way the model's
//! processor prepares it (`LlavaProcessor`: `CLIPImageProcessor`; `LlavaNextProcessor`: anyres
//! tiles), and a small cache of projected features keyed by a hash of the image, so a
//! conversation that shows the same image again does not re-encode it.

use super::anyres::preprocess_anyres;
use super::image::Image;
use super::preprocess::{preprocess_clip, ClipProcessorConfig, PixelValues};
use crate::error::{Error, Result};
use crate::model::llava::{Llava, LlavaKind};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A 64-bit hash of an image's size and pixels (in-process cache key).
pub fn image_hash(img: &Image) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (img.width, img.height).hash(&mut h);
    img.rgb.hash(&mut h);
    h.finish()
}

/// Cache key of preprocessed pixels (kept apart from [`image_hash`] keys by a tag).
pub fn prepared_hash(p: &PreparedImage) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("prepared", p.orig, p.tiles.len()).hash(&mut h);
    for t in &p.tiles {
        (t.channels, t.height, t.width).hash(&mut h);
        t.data.iter().for_each(|v| v.to_bits().hash(&mut h));
    }
    h.finish()
}

/// One image preprocessed for a model: its tiles (LLaVA-1.5: one; NeXT: base image first) and
/// its original `(height, width)`.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    pub tiles: Vec<PixelValues>,
    pub orig: (usize, usize),
}

/// The processor settings of a checkpoint for `model`: its `preprocessor` config (NeXT
/// pinpoints default to the model config's).
pub fn processor_config(pre: Option<&serde_json::Value>, model: &Llava) -> Result<ClipProcessorConfig> {
    let pre = pre.ok_or_else(|| {
        Error::Invalid("the checkpoint has no image processor config (preprocessor_config.json)".into())
    })?;
    let mut cfg = ClipProcessorConfig::from_json(pre)?;
    if let (LlavaKind::Next { pinpoints, .. }, None) = (&model.kind, &cfg.image_grid_pinpoints) {
        cfg.image_grid_pinpoints = Some(pinpoints.iter().map(|&(h, w)| (h as u32, w as u32)).collect());
    }
    Ok(cfg)
}

/// Preprocess `img` as the model's processor does.
pub fn prepare(img: &Image, cfg: &ClipProcessorConfig, model: &Llava) -> Result<PreparedImage> {
    let orig = (img.height as usize, img.width as usize);
    let tiles = match model.kind {
        LlavaKind::V15 => vec![preprocess_clip(img, cfg)?],
        LlavaKind::Next { .. } => preprocess_anyres(img, cfg)?.tiles,
    };
    Ok(PreparedImage { tiles, orig })
}

/// Projected features `[tokens, text_hidden]` of a prepared image.
pub fn encode(p: &PreparedImage, model: &Llava) -> Result<Vec<f32>> {
    let first = p.tiles.first().ok_or_else(|| Error::Invalid("an image with no tiles".into()))?;
    let hw = (first.height, first.width);
    if p.tiles.iter().any(|t| (t.height, t.width) != hw || t.channels != model.cfg.vision.channels) {
        return Err(Error::Shape("tiles of one image differ in size or channels".into()));
    }
    let tiles: Vec<&[f32]> = p.tiles.iter().map(|t| t.data.as_slice()).collect();
    model.image_features(&tiles, hw, p.orig)
}

/// Recently encoded images' features, at most `capacity` of them (oldest dropped first).
pub struct FeatureCache {
    map: HashMap<u64, Arc<Vec<f32>>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl FeatureCache {
    pub fn new(capacity: usize) -> FeatureCache {
        FeatureCache { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }
    pub fn get(&self, key: u64) -> Option<Arc<Vec<f32>>> {
        self.map.get(&key).cloned()
    }
    pub fn insert(&mut self, key: u64, feats: Arc<Vec<f32>>) {
        if self.map.insert(key, feats).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_the_newest() {
        let mut c = FeatureCache::new(2);
        for k in 0..3u64 {
            c.insert(k, Arc::new(vec![k as f32]));
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(0).is_none() && c.get(2).is_some());
        let a = Image { width: 1, height: 2, rgb: vec![1, 2, 3, 4, 5, 6] };
        let b = Image { width: 2, height: 1, rgb: a.rgb.clone() };
        assert_ne!(image_hash(&a), image_hash(&b));
        assert_eq!(image_hash(&a), image_hash(&a.clone()));
    }
}
