//! Image decoding and preprocessing against Pillow 13 / transformers 5.23 (PIL backend).
//! Goldens: tests/fixtures/vision/pil_goldens.json (made by make_pil_goldens.py beside it).

use serde_json::Value;
use std::io::Cursor;
use webvlm::vision::anyres::preprocess_anyres;
use webvlm::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};
use webvlm::vision::preprocess::{preprocess_clip, resize, ClipProcessorConfig, PixelValues, Resample};

fn goldens() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vision/pil_goldens.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read pil_goldens.json")).expect("parse")
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn f32s(v: &Value) -> Vec<f32> {
    hex(v).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn dims(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn image_of(case: &Value) -> Image {
    let d = dims(&case["in"]);
    Image::from_rgb(d[1], d[0], hex(&case["pixels"])).unwrap()
}

/// Largest absolute difference; panics on a length mismatch.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Equal, or — where a resize shrinks both axes, for which Pillow 13 sometimes runs the vertical
/// pass first by a rule not reproduced here (see preprocess.rs) — pixels off by at most one
/// 8-bit level (1/255/std ≤ 0.0152 after normalization) and the means within 1e-4.
fn check_close(name: &str, got: &[f32], want: &[f32]) {
    let max = max_diff(got, want);
    if max == 0.0 {
        return;
    }
    let n = got.len() as f64;
    let mean_abs = got.iter().zip(want).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / n;
    let mean_diff = (got.iter().map(|&v| v as f64).sum::<f64>() - want.iter().map(|&v| v as f64).sum::<f64>()) / n;
    eprintln!("{name}: max |diff| {max}, mean |diff| {mean_abs:.2e}, mean diff {mean_diff:.2e}");
    let one_level = 1.0 / 255.0 / 0.2613 + 1e-5;
    assert!(max <= one_level && mean_diff.abs() < 1e-4, "{name}: max |diff| {max}, mean diff {mean_diff}");
}

#[test]
fn resize_is_bit_exact_with_pillow() {
    let g = goldens();
    let cases = g["resizes"].as_array().unwrap();
    assert!(cases.len() >= 60);
    for c in cases {
        let img = image_of(c);
        let out = dims(&c["out"]);
        let f = Resample::from_pil(c["filter"].as_i64().unwrap()).unwrap();
        let got = resize(&img, out[0], out[1], f).unwrap();
        let want = hex(&c["expect"]);
        let bad = got.rgb.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(bad, 0, "{f:?} {}x{} -> {}x{}: {bad} bytes differ", img.height, img.width, out[0], out[1]);
    }
}

#[test]
fn clip_and_llava_processors_match_transformers() {
    let g = goldens();
    for c in g["processors"].as_array().unwrap() {
        let cfg = ClipProcessorConfig::from_json(&c["config"]).unwrap();
        let pv = preprocess_clip(&image_of(c), &cfg).unwrap();
        let shape = dims(&c["shape"]);
        assert_eq!([pv.channels, pv.height, pv.width], [shape[0] as usize, shape[1] as usize, shape[2] as usize]);
        check_close(&c["name"].to_string(), &pv.data, &f32s(&c["expect"]));
    }
}

#[test]
fn rgba_png_is_composited_on_white_like_transformers() {
    let g = goldens();
    let c = &g["rgba_png"];
    let img = decode(&hex(&c["png"]), DEFAULT_MAX_PIXELS).unwrap();
    let cfg = ClipProcessorConfig::from_json(&c["config"]).unwrap();
    let pv = preprocess_clip(&img, &cfg).unwrap();
    assert_eq!(max_diff(&pv.data, &f32s(&c["expect"])), 0.0);
}

#[test]
fn llava_next_tiles_match_transformers() {
    let g = goldens();
    for c in g["anyres"].as_array().unwrap() {
        let cfg = ClipProcessorConfig::from_json(&c["config"]).unwrap();
        let img = image_of(c);
        let out = preprocess_anyres(&img, &cfg).unwrap();
        let shape = dims(&c["shape"]);
        assert_eq!(out.tiles.len(), shape[0] as usize, "tiles for {:?}", c["in"]);
        let size = dims(&c["image_size"]);
        assert_eq!(out.image_size, (size[0], size[1]));
        let got: Vec<f32> = out.tiles.iter().flat_map(|t| t.data.iter().copied()).collect();
        check_close(&c["in"].to_string(), &got, &f32s(&c["expect"]));
    }
}

// ---- decoding ----

fn gradient(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) % 256) as u8]))
}

fn encode(img: &image::RgbImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).expect("encode");
    out.into_inner()
}

#[test]
fn decodes_png_exactly_and_jpeg_closely() {
    let src = gradient(37, 21);
    let png = decode(&encode(&src, image::ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((png.width, png.height), (37, 21));
    assert_eq!(png.rgb, src.as_raw().clone());
    let jpg = decode(&encode(&src, image::ImageFormat::Jpeg), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((jpg.width, jpg.height), (37, 21));
    let err: f64 = jpg.rgb.iter().zip(src.as_raw()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>();
    assert!(err / (jpg.rgb.len() as f64) < 8.0, "mean abs JPEG error {}", err / jpg.rgb.len() as f64);
}

#[test]
fn decodes_webp_lossless() {
    let src = gradient(16, 9);
    let bytes = encode(&src, image::ImageFormat::WebP);
    let img = decode(&bytes, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((img.width, img.height), (16, 9));
    assert_eq!(img.rgb, src.as_raw().clone());
}

#[test]
fn grayscale_png_becomes_rgb() {
    let g = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 40 + y) as u8]));
    let mut out = Cursor::new(Vec::new());
    g.write_to(&mut out, image::ImageFormat::Png).unwrap();
    let img = decode(out.get_ref(), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(img.pixel(4, 2), [162, 162, 162]);
}

/// A JPEG with an APP1/EXIF segment carrying `orientation`, inserted after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec(); // big-endian TIFF header, IFD0 at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    // Left half black, right half white, 32x16.
    let src = image::RgbImage::from_fn(32, 16, |x, _| image::Rgb([if x < 16 { 0 } else { 255 }; 3]));
    let jpeg = encode(&src, image::ImageFormat::Jpeg);
    let plain = decode(&jpeg, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((plain.width, plain.height), (32, 16));
    assert!(plain.pixel(2, 8)[0] < 30 && plain.pixel(29, 8)[0] > 225);
    // 6 = rotate 90° clockwise to display: 16 wide, 32 tall, black on top.
    let rot = decode(&with_exif_orientation(&jpeg, 6), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((rot.width, rot.height), (16, 32));
    assert!(rot.pixel(8, 2)[0] < 30 && rot.pixel(8, 29)[0] > 225, "{:?} {:?}", rot.pixel(8, 2), rot.pixel(8, 29));
    // 3 = rotate 180°: white on the left.
    let flip = decode(&with_exif_orientation(&jpeg, 3), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((flip.width, flip.height), (32, 16));
    assert!(flip.pixel(2, 8)[0] > 225 && flip.pixel(29, 8)[0] < 30);
}

/// A PNG signature + IHDR claiming `w` x `h` RGB8 (correct CRC), then nothing else.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn pixel_limit_is_checked_from_the_header() {
    // 100000 x 100000 would be 30 GB decoded; the header alone must be refused.
    let err = decode(&png_header(100_000, 100_000), DEFAULT_MAX_PIXELS).unwrap_err().to_string();
    assert!(err.contains("100000x100000") && err.contains("limit"), "{err}");
    // Under the hard side cap but over a small pixel budget.
    let err = decode(&png_header(2000, 2000), 1_000_000).unwrap_err().to_string();
    assert!(err.contains("2000x2000") && err.contains("1000000"), "{err}");
    // Within the limit, the same header fails later, for lack of pixel data.
    let err = decode(&png_header(20, 20), DEFAULT_MAX_PIXELS).unwrap_err().to_string();
    assert!(err.contains("Png image"), "{err}");
    // A real image over a small budget.
    let src = encode(&gradient(40, 30), image::ImageFormat::Jpeg);
    assert!(decode(&src, 1000).unwrap_err().to_string().contains("40x30"));
}

/// A real small JPEG / lossless WebP whose header is patched to claim 4000x4000: refused by
/// the pixel budget from the header alone (the data holds 40x30 pixels, so a decode would fail
/// differently).
#[test]
fn jpeg_and_webp_headers_are_checked_before_decoding() {
    let mut jpeg = encode(&gradient(40, 30), image::ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2)).expect("SOF marker");
    jpeg[sof + 5..sof + 7].copy_from_slice(&4000u16.to_be_bytes()); // height
    jpeg[sof + 7..sof + 9].copy_from_slice(&4000u16.to_be_bytes()); // width
    let err = decode(&jpeg, 1_000_000).unwrap_err().to_string();
    assert!(err.contains("4000x4000") && err.contains("1000000"), "{err}");

    let mut webp = encode(&gradient(40, 30), image::ImageFormat::WebP);
    let at = webp.windows(4).position(|w| w == b"VP8L").expect("VP8L chunk") + 8;
    assert_eq!(webp[at], 0x2f, "VP8L signature");
    let bits = u32::from_le_bytes(webp[at + 1..at + 5].try_into().unwrap());
    let (w, h) = ((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1);
    assert_eq!((w, h), (40, 30));
    let patched = (bits & !0x0fff_ffff) | 3999 | (3999 << 14);
    webp[at + 1..at + 5].copy_from_slice(&patched.to_le_bytes());
    let err = decode(&webp, 1_000_000).unwrap_err().to_string();
    assert!(err.contains("4000x4000") && err.contains("1000000"), "{err}");
}

/// A lossy WebP (libwebp, quality 70) with EXIF orientation 6 as Pillow shows it (decoded, then
/// `exif_transpose`): the same 24x40 after rotation, pixels within a few levels (VP8's
/// upsampling of chroma may differ by rounding between decoders).
#[test]
fn lossy_webp_with_exif_orientation_matches_pillow() {
    let case = &goldens()["lossy_webp_exif6"];
    let img = decode(&hex(&case["webp"]), DEFAULT_MAX_PIXELS).unwrap();
    let shape = dims(&case["shape"]); // [h, w, 3]
    assert_eq!((img.height, img.width), (shape[0], shape[1]));
    let want = hex(&case["expect"]);
    let diffs: Vec<i32> = img.rgb.iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    let max = *diffs.iter().max().unwrap();
    println!("lossy WebP vs Pillow: mean abs diff {mean:.3}, max {max}");
    assert!(mean < 1.0 && max <= 8, "mean {mean}, max {max}");
}

#[test]
fn truncated_and_foreign_inputs_are_errors() {
    for fmt in [image::ImageFormat::Png, image::ImageFormat::Jpeg, image::ImageFormat::WebP] {
        let bytes = encode(&gradient(24, 24), fmt);
        // The last 13 bytes hold at most the end marker (PNG IEND is 12), which decoders may forgive.
        for cut in [3, 12, 40, bytes.len() / 2, bytes.len() - 13] {
            // Truncated JPEGs may decode partially (zune fills the rest) — but never panic.
            let r = decode(&bytes[..cut.min(bytes.len())], DEFAULT_MAX_PIXELS);
            if fmt != image::ImageFormat::Jpeg || cut < 40 {
                assert!(r.is_err(), "{fmt:?} cut at {cut} decoded");
            }
        }
    }
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let e = decode(gif, DEFAULT_MAX_PIXELS).unwrap_err().to_string();
    assert!(e.contains("unsupported") && e.contains("Gif"), "{e}");
    assert!(decode(b"", DEFAULT_MAX_PIXELS).is_err());
    assert!(decode(b"hello world", DEFAULT_MAX_PIXELS).unwrap_err().to_string().contains("magic"));
}

#[cfg(not(target_arch = "wasm32"))]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn seeds() -> Vec<Vec<u8>> {
        [image::ImageFormat::Png, image::ImageFormat::Jpeg, image::ImageFormat::WebP]
            .into_iter()
            .map(|f| encode(&gradient(19, 13), f))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes, DEFAULT_MAX_PIXELS);
        }

        #[test]
        fn corrupted_images_never_panic(which in 0usize..3, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12), cut in any::<usize>()) {
            let mut bytes = seeds()[which].clone();
            for (at, v) in flips {
                let i = at % bytes.len();
                bytes[i] = v;
            }
            let len = bytes.len();
            bytes.truncate(len - cut % (len / 2));
            if let Ok(img) = decode(&bytes, DEFAULT_MAX_PIXELS) {
                prop_assert_eq!(img.rgb.len(), img.width as usize * img.height as usize * 3);
            }
        }
    }
}

#[test]
fn pixel_values_stats() {
    let pv = PixelValues { channels: 3, height: 1, width: 2, data: vec![1.0, 3.0, 1.0, 3.0, 1.0, 3.0] };
    assert_eq!(pv.mean(), 2.0);
    assert_eq!(pv.std(), 1.0);
}

// ---- the LLaVA fixtures (tests/fixtures/llava/<name>/, made by make_fixtures.py) ----

fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava").join(name)
}

fn read_f32_file(path: &std::path::Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Decode the case's image, preprocess it with the folder's config, compare with the golden
/// pixel_values: mean and std within 1e-3, elements as [`check_close`].
fn check_fixture(name: &str) {
    let dir = fixture_dir(name);
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let pre = webvlm::io::hf::read_preprocessor(&dir).unwrap().expect("fixture has a preprocessor config");
    let cfg = ClipProcessorConfig::from_json(&pre).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let label = format!("{name}/{}", case["name"]);
        let bytes =
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(case["image"].as_str().unwrap()));
        let img = decode(&bytes.unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(
            (img.width as u64, img.height as u64),
            (case["image_width"].as_u64().unwrap(), case["image_height"].as_u64().unwrap())
        );
        let (got, shape): (Vec<f32>, Vec<usize>) = if cfg.image_grid_pinpoints.is_some() {
            let out = preprocess_anyres(&img, &cfg).unwrap();
            let sizes = &case["image_sizes"][0];
            assert_eq!(out.image_size, (sizes[0].as_u64().unwrap() as u32, sizes[1].as_u64().unwrap() as u32));
            let t = &out.tiles[0];
            let shape = vec![1, out.tiles.len(), 3, t.height, t.width];
            (out.tiles.iter().flat_map(|t| t.data.iter().copied()).collect(), shape)
        } else {
            let pv = preprocess_clip(&img, &cfg).unwrap();
            (pv.data.clone(), vec![1, 3, pv.height, pv.width])
        };
        let want_shape: Vec<usize> =
            case["pixel_values"]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, want_shape, "{label}");
        let pv = PixelValues { channels: 3, height: 1, width: got.len() / 3, data: got };
        let (m, s) = (case["pixel_values"]["mean"].as_f64().unwrap(), case["pixel_values"]["std"].as_f64().unwrap());
        eprintln!("{label}: mean {:.6} (golden {m:.6}), std {:.6} (golden {s:.6})", pv.mean(), pv.std());
        assert!((pv.mean() - m).abs() < 1e-3 && (pv.std() - s).abs() < 1e-3, "{label}");
        let want = read_f32_file(&dir.join(case["pixel_values"]["file"].as_str().unwrap()));
        check_close(&label, &pv.data, &want);
    }
}

#[test]
fn fixture_llava15_pixel_values() {
    check_fixture("llava15-llama");
}

#[test]
fn fixture_llava_gemma_pixel_values() {
    check_fixture("llava-gemma");
}

#[test]
fn fixture_llava_next_pixel_values() {
    check_fixture("llavanext-mistral");
}

#[test]
fn fixture_llava_siglip_pixel_values() {
    check_fixture("llava-siglip");
}

/// `SiglipImageProcessor` as saved (no crop fields): its own defaults, not CLIP's.
#[test]
fn siglip_processor_defaults() {
    use webvlm::vision::preprocess::Size;
    let pre = webvlm::io::hf::read_preprocessor(&fixture_dir("llava-siglip")).unwrap().unwrap();
    let cfg = ClipProcessorConfig::from_json(&pre).unwrap();
    assert_eq!(
        (cfg.size, cfg.do_center_crop, cfg.resample),
        (Size::Exact { height: 56, width: 56 }, false, Resample::Bicubic)
    );
    assert_eq!((cfg.image_mean, cfg.image_std), ([0.5; 3], [0.5; 3]));
    let bare = ClipProcessorConfig::from_json(&serde_json::json!({"image_processor_type": "SiglipImageProcessorPil"}));
    assert_eq!(bare.unwrap(), ClipProcessorConfig::siglip_default());
    let siglip = ClipProcessorConfig::siglip_default();
    assert_eq!((siglip.size, siglip.do_center_crop), (Size::Exact { height: 224, width: 224 }, false));
    // The same keys under a CLIP processor crop (CLIP's defaults).
    let clip = ClipProcessorConfig::from_json(&serde_json::json!({"size": {"height": 56, "width": 56}})).unwrap();
    assert!(clip.do_center_crop);
}

#[test]
fn fixture_processor_configs_merge() {
    let pre = webvlm::io::hf::read_preprocessor(&fixture_dir("llavanext-mistral")).unwrap().unwrap();
    assert_eq!(pre["patch_size"], 14);
    assert_eq!(pre["vision_feature_select_strategy"], "default");
    assert_eq!(pre["image_processor_type"], "LlavaNextImageProcessor");
    assert!(pre.get("image_processor").is_none());
    let cfg = ClipProcessorConfig::from_json(&pre).unwrap();
    assert_eq!(cfg.image_grid_pinpoints, Some(vec![(56, 112), (112, 56), (112, 112)]));
    assert_eq!(cfg.crop_size, (56, 56));
}
