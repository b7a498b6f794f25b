//! Decoding image files (JPEG, PNG, WebP) into RGB8 pixels the way the HF pipeline sees them:
//! transformers' `load_image` applies the EXIF orientation (`PIL.ImageOps.exif_transpose`), and
//! the image processor's `convert_to_rgb` (transformers 5, `image_transforms.convert_to_rgb`)
//! turns grayscale into RGB and composites any transparency onto a white background with
//! `PIL.Image.alpha_composite` (8-bit fixed point, reproduced exactly in [`composite_on_white`]).
//!
//! The format is sniffed from the magic bytes and the dimensions are read from the header and
//! checked against a pixel limit before any pixel is decoded, so a small hostile file cannot
//! make the decoder allocate gigabytes. Decoding itself is the `image` crate's (zune-jpeg, png,
//! image-webp); every failure is an [`Error`], never a panic.

use crate::error::{Error, Result};
use image::{DynamicImage, ImageDecoder, Limits};
use std::io::Cursor;

/// Default pixel-count limit (64 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 64 * 1024 * 1024;
/// Hard cap on either dimension, whatever `max_pixels` allows.
pub const MAX_DIMENSION: u32 = 32_768;

/// An RGB image, 8 bits per channel, rows top to bottom, orientation already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// `[height, width, 3]`, row-major.
    pub rgb: Vec<u8>,
}

impl Image {
    /// An image from raw RGB8 bytes (`[height, width, 3]`); checks the length.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Image> {
        let want = width as u64 * height as u64 * 3;
        if rgb.len() as u64 != want {
            return Err(Error::Shape(format!("{width}x{height} RGB image needs {want} bytes, got {}", rgb.len())));
        }
        Ok(Image { width, height, rgb })
    }

    /// `[r, g, b]` at column `x`, row `y`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// The container formats this runtime decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
}

/// The format named by the first bytes of `bytes`, or an error naming what was found.
pub fn sniff(bytes: &[u8]) -> Result<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(Format::Png)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Ok(Format::WebP)
    } else {
        let other = image::guess_format(bytes).ok().map(|f| format!("{f:?}"));
        Err(Error::Unsupported(match other {
            Some(f) => format!("image format {f}; JPEG, PNG and WebP are supported"),
            None => "image data is not JPEG, PNG or WebP (unknown magic bytes)".to_string(),
        }))
    }
}

fn decode_err(fmt: Format, e: image::ImageError) -> Error {
    Error::format(format!("{fmt:?} image"), e.to_string())
}

/// Reject `width` x `height` if over `max_pixels` or [`MAX_DIMENSION`].
pub fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if width == 0 || height == 0 {
        return Err(Error::format("image", format!("header says {width}x{height}: empty image")));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION || pixels > max_pixels {
        return Err(Error::Invalid(format!(
            "image is {width}x{height} ({pixels} pixels); the limit is {max_pixels} pixels and \
             {MAX_DIMENSION} per side"
        )));
    }
    Ok(())
}

/// Header checks, then the pixels: `(decoded image, EXIF orientation)`.
fn decode_with<D: ImageDecoder>(fmt: Format, mut dec: D, max_pixels: u64) -> Result<DynamicImage> {
    let (w, h) = dec.dimensions();
    check_size(w, h, max_pixels)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    // Room for the decoded image at up to 16 bytes/pixel plus the decoder's working buffers.
    limits.max_alloc = Some(w as u64 * h as u64 * 16 + (64 << 20));
    dec.set_limits(limits).map_err(|e| decode_err(fmt, e))?;
    // A broken EXIF block only loses the orientation, as in PIL's exif_transpose.
    let orientation = dec.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| decode_err(fmt, e))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Decode JPEG, PNG or WebP bytes to RGB8 with the EXIF orientation applied. Images whose
/// header claims more than `max_pixels` pixels (or a side over [`MAX_DIMENSION`]) are rejected
/// before any pixel is decoded.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Image> {
    let fmt = sniff(bytes)?;
    let cur = Cursor::new(bytes);
    let img = match fmt {
        Format::Jpeg => {
            let d = image::codecs::jpeg::JpegDecoder::new(cur).map_err(|e| decode_err(fmt, e))?;
            decode_with(fmt, d, max_pixels)?
        }
        Format::Png => {
            // The png decoder applies its own limits while it reads the header in `new`; check
            // ours first (IHDR is the first chunk) so the error names the size and the limit.
            if bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
                let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
                check_size(be(16), be(20), max_pixels)?;
            }
            let d = image::codecs::png::PngDecoder::with_limits(cur, Limits::no_limits())
                .map_err(|e| decode_err(fmt, e))?;
            decode_with(fmt, d, max_pixels)?
        }
        Format::WebP => {
            let d = image::codecs::webp::WebPDecoder::new(cur).map_err(|e| decode_err(fmt, e))?;
            decode_with(fmt, d, max_pixels)?
        }
    };
    to_rgb(img)
}

/// `PIL.Image.alpha_composite(white, rgba)` for one channel value `c` with alpha `a`
/// (Pillow's `AlphaComposite.c`, 7 fractional bits, division by 255 by shifts).
pub fn composite_on_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    const PREC: u32 = 7;
    let coef1 = a as u32 * 255 * 255 * (1 << PREC) / (255 * 255); // dst alpha 255: outa255 = 255*255
    let coef2 = 255 * (1 << PREC) - coef1;
    let tmp = c as u32 * coef1 + 255 * coef2 + (0x80 << PREC);
    ((((tmp >> 8) + tmp) >> 8) >> PREC) as u8
}

/// Grey or RGB, with or without alpha, 8 or 16 bits → RGB8 as transformers' `convert_to_rgb`
/// on a PIL image gives it. 16-bit samples keep their high byte (PIL's `RGB;16B` raw mode).
fn to_rgb(img: DynamicImage) -> Result<Image> {
    let (w, h) = (img.width(), img.height());
    let n = w as usize * h as usize;
    let mut rgb = Vec::with_capacity(n * 3);
    let mut push = |px: &[u8], channels: usize| {
        for p in px.chunks_exact(channels) {
            let (c, a) = match channels {
                1 => ([p[0]; 3], 255),
                2 => ([p[0]; 3], p[1]),
                3 => ([p[0], p[1], p[2]], 255),
                _ => ([p[0], p[1], p[2]], p[3]),
            };
            let alpha = channels == 2 || channels == 4;
            rgb.extend(c.map(|v| if alpha { composite_on_white(v, a) } else { v }));
        }
    };
    let high = |v: &[u16]| v.iter().map(|x| (x >> 8) as u8).collect::<Vec<u8>>();
    match &img {
        DynamicImage::ImageLuma8(b) => push(b.as_raw(), 1),
        DynamicImage::ImageLumaA8(b) => push(b.as_raw(), 2),
        DynamicImage::ImageRgb8(b) => push(b.as_raw(), 3),
        DynamicImage::ImageRgba8(b) => push(b.as_raw(), 4),
        DynamicImage::ImageLuma16(b) => push(&high(b.as_raw()), 1),
        DynamicImage::ImageLumaA16(b) => push(&high(b.as_raw()), 2),
        DynamicImage::ImageRgb16(b) => push(&high(b.as_raw()), 3),
        DynamicImage::ImageRgba16(b) => push(&high(b.as_raw()), 4),
        other => return Err(Error::Unsupported(format!("decoded pixel type {:?}", other.color()))),
    }
    Image::from_rgb(w, h, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_matches_pillow_endpoints() {
        // Opaque keeps the colour, transparent is white, half alpha blends with rounding.
        for c in [0u8, 1, 77, 128, 254, 255] {
            assert_eq!(composite_on_white(c, 255), c);
            assert_eq!(composite_on_white(c, 0), 255);
        }
        // Values read back from Pillow 13's alpha_composite (an exhaustive 256x256 comparison
        // against Pillow matched when this was written).
        assert_eq!(composite_on_white(0, 128), 127);
        assert_eq!(composite_on_white(37, 100), 170);
        assert_eq!(composite_on_white(200, 3), 254);
    }

    #[test]
    fn sniff_names_formats() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), Format::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap(), Format::Png);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), Format::WebP);
        let gif = sniff(b"GIF89a\x01\0\x01\0").unwrap_err().to_string();
        assert!(gif.contains("Gif"), "{gif}");
        assert!(sniff(b"").is_err());
    }

    #[test]
    fn size_limits() {
        assert!(check_size(100, 100, 10_000).is_ok());
        assert!(check_size(100, 101, 10_000).is_err());
        assert!(check_size(MAX_DIMENSION + 1, 1, u64::MAX).is_err());
        assert!(check_size(0, 5, 100).is_err());
    }
}
