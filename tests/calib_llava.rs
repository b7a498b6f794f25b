//! Calibration of a LLaVA model with images (`convert --calibrate DIR`): the tiny LLaVA-1.5
//! fixture (HF folder, and its f32 conversion in `.cache/models`) calibrated on a folder of
//! images with prompts. The vision tower, projector and decoder run natively on every image;
//! GPTQ with those statistics must beat RTN, image calibration must differ from text
//! calibration, and `eval` of the written folder must reproduce `quality.json`.

use crate::io_common;

use io_common::{scratch, Rng};
use std::path::{Path, PathBuf};
use webvlm::calib::{CalibConfig, Method, TextSpec};
use webvlm::convert::{convert_with, ConvertOptions, WeightChoice};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder of 8 images: the two fixture photos and six generated ones (sizes, patterns and
/// colours differ), most with a prompt file, some with an answer.
fn image_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    for f in ["chelsea.png", "synthetic-56.png"] {
        std::fs::copy(root().join("tests/fixtures/llava/images").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("chelsea.txt"), "What animal is this?\n\nA cat with orange fur.").unwrap();
    let mut rng = Rng::new(31);
    for i in 0..6u32 {
        let (w, h) = (40 + 13 * i, 72 - 5 * i);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let n = (rng.uniform() * 40.0) as i32;
            let c = |v: u32| (v as i32 + n).clamp(0, 255) as u8;
            match i % 3 {
                0 => image::Rgb([c(x * 255 / w), c(y * 255 / h), c(128)]),
                1 => image::Rgb([c(if (x / 8 + y / 8) % 2 == 0 { 230 } else { 20 }), c(90), c(40 * i)]),
                _ => image::Rgb([c(200), c(((x * x + y * y) / 7) % 256), c(255 - y * 3)]),
            }
        });
        let p = dir.join(format!("gen-{i}.png"));
        img.save(&p).unwrap();
        if i != 2 {
            let q = ["What colours do you see?", "Describe the pattern.", "Is it a photo?"][i as usize % 3];
            let text = if i % 2 == 0 { format!("{q}\n\nIt shows shapes number {i}.") } else { q.to_string() };
            std::fs::write(p.with_extension("txt"), text).unwrap();
        }
    }
    dir
}

fn convert_llava(src: &Path, c: CalibConfig, name: &str) -> (serde_json::Value, PathBuf, Vec<(String, usize)>) {
    let out = scratch(name);
    let opts = ConvertOptions { weights: WeightChoice::Int4, calib: Some(c), force: true, ..Default::default() };
    let mut seen = Vec::new();
    convert_with(src, &out, &opts, &mut |_| {}, &mut |stage, done, total| {
        assert!(done <= total, "{stage}: {done}/{total}");
        if done == total {
            seen.push((stage.to_string(), total));
        }
    })
    .unwrap();
    let q = serde_json::from_str(&std::fs::read_to_string(out.join("quality.json")).unwrap()).unwrap();
    (q, out, seen)
}

fn kl(q: &serde_json::Value) -> f64 {
    q["evaluation"]["mean_kl"].as_f64().unwrap()
}

fn sum_err(q: &serde_json::Value) -> f64 {
    q["layers"].as_array().unwrap().iter().map(|l| l["rel_err"].as_f64().unwrap()).sum()
}

fn weights(out: &Path, name: &str) -> Vec<u8> {
    let ckpt = webvlm::io::open(out).unwrap();
    match ckpt.weights.load(name).unwrap().data {
        webvlm::io::TensorData::Quant(q) => q.segments().into_iter().flat_map(|(_, b)| b.to_vec()).collect(),
        webvlm::io::TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn check_source(src: &Path, tag: &str) {
    let images = image_folder(&format!("llava-images-{tag}"));
    let spec = TextSpec::Images(images.clone());
    let cfg = |method| CalibConfig { method, spec: spec.clone(), ..Default::default() };
    let (rtn, _, _) = convert_llava(src, cfg(Method::Rtn), &format!("llava-rtn-{tag}"));
    let (gptq, out, seen) = convert_llava(src, cfg(Method::Gptq), &format!("llava-gptq-{tag}"));
    eprintln!("{tag}: rtn {} gptq {}", rtn["evaluation"], gptq["evaluation"]);
    eprintln!("{tag}: rel err sum rtn {:.4e} gptq {:.4e}", sum_err(&rtn), sum_err(&gptq));
    // progress per stage: 6 calibration images, 2 layers, 2 held-out images
    assert_eq!(seen, [("collect".to_string(), 6), ("quantize".into(), 2), ("evaluate".into(), 2)], "{tag}");
    let layers = gptq["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2 * 7);
    // 6 images of 16 feature tokens each, plus their prompts
    let tokens = gptq["calibration_tokens"].as_u64().unwrap();
    assert!(tokens > 6 * 16 + 6 * 5, "{tokens}");
    assert!(gptq["calibration_text"].as_str().unwrap().starts_with("images: "));
    // GPTQ on the image statistics reconstructs better than RTN and brings the decoder closer to f32.
    assert!(sum_err(&gptq) < 0.9 * sum_err(&rtn), "{tag}: {} vs {}", sum_err(&gptq), sum_err(&rtn));
    assert!(kl(&gptq) < kl(&rtn), "{tag}: gptq KL {} vs rtn {}", kl(&gptq), kl(&rtn));
    // The written folder (a LLaVA with the checkpoint's tensor names) reproduces quality.json.
    let c = CalibConfig { spec: spec.clone(), ..Default::default() };
    let e = webvlm::calib::run::eval_paths(&out, src, &spec, &c, &mut |_, _, _| {}).unwrap();
    assert!((e.mean_kl - kl(&gptq)).abs() <= 1e-6 * kl(&gptq), "eval {} vs {}", e.mean_kl, kl(&gptq));
    assert_eq!(e.positions as u64, gptq["evaluation"]["positions"].as_u64().unwrap());
    // Calibrating on text alone gives other weights than calibrating on the images.
    let text = images.join("prose.md");
    let para = "The cat sat on the mat and looked at the sun. It was a warm day in the garden.";
    std::fs::write(&text, [para; 8].join("\n\n")).unwrap();
    let tc = CalibConfig { method: Method::Gptq, spec: TextSpec::File(text), seq_len: 64, ..Default::default() };
    let (_, tout, _) = convert_llava(src, tc, &format!("llava-gptq-text-{tag}"));
    let name = layers[0]["name"].as_str().unwrap();
    assert!(weights(&out, name) != weights(&tout, name), "{name}: image and text calibration agree");
}

#[test]
fn llava_calibrated_with_images_beats_rtn_hf_folder() {
    check_source(&root().join("tests/fixtures/llava/llava15-llama"), "hf");
}

#[test]
fn llava_calibrated_with_images_beats_rtn_converted_fixture() {
    let p = root().join(".cache/models/llava15-llama-fixture");
    assert!(p.join("manifest.json").exists(), "{} is missing: run scripts/setup.sh", p.display());
    check_source(&p, "converted");
}

/// `--calibrate builtin` on a LLaVA: the built-in image set (`data/calib-vlm`, written by
/// `tools/calib_set.py`: real photos and the default model's generated scenes with questions)
/// plus pydoc_data prose for a quarter of the tokens; evaluated on the set's held-out items.
#[test]
fn llava_builtin_calibration_uses_photos_scenes_and_prose() {
    use webvlm::calib::images::{builtin_dir, load};
    let dir = builtin_dir();
    let bytes: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(bytes < 1 << 20, "{}: {bytes} bytes", dir.display());
    let split = load(&dir).unwrap();
    let photos = |items: &[webvlm::calib::images::Item]| {
        items.iter().filter(|i| i.image.file_name().unwrap().to_str().unwrap().contains("-photo-")).count()
    };
    let (cal, held) = (split.calib.len(), split.heldout.len());
    assert!(
        cal >= 20 && held >= 5 && photos(&split.calib[..]) >= 4 && photos(&split.heldout[..]) >= 1,
        "{cal} / {held}"
    );
    assert!(split.calib.iter().chain(&split.heldout).all(|i| !i.prompt.is_empty() && !i.answer.is_empty()));

    let src = root().join("tests/fixtures/llava/llava15-llama");
    let cfg = |spec| CalibConfig { method: Method::Gptq, spec, calib_tokens: 8192, ..Default::default() };
    let (q, out, seen) = convert_llava(&src, cfg(TextSpec::Builtin), "llava-builtin");
    eprintln!("builtin: {}", q["evaluation"]);
    // 2048 tokens of prose (8 sequences of 256), then every calibration image; every held-out image
    assert_eq!(seen, [("collect".to_string(), 8 + cal), ("quantize".into(), 2), ("evaluate".into(), held)]);
    let tokens = q["calibration_tokens"].as_u64().unwrap();
    assert!(tokens > 2048 + cal as u64 * (16 + 5), "{tokens}");
    assert!(q["calibration_text"].as_str().unwrap().starts_with("builtin: images"), "{}", q["calibration_text"]);
    // `eval --text builtin` of the written folder evaluates the same held-out items
    let c = CalibConfig { spec: TextSpec::Builtin, ..Default::default() };
    let e = webvlm::calib::run::eval_paths(&out, &src, &TextSpec::Builtin, &c, &mut |_, _, _| {}).unwrap();
    assert!((e.mean_kl - kl(&q)).abs() <= 1e-6 * kl(&q), "eval {} vs {}", e.mean_kl, kl(&q));
    assert_eq!(e.positions as u64, q["evaluation"]["positions"].as_u64().unwrap());
    // the same folder without the prose: same held-out positions, other weights
    let (qi, iout, _) = convert_llava(&src, cfg(TextSpec::Images(dir)), "llava-builtin-images");
    assert_eq!(qi["evaluation"]["positions"], q["evaluation"]["positions"]);
    let name = q["layers"][0]["name"].as_str().unwrap();
    assert!(weights(&out, name) != weights(&iout, name), "{name}: the prose changed nothing");
}
