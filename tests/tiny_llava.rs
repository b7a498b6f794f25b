//! The page's default model (issue 6): the tiny LLaVA trained by `tools/train_tiny_llava.py` on
//! `tools/vqa_gen.py` scenes, shipped converted in `www/models/` (INT4 from the f32 variant,
//! ternary from the BitNet b1.58 variant). Checked against references no one here wrote:
//! - `tests/fixtures/tinyllava/{f32,bitnet}/golden.json`: transformers' greedy ids on the exported
//!   f32 checkpoint, and `tests/fixtures/bitnet/reference.py` on the exported BitNet checkpoint
//!   (three held-out cases, written by `tools/goldens.py` at the end of training);
//! - `tests/fixtures/tinyllava/heldout/questions.jsonl`: the generator's own answer key on a
//!   held-out split that training never saw (`tools/vqa_gen.py --split heldout`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use webvlm::engine::{Engine, GenerateParams};
use webvlm::model::LoadOptions;
use webvlm::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn engine(model: &str) -> Engine {
    let dir = root().join("www/models").join(model);
    Engine::new(webvlm::io::open(&dir).unwrap(), &LoadOptions::default()).unwrap()
}

fn image(path: &Path) -> Image {
    decode(&std::fs::read(path).unwrap(), DEFAULT_MAX_PIXELS).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32 as u32).collect()
}

/// Greedy answer ids for `question` about `img` (the LLaVA-1.5 template the model was trained on),
/// up to and without the end-of-turn token.
fn answer(e: &mut Engine, img: &Image, question: &str, max_new_tokens: usize) -> Vec<u32> {
    let prompt = e.encode_with_images(&format!("USER: <image>\n{question} ASSISTANT:"), true).unwrap();
    e.start_with_images(&prompt, std::slice::from_ref(img), GenerateParams { max_new_tokens, ..Default::default() })
        .unwrap();
    let mut out = Vec::new();
    while let Some(ev) = e.step().unwrap() {
        out.push(ev.id);
    }
    out
}

/// Below this top-1/top-2 gap (logits) in the reference, a quantized model may fairly pick the
/// other token; the comparison stops before such a step.
const NEAR_TIE: f32 = 0.3;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap() as f32).collect()).unwrap_or_default()
}

/// The shipped model's greedy ids against each golden case: equal up to eos, or up to the first
/// step where the reference itself was within [`NEAR_TIE`] of another token; at least 4 ids.
fn check_goldens(model: &str, variant: &str) {
    let dir = root().join("tests/fixtures/tinyllava").join(variant);
    let g: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let eos = g["eos_token_id"].as_u64().unwrap() as u32;
    let mut e = engine(model);
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want = ids(&case["greedy_ids"]);
        let margins = floats(&case["margins"]);
        let img = image(&dir.join(case["image"].as_str().unwrap()));
        let got = answer(&mut e, &img, case["question"].as_str().unwrap(), want.len());
        println!("{model}/{name}: {:?}", e.tokenizer().decode(&got).unwrap());
        let mut checked = 0;
        for (i, &w) in want.iter().enumerate() {
            if w == eos || margins.get(i).is_some_and(|&m| m < NEAR_TIE) {
                break;
            }
            assert_eq!(got.get(i), Some(&w), "{model}/{name}: greedy id {i} differs from the reference's");
            checked += 1;
        }
        println!("{model}/{name}: {checked} ids equal the reference's");
        assert!(checked >= 4, "{model}/{name}: only {checked} ids compared");
    }
}

/// Lower case, `color`/`center` spelled as the generator does, punctuation dropped.
fn normalize(s: &str) -> String {
    let clean: String = s.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    let words: Vec<&str> = clean
        .split_whitespace()
        .map(|w| match w {
            "color" => "colour",
            "center" => "centre",
            w => w,
        })
        .collect();
    words.join(" ")
}

/// Share of the committed held-out questions answered exactly (after [`normalize`]); per kind.
fn heldout_accuracy(model: &str) -> f64 {
    let dir = root().join("tests/fixtures/tinyllava/heldout");
    let text = std::fs::read_to_string(dir.join("questions.jsonl")).unwrap();
    let mut e = engine(model);
    let (mut right, mut total) = (0usize, 0usize);
    let mut kinds: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut cache: Option<(String, Image)> = None;
    for line in text.lines() {
        let q: Value = serde_json::from_str(line).unwrap();
        let path = q["image"].as_str().unwrap().to_string();
        if cache.as_ref().map(|(p, _)| p != &path).unwrap_or(true) {
            cache = Some((path.clone(), image(&dir.join(&path))));
        }
        let img = &cache.as_ref().unwrap().1;
        let got = answer(&mut e, img, q["question"].as_str().unwrap(), 64);
        let said = e.tokenizer().decode(&got).unwrap();
        let ok = normalize(&said) == normalize(q["answer"].as_str().unwrap());
        let k = kinds.entry(q["kind"].as_str().unwrap().to_string()).or_default();
        k.0 += ok as usize;
        k.1 += 1;
        right += ok as usize;
        total += 1;
    }
    assert!(total >= 200, "the held-out split has {total} questions; issue 6 asks for at least 200");
    let per: Vec<String> = kinds.iter().map(|(k, (r, n))| format!("{k} {r}/{n}")).collect();
    let acc = right as f64 / total as f64;
    println!("{model}: held-out {right}/{total} = {:.1}% ({})", 100.0 * acc, per.join(", "));
    acc
}

#[test]
fn int4_matches_transformers_goldens() {
    check_goldens("tiny-llava-int4", "f32");
}

#[test]
fn ternary_matches_bitnet_reference_goldens() {
    check_goldens("tiny-llava-ternary", "bitnet");
}

#[test]
fn int4_answers_heldout_questions() {
    let acc = heldout_accuracy("tiny-llava-int4");
    assert!(acc >= 0.85, "INT4 held-out accuracy {acc:.3} < 0.85");
}

#[test]
fn ternary_answers_heldout_questions() {
    let acc = heldout_accuracy("tiny-llava-ternary");
    assert!(acc >= 0.85, "ternary held-out accuracy {acc:.3} < 0.85");
}

/// The chat-template path (the page's and the package's) marks the image as the text path does:
/// `<image>` for the HF layout, LLaVA's -200 placeholder for the original (BitNet) layout.
#[test]
fn chat_prompts_mark_the_image_as_raw_prompts_do() {
    use webvlm::engine::ChatTurn;
    for model in ["tiny-llava-int4", "tiny-llava-ternary"] {
        let e = engine(model);
        let turn = ChatTurn { role: "user".into(), text: "What colour is the star?".into(), images: 1 };
        let chat = e.chat_prompt_ids_with_images(&[turn]).unwrap();
        let raw = e.encode_with_images("USER: <image>\nWhat colour is the star? ASSISTANT:", true).unwrap();
        assert_eq!(chat, raw, "{model}: chat template vs the training prompt");
    }
}

#[test]
fn normalize_ignores_case_punctuation_and_spelling() {
    assert_eq!(normalize("The circle is in the center."), normalize("the circle is in the centre"));
    assert_ne!(normalize("The circle is red."), normalize("The circle is blue."));
}
