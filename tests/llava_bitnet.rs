//! LlavaOLMoBitnet1B (LLaVA's original code base around an OLMo-BitNet b1.58 decoder) end to
//! end against `tests/fixtures/bitnet/tiny/golden.json` (written by
//! `tests/fixtures/bitnet/reference.py`, numpy BitLinear158 + transformers' CLIP): prompt ids
//! with the -200 placeholder as `tokenizer_image_token` builds them, pixel values after
//! `expand2square`, first-step top-10 logits, 12 greedy ids — from the HF folder (f32 latent
//! weights ternarized at load) and after `convert` (block linears ternary, written straight
//! from the latent weights).

use serde_json::Value;
use std::path::{Path, PathBuf};
use webvlm::convert::{ConvertOptions, FormatPlan, WeightChoice};
use webvlm::engine::{Engine, GenerateParams};
use webvlm::model::llava::ORIGINAL_IMAGE_TOKEN;
use webvlm::model::LoadOptions;
use webvlm::quant::WeightFormat;
use webvlm::vision::features;
use webvlm::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    let p = root().join("tests/fixtures/bitnet/tiny");
    assert!(p.join("golden.json").exists(), "{} is missing: see tests/fixtures/bitnet/README.md", p.display());
    p
}

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("golden.json")).unwrap()).unwrap()
}

/// Golden ids; the -200 placeholder becomes [`ORIGINAL_IMAGE_TOKEN`].
fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32 as u32).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn image(case: &Value) -> Image {
    let bytes = std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap();
    decode(&bytes, DEFAULT_MAX_PIXELS).unwrap()
}

fn params(n: usize) -> GenerateParams {
    GenerateParams { max_new_tokens: n, ..Default::default() }
}

fn engine(dir: &Path) -> Engine {
    Engine::new(webvlm::io::open(dir).unwrap(), &LoadOptions::default()).unwrap()
}

/// Largest relative error of the golden top-10 logits; asserts the top-10 ids.
fn top10_error(e: &Engine, case: &Value, what: &str) -> f32 {
    let want_ids = ids(&case["top10_ids"]);
    let logits = e.first_logits();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let got: Vec<u32> = order[..10].iter().map(|&i| i as u32).collect();
    let err = want_ids
        .iter()
        .zip(floats(&case["top10_logits"]))
        .map(|(&i, w)| (logits[i as usize] - w).abs() / w.abs().max(1.0))
        .fold(0f32, f32::max);
    println!("{what}: top-10 max relative error {err:.2e}");
    assert_eq!(got, want_ids, "{what}: top-10 ids");
    err
}

/// Every case: prompt ids, image token count, logits within 1e-3 relative, 12 greedy ids.
fn check_cases(e: &mut Engine, what: &str) {
    let g = golden();
    for case in g["cases"].as_array().unwrap() {
        let what = format!("{what}/{}", case["name"].as_str().unwrap());
        let prompt = e.encode_with_images(case["chat_text"].as_str().unwrap(), true).unwrap();
        assert_eq!(prompt, ids(&case["input_ids"]), "{what}: input ids");
        e.start_with_images(&prompt, &[image(case)], params(12)).unwrap();
        let mut out = Vec::new();
        while let Some(ev) = e.step().unwrap() {
            out.push(ev.id);
        }
        assert_eq!(e.image_tokens() as u64, case["num_image_tokens"].as_u64().unwrap(), "{what}: image tokens");
        let err = top10_error(e, case, &what);
        assert!(err <= 1e-3, "{what}: top-10 logits off by {err} relative");
        assert_eq!(out, ids(&case["greedy_ids"]), "{what}: greedy ids");
    }
}

#[test]
fn config_and_prompt_follow_the_original_layout() {
    let e = engine(&fixture());
    let m = e.llava().expect("a LLaVA checkpoint");
    assert_eq!(m.cfg.image_token_id, ORIGINAL_IMAGE_TOKEN);
    assert!(m.cfg.pad_to_square && m.cfg.text.arch.ternary);
    assert_eq!(m.cfg.feature_layers, vec![m.cfg.vision.layers - 1]); // mm_vision_select_layer -2
    assert_eq!(m.lm.layers[0].q.w.format(), WeightFormat::Ternary);
    // No `<image>`: plain text; two: two placeholders.
    let plain = e.encode_with_images("a cat", true).unwrap();
    assert_eq!(plain, e.tokenizer().encode("a cat", false).unwrap()); // OLMo adds no BOS
    let two = e.encode_with_images("<image>a<image>", true).unwrap();
    assert_eq!(two.iter().filter(|&&t| t == ORIGINAL_IMAGE_TOKEN).count(), 2);
}

/// Pixel values after `expand2square` and the CLIP processor equal the reference's dump.
#[test]
fn pixels_are_padded_to_square() {
    let dir = fixture();
    let e = engine(&dir);
    let m = e.llava().unwrap();
    let mut cfg = features::processor_config(webvlm::io::open(&dir).unwrap().preprocessor.as_ref(), m).unwrap();
    cfg.pad_to_square |= m.cfg.pad_to_square;
    for case in golden()["cases"].as_array().unwrap() {
        let p = features::prepare(&image(case), &cfg, m).unwrap();
        let pv = &p.tiles[0];
        let pg = &case["pixel_values"];
        assert!((pv.mean() - pg["mean"].as_f64().unwrap()).abs() < 1e-3, "{}: mean", case["name"]);
        let bytes = std::fs::read(dir.join(pg["file"].as_str().unwrap())).unwrap();
        let want: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(want.len(), pv.data.len());
        let max = want.iter().zip(&pv.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 0.05, "{}: pixel max abs diff {max}", case["name"]);
    }
}

#[test]
fn hf_folder_matches_reference() {
    check_cases(&mut engine(&fixture()), "hf");
}

fn convert(name: &str, opts: ConvertOptions) -> (Engine, webvlm::convert::ConvertReport) {
    let out = root().join(format!(".cache/tmp-bitnet/{name}"));
    let opts = ConvertOptions { force: true, ..opts };
    let report = webvlm::convert::convert(&fixture(), &out, &opts, &mut |_| {}).unwrap();
    (engine(&out), report)
}

/// Converted with f32 embedding and tower: only the BitLinear layers change storage (ternary,
/// from the latent weights; the projector stays f32 for BitNet models), so the numbers stay
/// the reference's.
#[test]
fn converted_ternary_blocks_match_reference() {
    let opts =
        ConvertOptions { weights: WeightChoice::F32, vision_weights: Some(WeightChoice::F32), ..Default::default() };
    let (mut e, report) = convert("f32", opts);
    assert_eq!(report.formats.get("ternary"), Some(&8), "{:?}", report.formats); // 2 blocks x 4 linears
    check_cases(&mut e, "converted");
}

/// Defaults (INT4 `wte`, INT8 tower, f16 projector) and `--weights ternary` (`wte` INT8: it
/// is no BitLinear): formats per part; the logit error is reported.
#[test]
fn converted_defaults_keep_parts_formats() {
    let g = golden();
    for (name, weights, wte) in [
        ("int4", WeightChoice::Int4, WeightFormat::Int4 { group: 32, sym: true }),
        ("ternary", WeightChoice::Ternary, WeightFormat::Int8),
    ] {
        let (mut e, report) = convert(name, ConvertOptions { weights, group_size: 32, ..Default::default() });
        assert_eq!(report.formats.get("ternary"), Some(&8), "{name}: {:?}", report.formats);
        let m = e.llava().unwrap();
        assert_eq!(m.lm.embed.w.format(), wte, "{name}: wte");
        assert_eq!(m.tower.layers[0].q.w.format(), WeightFormat::Int8, "{name}: tower");
        assert!(!report.formats.contains_key("f16"), "{name}: projector f32 for BitNet: {:?}", report.formats);
        for case in g["cases"].as_array().unwrap() {
            let prompt = ids(&case["input_ids"]);
            e.start_with_images(&prompt, &[image(case)], params(1)).unwrap();
            let first = e.step().unwrap().unwrap().id;
            let want = ids(&case["top10_ids"]);
            let err = want
                .iter()
                .zip(floats(&case["top10_logits"]))
                .map(|(&i, w)| (e.first_logits()[i as usize] - w).abs())
                .fold(0f32, f32::max);
            println!(
                "bitnet/{} ({name}): first id {first} (reference {}), top-10 max abs error {err:.4}",
                case["name"], want[0]
            );
        }
    }
}

/// The text-only plan: a BitNet decoder's block linears are ternary whatever is asked.
#[test]
fn format_plan_for_ternary_decoders() {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap();
    let mut text_only = cfg.clone();
    for k in ["mm_vision_tower", "mm_projector_type"] {
        text_only.as_object_mut().unwrap().remove(k);
    }
    let plan = FormatPlan::from_config(&text_only);
    assert!(!plan.llava && plan.ternary_blocks);
    let opts = ConvertOptions { weights: WeightChoice::Int8, ..Default::default() };
    let mut w = Vec::new();
    let block = "model.transformer.blocks.0.ff_out.weight";
    assert_eq!(plan.format(block, &[32, 128], &opts, &mut w), WeightFormat::Ternary);
    assert_eq!(plan.format("model.transformer.wte.weight", &[50304, 32], &opts, &mut w), WeightFormat::Int8);
    let mut plain = text_only.clone();
    plain["ternary"] = Value::Bool(false);
    plain["architectures"] = serde_json::json!(["OLMoForCausalLM"]);
    plain["model_type"] = Value::from("olmo");
    let plan = FormatPlan::from_config(&plain);
    assert!(!plan.ternary_blocks);
    assert_eq!(plan.format(block, &[32, 128], &opts, &mut w), WeightFormat::Int8);
}

/// Original LLaVA's `mm_projector_type: linear` (one `nn.Linear` named `mm_projector`): the
/// fixture with its projector's first layer renamed so loads as a one-linear projector whose
/// features equal the two-layer model's first linear; a config that disagrees with the tensors
/// is an error.
#[test]
fn linear_projector_in_the_original_layout() {
    use std::collections::BTreeMap;
    use webvlm::io::Tensor;
    use webvlm::model::llava::{Llava, VisionLoadOptions};
    let ckpt = webvlm::io::open(&fixture()).unwrap();
    let mut w: BTreeMap<String, Tensor> =
        ckpt.weights.names().into_iter().map(|n| (n.clone(), ckpt.weights.load(&n).unwrap())).collect();
    let load = |cfg: &Value, src: &BTreeMap<String, Tensor>| {
        Llava::load(cfg, src, &LoadOptions::default(), &VisionLoadOptions::default())
    };
    let mlp = load(&ckpt.config, &w).unwrap();
    let mut linear_cfg = ckpt.config.clone();
    linear_cfg["mm_projector_type"] = Value::from("linear");
    assert!(load(&linear_cfg, &w).is_err(), "linear config over a two-layer projector must be refused");
    for part in ["weight", "bias"] {
        let first = w.remove(&format!("model.mm_projector.0.{part}"));
        w.remove(&format!("model.mm_projector.2.{part}"));
        if let Some(t) = first {
            w.insert(format!("model.mm_projector.{part}"), t);
        }
    }
    assert!(load(&ckpt.config, &w).is_err(), "mlp2x_gelu config without `mm_projector.2` must be refused");
    let linear = load(&linear_cfg, &w).unwrap();
    assert!(linear.projector.second.is_none() && mlp.projector.second.is_some());
    let s = mlp.cfg.vision.image_size;
    let pixels: Vec<f32> = (0..3 * s * s).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect(); // [3, s, s]
    let got = linear.tile_features(&pixels, s, s).unwrap(); // [tokens, hidden]
    let mut first_only = mlp;
    first_only.projector.second = None;
    assert_eq!(got, first_only.tile_features(&pixels, s, s).unwrap());
}

/// `webvlm generate --image --json` with the raw LLaVA-1.5 prompt (the `<image>` placeholder
/// becomes -200 as `tokenizer_image_token` does): the reference's prompt and greedy ids.
#[test]
fn cli_generate_with_image() {
    let g = golden();
    let case = &g["cases"][0];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_webvlm"))
        .args(["generate", "--json", "--max-new-tokens", "12", "--prompt", case["chat_text"].as_str().unwrap()])
        .arg("--model")
        .arg(fixture())
        .arg("--image")
        .arg(root().join(case["image"].as_str().unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prompt: Vec<i64> = doc["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    let want: Vec<i64> = case["input_ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    // The CLI reports the prompt with the placeholder expanded to one id per image token.
    let n = case["num_image_tokens"].as_u64().unwrap() as usize;
    let expanded: Vec<i64> = want.iter().flat_map(|&t| vec![t; if t == -200 { n } else { 1 }]).collect();
    let placeholder =
        |v: &[i64]| v.iter().map(|&t| if t == ORIGINAL_IMAGE_TOKEN as i64 { -200 } else { t }).collect::<Vec<_>>();
    assert_eq!(placeholder(&prompt), expanded);
    assert_eq!(ids(&doc["generated_ids"]), ids(&case["greedy_ids_stop_at_eos"]));
    assert_eq!(doc["image_tokens"], case["num_image_tokens"]);
}
