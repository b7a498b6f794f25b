//! LLaVA-NeXT "anyres" preprocessing and the arithmetic the model needs to undo it, following
//! transformers 5: `LlavaNextImageProcessorPil` (`get_image_patches`, `_resize_for_patching`,
//! `_pad_for_patching`), `image_processing_utils.select_best_resolution` /
//! `get_patch_output_size`, `image_transforms.divide_to_patches`, and from
//! `modeling_llava_next` / `processing_llava_next`: `get_anyres_image_grid_shape`,
//! `image_size_to_num_patches`, `unpad_image`, `_get_number_of_features`.
//!
//! Sizes are `(height, width)` throughout, as in transformers.

use crate::error::{Error, Result};
use crate::vision::image::Image;
use crate::vision::preprocess::{resize, resize_and_crop, to_pixel_values, ClipProcessorConfig, PixelValues, Size};

/// The candidate resolution that keeps the most of the image's pixels once it is scaled to fit
/// (capped at the original pixel count), ties broken by the least wasted area; the first
/// candidate wins among equals. `None` when `pinpoints` is empty.
pub fn select_best_resolution(orig: (u32, u32), pinpoints: &[(u32, u32)]) -> Option<(u32, u32)> {
    let (oh, ow) = (orig.0 as f64, orig.1 as f64);
    let mut best = None;
    let (mut max_effective, mut min_wasted) = (0u64, u64::MAX);
    for &(h, w) in pinpoints {
        let scale = (w as f64 / ow).min(h as f64 / oh);
        let (dw, dh) = ((ow * scale) as u64, (oh * scale) as u64);
        let effective = (dw * dh).min(orig.0 as u64 * orig.1 as u64);
        let wasted = (w as u64 * h as u64).saturating_sub(effective);
        if effective > max_effective || (effective == max_effective && wasted < min_wasted) {
            max_effective = effective;
            min_wasted = wasted;
            best = Some((h, w));
        }
    }
    best
}

/// `get_patch_output_size`: the size the image is resized to inside `target`, aspect kept,
/// the constrained side exactly the target's, the other `min(ceil(orig * scale), target)`.
pub fn patch_output_size(orig: (u32, u32), target: (u32, u32)) -> (u32, u32) {
    let (oh, ow) = (orig.0 as f64, orig.1 as f64);
    let (scale_w, scale_h) = (target.1 as f64 / ow, target.0 as f64 / oh);
    if scale_w < scale_h {
        (((oh * scale_w).ceil() as u32).min(target.0), target.1)
    } else {
        (target.0, ((ow * scale_h).ceil() as u32).min(target.1))
    }
}

/// `_get_padding_size`: `(top, bottom, left, right)` zero padding centering `inner` in
/// `target` (the odd pixel goes to the bottom / right).
pub fn padding_for_patching(inner: (u32, u32), target: (u32, u32)) -> (u32, u32, u32, u32) {
    let (dy, dx) = (target.0 - inner.0, target.1 - inner.1);
    (dy / 2, dy - dy / 2, dx / 2, dx - dx / 2)
}

/// `get_anyres_image_grid_shape`: tiles `(rows, cols)` of the best resolution for an image of
/// `image_size`, with tiles of `tile` pixels (the vision tower's `image_size`).
pub fn anyres_grid_shape(image_size: (u32, u32), pinpoints: &[(u32, u32)], tile: u32) -> Result<(u32, u32)> {
    let (h, w) = best(image_size, pinpoints)?;
    Ok((h / tile, w / tile))
}

/// `image_size_to_num_patches`: tiles of the best resolution (`ceil` in each direction)
/// plus the base image.
pub fn num_patches(image_size: (u32, u32), pinpoints: &[(u32, u32)], tile: u32) -> Result<usize> {
    let (h, w) = best(image_size, pinpoints)?;
    Ok((h.div_ceil(tile) * w.div_ceil(tile)) as usize + 1)
}

fn best(image_size: (u32, u32), pinpoints: &[(u32, u32)]) -> Result<(u32, u32)> {
    if image_size.0 == 0 || image_size.1 == 0 {
        return Err(Error::Invalid(format!("image size {image_size:?} has a zero side")));
    }
    select_best_resolution(image_size, pinpoints)
        .ok_or_else(|| Error::Invalid("image_grid_pinpoints is empty".to_string()))
}

/// Python's `int(round(x, 7))` for the non-negative values the unpad arithmetic produces.
fn int_round7(x: f64) -> i64 {
    ((x * 1e7).round_ties_even() / 1e7) as i64
}

/// `unpad_image`: of a feature map `current` = `(rows, cols)` that covers the padded image,
/// the row range and column range that cover the original image of size `original`.
pub fn unpad_ranges(current: (u32, u32), original: (u32, u32)) -> (std::ops::Range<u32>, std::ops::Range<u32>) {
    let (ch, cw) = (current.0 as i64, current.1 as i64);
    let (oh, ow) = (original.0 as f64, original.1 as f64);
    let original_aspect = ow / oh;
    let current_aspect = cw as f64 / ch as f64;
    if original_aspect > current_aspect {
        let new_h = int_round7(oh * (cw as f64 / ow));
        let pad = (ch - new_h).div_euclid(2);
        ((pad as u32)..((ch - pad) as u32), 0..current.1)
    } else {
        let new_w = int_round7(ow * (ch as f64 / oh));
        let pad = (cw - new_w).div_euclid(2);
        (0..current.0, (pad as u32)..((cw - pad) as u32))
    }
}

/// How LLaVA-NeXT lays out one image's features (`processing_llava_next._get_number_of_features`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnyresLayout {
    /// Tiles of the best resolution, `(rows, cols)`.
    pub grid: (u32, u32),
    /// Rows and columns of the unpadded feature map (before `image_newline` is appended).
    pub unpadded: (u32, u32),
    /// Features of the base image (`patches² + num_additional_image_tokens`).
    pub base_features: usize,
}

impl AnyresLayout {
    /// `image_size` = original `(h, w)`; `tile` = crop size (the vision tower's `image_size`);
    /// `patch` = ViT patch size; `additional` = base-image tokens beyond its patches: the
    /// processor's `num_additional_image_tokens` (1 for a CLS token) less 1 under the
    /// `default` feature select strategy (so 0 for LLaVA-NeXT's usual settings).
    pub fn new(
        image_size: (u32, u32),
        pinpoints: &[(u32, u32)],
        tile: u32,
        patch: u32,
        additional: usize,
    ) -> Result<AnyresLayout> {
        if patch == 0 || tile == 0 {
            return Err(Error::Invalid(format!("tile {tile} / patch {patch} must be positive")));
        }
        let grid = anyres_grid_shape(image_size, pinpoints, tile)?;
        let side = tile / patch;
        let current = (grid.0 * side, grid.1 * side);
        let (rows, cols) = unpad_ranges(current, image_size);
        let unpadded = (rows.end - rows.start, cols.end - cols.start);
        Ok(AnyresLayout { grid, unpadded, base_features: (side * side) as usize + additional })
    }

    /// Image tokens in the prompt: unpadded map + one newline per row + the base image.
    pub fn num_image_tokens(&self) -> usize {
        let (r, c) = (self.unpadded.0 as usize, self.unpadded.1 as usize);
        r * c + r + self.base_features
    }
}

/// LLaVA-NeXT pixel values for one image: the base image first, then the tiles row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct AnyresPixels {
    /// Each `[3, crop_h, crop_w]`.
    pub tiles: Vec<PixelValues>,
    /// Original `(height, width)` (`image_sizes`).
    pub image_size: (u32, u32),
    /// The chosen resolution `(height, width)`.
    pub best_resolution: (u32, u32),
}

/// Zero-pad `img` to `target` (centered as `_pad_for_patching`).
fn pad_centered(img: &Image, target: (u32, u32)) -> Image {
    let (top, _, left, _) = padding_for_patching((img.height, img.width), target);
    let (th, tw) = (target.0 as usize, target.1 as usize);
    let w = img.width as usize;
    let mut rgb = vec![0u8; th * tw * 3]; // [th, tw, 3]
    for y in 0..img.height as usize {
        let d = ((y + top as usize) * tw + left as usize) * 3;
        rgb[d..d + w * 3].copy_from_slice(&img.rgb[y * w * 3..(y + 1) * w * 3]);
    }
    Image { width: target.1, height: target.0, rgb }
}

/// Tile `(row, col)` of side `(ph, pw)` of `img` (clipped at the border, as numpy slicing).
fn tile(img: &Image, y0: u32, x0: u32, ph: u32, pw: u32) -> Image {
    let (h, w) = (ph.min(img.height - y0), pw.min(img.width - x0));
    let mut rgb = Vec::with_capacity((h * w * 3) as usize);
    for y in y0..y0 + h {
        let s = ((y * img.width + x0) * 3) as usize;
        rgb.extend_from_slice(&img.rgb[s..s + (w * 3) as usize]);
    }
    Image { width: w, height: h, rgb }
}

/// `LlavaNextImageProcessor` on one image: best resolution, aspect-preserving resize, zero
/// padding to it, tiles of the crop size, and the base image resized to the `size` square;
/// each then goes through resize / center crop / rescale / normalize.
pub fn preprocess_anyres(img: &Image, cfg: &ClipProcessorConfig) -> Result<AnyresPixels> {
    let pinpoints = cfg
        .image_grid_pinpoints
        .as_deref()
        .ok_or_else(|| Error::Invalid("LLaVA-NeXT preprocessing needs `image_grid_pinpoints`".into()))?;
    let orig = (img.height, img.width);
    let best_res = best(orig, pinpoints)?;
    let (inner_h, inner_w) = patch_output_size(orig, best_res);
    let resized = if (inner_h, inner_w) == orig { img.clone() } else { resize(img, inner_h, inner_w, cfg.resample)? };
    let padded = pad_centered(&resized, best_res);
    let base_side = match cfg.size {
        Size::Exact { height, width } => (height, width),
        Size::ShortestEdge(s) => (s, s),
    };
    let patch = cfg.crop_size.0; // transformers uses crop_size.height for both sides
    let base = if base_side == orig { img.clone() } else { resize(img, base_side.0, base_side.1, cfg.resample)? };
    let mut images = vec![base];
    for y in (0..best_res.0).step_by(patch as usize) {
        for x in (0..best_res.1).step_by(patch as usize) {
            images.push(tile(&padded, y, x, patch, patch));
        }
    }
    let tiles =
        images.iter().map(|t| Ok(to_pixel_values(&resize_and_crop(t, cfg)?, cfg))).collect::<Result<Vec<_>>>()?;
    Ok(AnyresPixels { tiles, image_size: orig, best_resolution: best_res })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINS: [(u32, u32); 5] = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    #[test]
    fn best_resolution_hand_cases() {
        // 500x800 (h, w): scales 0.672 / 0.42 / 0.84 / 0.42 / 0.672 give effective areas
        // 537*336=180432, 336*210=70560, 672*420=282240, 70560, 180432: 672x672 wins.
        assert_eq!(select_best_resolution((500, 800), &PINS), Some((672, 672)));
        // A wide strip 100x1000: 336x1008 fits it at scale 1.008 → capped 100000; 672x672 gives
        // 67*672=45024; so (336, 1008).
        assert_eq!(select_best_resolution((100, 1000), &PINS), Some((336, 1008)));
        // 336x336: every candidate holds all 112896 pixels; least waste is 336x672 (first of
        // the two 225792-pixel ones).
        assert_eq!(select_best_resolution((336, 336), &PINS), Some((336, 672)));
        assert_eq!(select_best_resolution((10, 10), &[]), None);
    }

    #[test]
    fn patch_output_and_padding() {
        // 500x800 into 672x672: scale_w 0.84 < scale_h 1.344 → width 672, height ceil(420) = 420.
        assert_eq!(patch_output_size((500, 800), (672, 672)), (420, 672));
        assert_eq!(padding_for_patching((420, 672), (672, 672)), (126, 126, 0, 0));
        // 333x100 into 1008x336: scale_w 3.36, scale_h 3.027... → height 1008, width ceil(302.7) = 303.
        assert_eq!(patch_output_size((333, 100), (1008, 336)), (1008, 303));
        assert_eq!(padding_for_patching((1008, 303), (1008, 336)), (0, 0, 16, 17));
    }

    #[test]
    fn grid_and_patch_counts() {
        assert_eq!(anyres_grid_shape((500, 800), &PINS, 336).unwrap(), (2, 2));
        assert_eq!(num_patches((500, 800), &PINS, 336).unwrap(), 5);
        assert_eq!(anyres_grid_shape((100, 1000), &PINS, 336).unwrap(), (1, 3));
        assert!(anyres_grid_shape((0, 5), &PINS, 336).is_err());
    }

    #[test]
    fn unpad_hand_cases() {
        // 2x2 grid of 24x24 → 48x48 map; original 500x800 is wider: new_h = int(round(500*48/800)) = 30,
        // padding (48-30)//2 = 9 → rows 9..39.
        assert_eq!(unpad_ranges((48, 48), (500, 800)), (9..39, 0..48));
        // Taller original 800x500: columns 9..39.
        assert_eq!(unpad_ranges((48, 48), (800, 500)), (0..48, 9..39));
        // Odd leftover: 24x72 map, original 100x1000: aspect 10 > 3 → new_h = int(7.2) = 7,
        // padding (24-7)//2 = 8 → rows 8..16 (8 rows, one more than new_h, as transformers slices).
        assert_eq!(unpad_ranges((24, 72), (100, 1000)), (8..16, 0..72));
    }

    #[test]
    fn token_count_llava_next_7b() {
        // llava-v1.6 (336 crop, patch 14 → 24x24 per tile), default strategy (no CLS):
        // 500x800 → grid 2x2 → 48x48 map → unpadded 30x48: 1440 + 30 newlines + 576 base.
        let l = AnyresLayout::new((500, 800), &PINS, 336, 14, 0).unwrap();
        assert_eq!(l.grid, (2, 2));
        assert_eq!(l.unpadded, (30, 48));
        assert_eq!(l.num_image_tokens(), 1440 + 30 + 576);
    }
}
