//! Engine behaviour on the real SmolLM2 GGUF: stop conditions (EOS, stop strings,
//! max_new_tokens, context end, caller), streaming, seeded sampling, KV reuse and input
//! errors.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use webvlm::chat::Message;
use webvlm::engine::{Engine, GenerateParams, StopReason};
use webvlm::model::LoadOptions;
use webvlm::sampler::SamplerConfig;
use webvlm::Error;

const PROMPT_IDS: [u32; 5] = [504, 3575, 282, 4649, 314]; // "The capital of France is"

fn load(opts: &LoadOptions) -> Engine {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `npm test` once (its set-up downloads the test models)", p.display());
    Engine::new(webvlm::io::open(&p).unwrap(), opts).unwrap()
}

fn engine() -> MutexGuard<'static, Engine> {
    static E: OnceLock<Mutex<Engine>> = OnceLock::new();
    E.get_or_init(|| Mutex::new(load(&LoadOptions::default()))).lock().unwrap_or_else(|e| e.into_inner())
}

fn params(n: usize) -> GenerateParams {
    GenerateParams { max_new_tokens: n, ..Default::default() }
}

#[test]
fn max_new_tokens_and_events() {
    let mut e = engine();
    e.start(&PROMPT_IDS, params(3)).unwrap();
    let mut events = Vec::new();
    while let Some(ev) = e.step().unwrap() {
        events.push(ev);
    }
    assert_eq!(events.len(), 3);
    assert!(events[..2].iter().all(|ev| !ev.done) && events[2].done);
    assert_eq!(e.generated_ids(), events.iter().map(|ev| ev.id).collect::<Vec<_>>());
    assert_eq!(e.stop_reason_of_run(), Some(StopReason::MaxNewTokens));
    assert!(e.step().unwrap().is_none());
    // Nothing to generate: no step runs.
    e.start(&PROMPT_IDS, params(0)).unwrap();
    assert!(e.step().unwrap().is_none());
}

#[test]
fn stop_string_cuts_text() {
    let mut e = engine();
    let p = GenerateParams { stop: vec!["\n".into()], ..params(20) };
    let mut streamed = String::new();
    let out = e
        .generate(&PROMPT_IDS, p, &mut |ev| {
            streamed.push_str(&ev.text);
            true
        })
        .unwrap();
    assert_eq!(out.stop, Some(StopReason::StopString));
    assert_eq!(out.text, " Paris.");
    assert_eq!(streamed, out.text);
    assert_eq!(out.generated_ids, [7042, 30, 198]);
}

#[test]
fn chat_ends_on_eos() {
    let mut e = engine();
    let ids = e
        .chat_prompt_ids(&[Message { role: "user".into(), content: "What is the capital of France?".into() }])
        .unwrap();
    let out = e.generate(&ids, params(60), &mut |_| true).unwrap();
    assert_eq!(out.stop, Some(StopReason::Eos));
    let last = *out.generated_ids.last().unwrap();
    assert!(e.tokenizer().is_eos(last));
    assert!(!out.text.contains("<|im_end|>"));
}

#[test]
fn caller_stops_early() {
    let mut e = engine();
    let mut n = 0;
    let out = e
        .generate(&PROMPT_IDS, params(20), &mut |_| {
            n += 1;
            n < 2
        })
        .unwrap();
    assert_eq!(out.generated_ids.len(), 2);
    assert_eq!(out.stop, Some(StopReason::Caller));
}

#[test]
fn context_end_stops_generation() {
    let mut e = load(&LoadOptions { weights: None, context_len: Some(8) });
    assert_eq!(e.context_len(), 8);
    let out = e.generate(&PROMPT_IDS, params(20), &mut |_| true).unwrap();
    // 5 prompt tokens + 3 fed generated tokens fill the cache; the 4th cannot be fed.
    assert_eq!(out.generated_ids, [7042, 30, 198, 198]);
    assert_eq!(out.stop, Some(StopReason::ContextFull));
    assert_eq!(e.cached_tokens().len(), 8);
    let nine: Vec<u32> = PROMPT_IDS.iter().chain(&PROMPT_IDS[..4]).copied().collect();
    assert!(matches!(e.start(&nine, params(1)), Err(Error::ContextOverflow { tokens: 9, limit: 8 })));
}

#[test]
fn seeded_sampling_is_reproducible() {
    let mut e = engine();
    let mut run = |seed| {
        let sampling = SamplerConfig { temperature: 1.5, top_p: 0.95, top_k: 50, repetition_penalty: 1.1, seed };
        e.generate(&PROMPT_IDS, GenerateParams { sampling, ..params(24) }, &mut |_| true).unwrap().generated_ids
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
}

#[test]
fn same_prompt_reuses_cache() {
    let mut e = engine();
    e.reset();
    e.generate(&PROMPT_IDS, params(2), &mut |_| true).unwrap();
    let first = e.first_logits().to_vec();
    let out = e.generate(&PROMPT_IDS, params(2), &mut |_| true).unwrap();
    // Only the last prompt token runs again (its logits pick the first token).
    assert_eq!(out.timings.prefill_tokens, 1);
    let d = first.iter().zip(e.first_logits()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(d < 1e-3, "{d}");
}

#[test]
fn bad_prompts_are_errors() {
    let mut e = engine();
    assert!(matches!(e.start(&[], params(2)), Err(Error::Invalid(_))));
    let vocab = e.config().vocab_size as u32;
    match e.start(&[1, vocab], params(2)) {
        Err(Error::Invalid(m)) => assert!(m.contains(&vocab.to_string()), "{m}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(e.step().unwrap().is_none());
}
