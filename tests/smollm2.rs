//! SmolLM2-135M-Instruct end to end on the real GGUF, checked against HF transformers 5.23
//! (fp32) reference outputs: prompt ids, first-step logits, greedy continuation, INT4
//! (quantized on load and through `convert`), context overflow, KV reuse, chat template.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use webvlm::chat::Message;
use webvlm::engine::{Engine, GenerateParams};
use webvlm::model::LoadOptions;
use webvlm::quant::WeightFormat;
use webvlm::Error;

const PROMPT: &str = "The capital of France is";
const PROMPT_IDS: [u32; 5] = [504, 3575, 282, 4649, 314];
const TOP5_IDS: [u32; 5] = [7042, 260, 4528, 2250, 1315];
const TOP5_LOGITS: [f32; 5] = [17.371, 14.889, 13.245, 13.009, 12.952];
const GREEDY8: [u32; 8] = [7042, 30, 198, 198, 504, 2988, 314, 42];
const INT4: WeightFormat = WeightFormat::Int4 { group: 64, sym: true };

fn gguf() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `npm test` once (its set-up step downloads the test models into .cache/models)",
        p.display()
    );
    p
}

fn load(opts: &LoadOptions) -> Engine {
    let ckpt = webvlm::io::open(&gguf()).expect("open the GGUF");
    Engine::new(ckpt, opts).expect("load SmolLM2")
}

/// The f32 engine, loaded once and shared by the tests (one at a time).
fn f32_engine() -> MutexGuard<'static, Engine> {
    static E: OnceLock<Mutex<Engine>> = OnceLock::new();
    let m = E.get_or_init(|| Mutex::new(load(&LoadOptions::default())));
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams { max_new_tokens: n, ..Default::default() }
}

fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(k);
    v
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn f32_matches_transformers() {
    let mut e = f32_engine();
    let ids = e.tokenizer().encode(PROMPT, true).unwrap();
    assert_eq!(ids, PROMPT_IDS);
    e.reset();
    let out = e.generate(&ids, greedy(8), &mut |_| true).unwrap();
    let top = top_k(e.first_logits(), 5);
    assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), TOP5_IDS);
    for ((_, got), want) in top.iter().zip(TOP5_LOGITS) {
        assert!((got - want).abs() < 0.05, "logit {got} vs reference {want}");
    }
    assert_eq!(out.generated_ids, GREEDY8);
    assert!(out.text.starts_with(" Paris.\n\nThe answer is:"), "{:?}", out.text);
    assert_eq!(out.timings.prefill_tokens, 5);
    assert_eq!(out.timings.decode_tokens, 7);
}

fn assert_paris(e: &mut Engine) {
    let out = e.generate(&PROMPT_IDS, greedy(3), &mut |_| true).unwrap();
    assert!(out.text.starts_with(" Paris"), "INT4 continuation {:?}", out.text);
}

#[test]
fn int4_quantized_on_load() {
    let mut e = load(&LoadOptions { weights: Some(INT4), context_len: None });
    assert_eq!(e.model().layers[0].q.w.format(), INT4);
    assert_eq!(e.model().embed.w.format(), INT4);
    assert_paris(&mut e);
}

#[test]
fn int4_through_convert() {
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/tmp-model/smollm2-int4-g64");
    let opts = webvlm::convert::ConvertOptions { force: true, ..Default::default() };
    webvlm::convert::convert(&gguf(), &out, &opts, &mut |_| {}).expect("convert");
    let ckpt = webvlm::io::open(&out).expect("open the converted folder");
    let mut e = Engine::new(ckpt, &LoadOptions::default()).unwrap();
    assert_eq!(e.model().layers[3].down.w.format(), INT4);
    assert_paris(&mut e);
}

#[test]
fn prompt_longer_than_context_overflows() {
    let mut e = f32_engine();
    let limit = e.context_len();
    assert_eq!(limit, 8192);
    let long: Vec<u32> = PROMPT_IDS.iter().copied().cycle().take(limit + 1).collect();
    match e.start(&long, greedy(4)) {
        Err(Error::ContextOverflow { tokens, limit: l }) => {
            assert_eq!((tokens, l), (limit + 1, limit))
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    assert!(e.step().unwrap().is_none());
}

#[test]
fn kv_reuse_matches_fresh_prefill() {
    let mut e = f32_engine();
    e.reset();
    let user = |c: &str| Message { role: "user".into(), content: c.into() };
    let mut msgs = vec![user("What is the capital of France?")];
    let p1 = e.chat_prompt_ids(&msgs).unwrap();
    let a1 = e.generate(&p1, greedy(12), &mut |_| true).unwrap();
    msgs.push(Message { role: "assistant".into(), content: a1.text.clone() });
    msgs.push(user("And of Italy?"));
    let p2 = e.chat_prompt_ids(&msgs).unwrap();
    let common = e.cached_tokens().iter().zip(&p2).take_while(|(a, b)| a == b).count();
    assert!(common >= p1.len(), "turn 2 must extend turn 1's prompt ({common} < {})", p1.len());
    e.start(&p2, greedy(4)).unwrap();
    e.step().unwrap();
    assert_eq!(e.timings().prefill_tokens, p2.len() - common);
    let reused = e.first_logits().to_vec();
    e.reset();
    e.start(&p2, greedy(4)).unwrap();
    e.step().unwrap();
    assert_eq!(e.timings().prefill_tokens, p2.len());
    let d = max_diff(&reused, e.first_logits());
    assert!(d < 1e-3, "reused-cache logits differ from a fresh prefill by {d}");
}

#[test]
fn chat_answers_paris() {
    let mut e = f32_engine();
    let msgs = [Message { role: "user".into(), content: "What is the capital of France?".into() }];
    let ids = e.chat_prompt_ids(&msgs).unwrap();
    let text = e.tokenizer().decode(&ids).unwrap();
    assert!(text.contains("user\nWhat is the capital of France?"), "{text:?}");
    let mut streamed = String::new();
    let out = e
        .generate(&ids, greedy(40), &mut |ev| {
            streamed.push_str(&ev.text);
            true
        })
        .unwrap();
    assert_eq!(streamed, out.text);
    assert!(out.text.contains("Paris"), "{:?}", out.text);
}
