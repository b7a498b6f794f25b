//! One calibration / evaluation input of the language model: token ids, and for a LLaVA
//! input the projected image features that replace its image tokens (as
//! [`crate::model::llava::Llava::embed_with_images`] places them). Each model embeds the text
//! tokens with its own embedding table, so a quantized embedding is part of what is measured,
//! while the image features come from the f32 reference (vision tower + projector).

use crate::error::{Error, Result};
use crate::model::Llama;

/// Token ids (image tokens already expanded to one per feature row) and image features.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ids: Vec<u32>,
    /// `[image tokens, hidden]`: the features of every image, in order (empty for text).
    pub feats: Vec<f32>,
    /// The id of the image token (meaningful only when `feats` is not empty).
    pub image_token: u32,
}

impl Sample {
    /// A text-only sample.
    pub fn text(ids: Vec<u32>) -> Sample {
        Sample { ids, feats: Vec::new(), image_token: u32::MAX }
    }

    /// Whether position `t`'s token is an image feature (no text to predict there).
    pub fn is_image(&self, t: usize) -> bool {
        !self.feats.is_empty() && self.ids.get(t) == Some(&self.image_token)
    }

    /// Input embeddings `[n, hidden]` for `lm`: text rows from `lm`'s embedding, image rows
    /// the features.
    pub fn embed(&self, lm: &Llama) -> Result<Vec<f32>> {
        if self.feats.is_empty() {
            return lm.embed_tokens(&self.ids);
        }
        let d = lm.cfg.hidden_size;
        let n_img = self.ids.iter().filter(|&&t| t == self.image_token).count();
        if self.feats.len() != n_img * d {
            return Err(Error::Invalid(format!(
                "image features and image tokens do not match: tokens {n_img}, features {}",
                self.feats.len() / d.max(1)
            )));
        }
        let safe: Vec<u32> = self.ids.iter().map(|&t| if t == self.image_token { 0 } else { t }).collect();
        let mut x = lm.embed_tokens(&safe)?; // [n, hidden]
        let mut rows = self.feats.chunks_exact(d);
        for (&t, row) in self.ids.iter().zip(x.chunks_exact_mut(d)) {
            if t == self.image_token {
                row.copy_from_slice(rows.next().expect("counted above"));
            }
        }
        Ok(x)
    }
}
