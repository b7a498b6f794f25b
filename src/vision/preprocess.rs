//! CLIP-style image preprocessing exactly as transformers 5 does it with its PIL backend
//! (`CLIPImageProcessorPil` / `LlavaImageProcessorPil` / `SiglipImageProcessorPil`,
//! `image_processing_backends.PilBackend`;
//! this backend is the default whenever torchvision is not installed, as in the fixture
//! generator's environment): convert to RGB, optional pad-to-square (LLaVA), shortest-edge
//! resize with PIL's resampling on 8-bit pixels, center crop, rescale by 1/255 (in f64, then
//! f32), normalize with f32 mean and std. SigLIP's processor is the same pipeline with other
//! defaults: exact `size.height` x `size.width` resize, no crop, mean/std 0.5.
//!
//! The resize follows Pillow's `Resample.c`: separable convolution, horizontal pass then
//! vertical, filter support scaled by the downscale factor, coefficients normalized and turned
//! into 22-bit fixed point, each pass rounded and clipped to u8 — so results are bit-exact with
//! `PIL.Image.resize` (tests/fixtures/vision/pil_goldens.json, Pillow 13). Pillow 13 runs the
//! vertical pass first when only the height shrinks (done here too); when *both* sides shrink it
//! sometimes also goes vertical-first by a rule not reproduced here, and then a few pixels may
//! differ by one 8-bit level (the LLaVA fixture photos match bit-exactly).

use crate::error::{Error, Result};
use crate::vision::image::Image;
use serde_json::Value;

/// Normalized pixels, `[channels, height, width]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelValues {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[channels, height, width]`, row-major.
    pub data: Vec<f32>,
}

impl PixelValues {
    pub fn mean(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len().max(1) as f64
    }
    /// Population standard deviation (numpy's `std`).
    pub fn std(&self) -> f64 {
        let m = self.mean();
        let var = self.data.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / self.data.len().max(1) as f64;
        var.sqrt()
    }
}

/// PIL resampling filters (`PIL.Image.Resampling` values in configs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

impl Resample {
    pub fn from_pil(v: i64) -> Result<Resample> {
        Ok(match v {
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            0 => return Err(Error::Unsupported("resample 0 (NEAREST) in the image processor config".into())),
            v => return Err(Error::format("preprocessor config", format!("resample {v} is not a PIL filter"))),
        })
    }

    /// Half-width of the filter at scale 1.
    fn support(self) -> f64 {
        match self {
            Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| if x == 0.0 { 1.0 } else { (x * PI).sin() / (x * PI) };
        match self {
            Resample::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
            Resample::Bilinear => (1.0 - x.abs()).max(0.0),
            Resample::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    // Pillow writes the Hamming constants as C floats.
                    (x * PI).sin() / (x * PI) * (0.54f32 as f64 + 0.46f32 as f64 * (x * PI).cos())
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// How the first resize sizes its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Shorter side to this length, aspect ratio kept (`int()` truncation of the longer side).
    ShortestEdge(u32),
    /// Exactly this size.
    Exact { height: u32, width: u32 },
}

/// The fields of an HF `preprocessor_config.json` that CLIP / LLaVA / LLaVA-NeXT processors use,
/// with transformers' class defaults (`CLIPImageProcessor`) for absent fields.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipProcessorConfig {
    pub do_resize: bool,
    pub size: Size,
    pub resample: Resample,
    pub do_center_crop: bool,
    /// `(height, width)`.
    pub crop_size: (u32, u32),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub do_convert_rgb: bool,
    /// `LlavaImageProcessor` with `do_pad`: pad to a square with the mean colour first.
    pub pad_to_square: bool,
    /// LLaVA-NeXT candidate resolutions, `(height, width)` each.
    pub image_grid_pinpoints: Option<Vec<(u32, u32)>>,
}

pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

impl Default for ClipProcessorConfig {
    fn default() -> Self {
        ClipProcessorConfig {
            do_resize: true,
            size: Size::ShortestEdge(224),
            resample: Resample::Bicubic,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN.map(|v| v as f32),
            image_std: OPENAI_CLIP_STD.map(|v| v as f32),
            do_convert_rgb: true,
            pad_to_square: false,
            image_grid_pinpoints: None,
        }
    }
}

fn cfg_err(msg: String) -> Error {
    Error::format("preprocessor config", msg)
}

fn as_u32(v: &Value, what: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| cfg_err(format!("`{what}` is {v}, not a positive integer")))
}

/// `size`: an int (shortest edge, as `get_size_dict(default_to_square=False)` reads it),
/// `{"shortest_edge"}` or `{"height", "width"}`.
fn parse_size(v: &Value) -> Result<Size> {
    if v.is_number() {
        return Ok(Size::ShortestEdge(as_u32(v, "size")?));
    }
    if v.get("longest_edge").is_some_and(|l| !l.is_null()) {
        return Err(Error::Unsupported(format!("image processor `size` with `longest_edge`: {v}")));
    }
    if let Some(s) = v.get("shortest_edge").filter(|s| !s.is_null()) {
        return Ok(Size::ShortestEdge(as_u32(s, "size.shortest_edge")?));
    }
    match (v.get("height"), v.get("width")) {
        (Some(h), Some(w)) => Ok(Size::Exact { height: as_u32(h, "size.height")?, width: as_u32(w, "size.width")? }),
        _ => Err(cfg_err(format!("`size` {v} has neither `shortest_edge` nor `height` and `width`"))),
    }
}

/// `crop_size`: an int (square) or `{"height", "width"}`.
fn parse_crop(v: &Value) -> Result<(u32, u32)> {
    if v.is_number() {
        let n = as_u32(v, "crop_size")?;
        return Ok((n, n));
    }
    match (v.get("height"), v.get("width")) {
        (Some(h), Some(w)) => Ok((as_u32(h, "crop_size.height")?, as_u32(w, "crop_size.width")?)),
        _ => Err(cfg_err(format!("`crop_size` {v} has no `height` and `width`"))),
    }
}

/// Mean / std: three numbers or one (broadcast, as transformers does).
fn parse_triple(v: &Value, what: &str) -> Result<[f32; 3]> {
    let bad = || cfg_err(format!("`{what}` is {v}, not 1 or 3 numbers"));
    if let Some(x) = v.as_f64() {
        return Ok([x as f32; 3]);
    }
    let a = v.as_array().ok_or_else(bad)?;
    let f: Vec<f64> = a.iter().map(Value::as_f64).collect::<Option<_>>().ok_or_else(bad)?;
    match f[..] {
        [x] => Ok([x as f32; 3]),
        [r, g, b] => Ok([r as f32, g as f32, b as f32]),
        _ => Err(bad()),
    }
}

fn parse_pinpoints(v: &Value) -> Result<Vec<(u32, u32)>> {
    let bad = || cfg_err(format!("`image_grid_pinpoints` is {v}, not a list of [height, width]"));
    let list = v.as_array().filter(|l| !l.is_empty()).ok_or_else(bad)?;
    list.iter()
        .map(|p| match p.as_array().map(Vec::as_slice) {
            Some([h, w]) => Ok((as_u32(h, "image_grid_pinpoints")?, as_u32(w, "image_grid_pinpoints")?)),
            _ => Err(bad()),
        })
        .collect()
}

impl ClipProcessorConfig {
    /// `SiglipImageProcessor`'s class defaults: bicubic resize to exactly 224x224 (no aspect
    /// ratio kept), no center crop, mean and std 0.5 (`IMAGENET_STANDARD_*`).
    pub fn siglip_default() -> Self {
        ClipProcessorConfig {
            size: Size::Exact { height: 224, width: 224 },
            do_center_crop: false,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            ..ClipProcessorConfig::default()
        }
    }

    /// Read an HF image-processor config (the merged `Checkpoint::preprocessor` object), on
    /// top of its class's defaults (`image_processor_type` `SiglipImageProcessor[Pil]`: SigLIP's,
    /// anything else: CLIP's).
    pub fn from_json(v: &Value) -> Result<Self> {
        if !v.is_object() {
            return Err(cfg_err("not a JSON object".into()));
        }
        let field = |k: &str| v.get(k).filter(|x| !x.is_null());
        let kind = field("image_processor_type").and_then(Value::as_str).unwrap_or("");
        let mut c = if kind.starts_with("SiglipImageProcessor") {
            ClipProcessorConfig::siglip_default()
        } else {
            ClipProcessorConfig::default()
        };
        let flag = |k: &str, d: bool| -> Result<bool> {
            field(k).map_or(Ok(d), |x| x.as_bool().ok_or_else(|| cfg_err(format!("`{k}` is {x}, not a boolean"))))
        };
        c.do_resize = flag("do_resize", c.do_resize)?;
        c.do_center_crop = flag("do_center_crop", c.do_center_crop)?;
        c.do_rescale = flag("do_rescale", c.do_rescale)?;
        c.do_normalize = flag("do_normalize", c.do_normalize)?;
        c.do_convert_rgb = flag("do_convert_rgb", c.do_convert_rgb)?;
        if let Some(s) = field("size") {
            c.size = parse_size(s)?;
        }
        if let Some(s) = field("crop_size") {
            c.crop_size = parse_crop(s)?;
        }
        if let Some(r) = field("resample") {
            c.resample = Resample::from_pil(r.as_i64().ok_or_else(|| cfg_err(format!("`resample` is {r}")))?)?;
        }
        if let Some(r) = field("rescale_factor") {
            c.rescale_factor = r.as_f64().ok_or_else(|| cfg_err(format!("`rescale_factor` is {r}")))?;
        }
        if let Some(m) = field("image_mean") {
            c.image_mean = parse_triple(m, "image_mean")?;
        }
        if let Some(s) = field("image_std") {
            c.image_std = parse_triple(s, "image_std")?;
        }
        c.pad_to_square = kind.starts_with("LlavaImageProcessor") && flag("do_pad", false)?;
        if let Some(p) = field("image_grid_pinpoints") {
            c.image_grid_pinpoints = Some(parse_pinpoints(p)?);
        }
        Ok(c)
    }
}

/// transformers' `get_resize_output_image_size(default_to_square=False)`: the shorter side
/// becomes `size`, the longer `int(size * long / short)`. Returns `(height, width)`.
pub fn shortest_edge_size(height: u32, width: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = (size as f64 * long as f64 / short as f64) as u32;
    if width <= height {
        (new_long, size)
    } else {
        (size, new_long)
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output index, the first
/// input index and 22-bit fixed-point weights. `(bounds, ksize, weights [out, ksize])`.
fn coefficients(in_size: u32, out_size: u32, filter: Resample) -> (Vec<(usize, usize)>, usize, Vec<i32>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut kk = vec![0i32; out_size as usize * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        let inv_filterscale = 1.0 / filterscale;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale);
            total += *wx;
        }
        for x in 0..n {
            let k = if total != 0.0 { w[x] / total } else { w[x] };
            let fixed = k * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if k < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, n));
    }
    (bounds, ksize, kk)
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `clip8`: drop the fraction (floor), clamp to 0..=255.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One separable pass over RGB8 `[rows, cols, 3]` along `cols` (`horizontal`) or `rows`.
fn resample_pass(src: &[u8], rows: usize, cols: usize, out_len: u32, horizontal: bool, f: Resample) -> Vec<u8> {
    let in_len = if horizontal { cols } else { rows } as u32;
    let (bounds, ksize, kk) = coefficients(in_len, out_len, f);
    let (out_rows, out_cols) = if horizontal { (rows, out_len as usize) } else { (out_len as usize, cols) };
    let mut out = vec![0u8; out_rows * out_cols * 3];
    for r in 0..out_rows {
        for c in 0..out_cols {
            let o = if horizontal { c } else { r };
            let (start, n) = bounds[o];
            let k = &kk[o * ksize..o * ksize + n];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (i, &w) in k.iter().enumerate() {
                let p = if horizontal { (r * cols + start + i) * 3 } else { ((start + i) * cols + c) * 3 };
                for ch in 0..3 {
                    acc[ch] += src[p + ch] as i64 * w as i64;
                }
            }
            let q = (r * out_cols + c) * 3;
            for ch in 0..3 {
                out[q + ch] = clip8(acc[ch]);
            }
        }
    }
    out
}

/// `PIL.Image.resize((width, height), filter)` on an RGB image, bit-exact.
pub fn resize(img: &Image, height: u32, width: u32, filter: Resample) -> Result<Image> {
    if height == 0 || width == 0 {
        return Err(Error::Invalid(format!("resize to {width}x{height}")));
    }
    if img.width == 0 || img.height == 0 {
        return Err(Error::Invalid(format!("resize of an empty {}x{} image", img.width, img.height)));
    }
    let (h, w) = (img.height as usize, img.width as usize);
    // Pillow skips a pass whose size does not change (it would be the identity), and runs the
    // vertical pass first when the height shrinks but the width does not (Pillow 13).
    let (need_h, need_v) = (width != img.width, height != img.height);
    let data = if width >= img.width && height < img.height {
        let v = resample_pass(&img.rgb, h, w, height, false, filter);
        if need_h {
            resample_pass(&v, height as usize, w, width, true, filter)
        } else {
            v
        }
    } else {
        let hz = if need_h { resample_pass(&img.rgb, h, w, width, true, filter) } else { img.rgb.clone() };
        if need_v {
            resample_pass(&hz, h, width as usize, height, false, filter)
        } else {
            hz
        }
    };
    Image::from_rgb(width, height, data)
}

/// transformers' `center_crop` on 8-bit pixels: window offset `(orig - crop) // 2`; along a
/// side shorter than the crop the image is centered on zeros (`ceil` on the leading side).
/// Always returns `crop_h` x `crop_w`.
pub fn center_crop(img: &Image, crop_h: u32, crop_w: u32) -> Image {
    // Image coordinate of the window's first row / column (negative: zero padding before it).
    let start = |orig: u32, crop: u32| -> i64 {
        let (o, c) = (orig as i64, crop as i64);
        if c <= o {
            (o - c).div_euclid(2)
        } else {
            -((c - o + 1) / 2)
        }
    };
    let (top, left) = (start(img.height, crop_h), start(img.width, crop_w));
    let (oh, ow) = (img.height as i64, img.width as i64);
    let (ch, cw) = (crop_h as usize, crop_w as usize);
    let mut rgb = vec![0u8; ch * cw * 3]; // [crop_h, crop_w, 3]
    for y in 0..ch {
        let iy = top + y as i64;
        if !(0..oh).contains(&iy) {
            continue;
        }
        // Columns of the window that fall inside the image.
        let x0 = (-left).clamp(0, cw as i64) as usize;
        let x1 = (ow - left).clamp(0, cw as i64) as usize;
        if x0 < x1 {
            let s = ((iy * ow + left + x0 as i64) * 3) as usize;
            rgb[(y * cw + x0) * 3..(y * cw + x1) * 3].copy_from_slice(&img.rgb[s..s + (x1 - x0) * 3]);
        }
    }
    Image { width: crop_w, height: crop_h, rgb }
}

/// `LlavaImageProcessor.pad_to_square`: the longer side wins, `color` fills, the image is
/// placed at `(max - short) // 2`.
pub fn pad_to_square(img: &Image, color: [u8; 3]) -> Image {
    let (w, h) = (img.width as usize, img.height as usize);
    let side = w.max(h);
    if w == h {
        return img.clone();
    }
    let (off_y, off_x) = if w > h { ((side - h) / 2, 0) } else { (0, (side - w) / 2) };
    let mut rgb: Vec<u8> = std::iter::repeat_n(color, side * side).flatten().collect();
    for y in 0..h {
        let d = ((y + off_y) * side + off_x) * 3;
        rgb[d..d + w * 3].copy_from_slice(&img.rgb[y * w * 3..(y + 1) * w * 3]);
    }
    Image { width: side as u32, height: side as u32, rgb }
}

/// The first resize of the pipeline (`size`), then the center crop, as u8 pixels.
pub fn resize_and_crop(img: &Image, cfg: &ClipProcessorConfig) -> Result<Image> {
    let mut img = std::borrow::Cow::Borrowed(img);
    if cfg.do_resize {
        let (h, w) = match cfg.size {
            Size::ShortestEdge(s) => shortest_edge_size(img.height, img.width, s),
            Size::Exact { height, width } => (height, width),
        };
        // PIL returns a copy when the size does not change.
        if (h, w) != (img.height, img.width) {
            img = std::borrow::Cow::Owned(resize(&img, h, w, cfg.resample)?);
        }
    }
    if cfg.do_center_crop {
        img = std::borrow::Cow::Owned(center_crop(&img, cfg.crop_size.0, cfg.crop_size.1));
    }
    Ok(img.into_owned())
}

/// Rescale (`x * factor` in f64, stored as f32) and normalize (`(x - mean) / std` in f32),
/// HWC u8 → CHW f32.
pub fn to_pixel_values(img: &Image, cfg: &ClipProcessorConfig) -> PixelValues {
    let (h, w) = (img.height as usize, img.width as usize);
    let mut data = vec![0f32; 3 * h * w]; // [3, h, w]
    for ch in 0..3 {
        let plane = &mut data[ch * h * w..(ch + 1) * h * w];
        for (i, v) in plane.iter_mut().enumerate() {
            let x = img.rgb[i * 3 + ch];
            let mut f = if cfg.do_rescale { (x as f64 * cfg.rescale_factor) as f32 } else { x as f32 };
            if cfg.do_normalize {
                f = (f - cfg.image_mean[ch]) / cfg.image_std[ch];
            }
            *v = f;
        }
    }
    PixelValues { channels: 3, height: h, width: w, data }
}

/// The background colour of `pad_to_square`: `int(mean * 255)` per channel.
fn mean_colour(cfg: &ClipProcessorConfig) -> [u8; 3] {
    cfg.image_mean.map(|m| (m as f64 * 255.0).clamp(0.0, 255.0) as u8)
}

/// `CLIPImageProcessor` / `LlavaImageProcessor` on one image: `pixel_values[0]`, `[3, H, W]`.
pub fn preprocess_clip(img: &Image, cfg: &ClipProcessorConfig) -> Result<PixelValues> {
    let padded;
    let img = if cfg.pad_to_square {
        padded = pad_to_square(img, mean_colour(cfg));
        &padded
    } else {
        img
    };
    Ok(to_pixel_values(&resize_and_crop(img, cfg)?, cfg))
}
