//! Whether a model fits the GPU, checked before anything is allocated, and what happens when
//! it does not (lavapipe; WEBVLM_SKIP_GPU=1 skips): with a forced small
//! `maxStorageBufferBindingSize` (the device is asked for it and enforces it) matrices larger
//! than one binding are split and the streamed models still give the CPU's greedy ids
//! (SmolLM2 INT4, the LLaVA-1.5 fixture with an image encoded on the GPU); a limit below one
//! activation row is a clear error on every way onto the GPU, never a crash; the budget counts
//! the vision tower and projector and the KV cache at the requested context, and its error names
//! the sizes; and with backend `auto` a GPU failure as the load finishes (the device lost after
//! the shards streamed) builds the engine on the CPU with the decoder read again, where backend
//! `gpu` gets the error.

use crate::gpu_common;
use gpu_common::{fresh_gpu, fresh_gpu_with};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use webvlm::engine::stream::{load_dir, StreamLoader};
use webvlm::engine::{Backend, ChatTurn, Engine, GenerateParams};
use webvlm::gpu::{GpuContext, GpuOptions};
use webvlm::model::LoadOptions;
use webvlm::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};
use webvlm::Error;

fn model(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models").join(name);
    assert!(p.join("manifest.json").exists(), "{} is missing: run `npm test` once (set-up converts it)", p.display());
    p
}

fn manifest(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("manifest.json")).unwrap()
}

fn cpu_engine(dir: &Path) -> Engine {
    Engine::new(webvlm::io::open(dir).unwrap(), &LoadOptions::default()).unwrap()
}

fn binding(bytes: u64) -> Option<Arc<GpuContext>> {
    fresh_gpu_with(&GpuOptions { max_storage_binding: Some(bytes), ..Default::default() })
}

fn ids(e: &mut Engine, prompt: &[u32], images: &[Image], n: usize) -> Vec<u32> {
    e.start_with_images(prompt, images, GenerateParams { max_new_tokens: n, ..Default::default() }).unwrap();
    std::iter::from_fn(|| e.step().unwrap()).map(|ev| ev.id).collect()
}

/// The largest matrix segment of a manifest, in bytes.
fn largest_segment(dir: &Path) -> u64 {
    let m: Value = serde_json::from_str(&manifest(dir)).unwrap();
    let segs = m["tensors"].as_array().unwrap().iter().flat_map(|t| t["segments"].as_object().unwrap().values());
    segs.map(|s| s["length"].as_u64().unwrap()).max().unwrap()
}

#[test]
fn forced_small_binding_splits_smollm2_and_matches_cpu() {
    let Some(ctx) = binding(1 << 20) else { return };
    assert_eq!(ctx.max_binding(), 1 << 20, "the device took the forced limit");
    let dir = model("smollm2-135m-int4");
    let big = largest_segment(&dir);
    println!("largest segment {big} bytes over a {}-byte binding", ctx.max_binding());
    assert!(big > 4 * ctx.max_binding(), "the embedding must be split to load at all");
    let mut cpu = cpu_engine(&dir);
    let prompt = cpu.tokenizer().encode("The capital of France is", true).unwrap();
    let want = ids(&mut cpu, &prompt, &[], 6);
    let mut e = load_dir(&dir, LoadOptions::default(), &Default::default(), Some((ctx.clone(), None))).unwrap();
    assert_eq!(ids(&mut e, &prompt, &[], 6), want, "greedy ids with every matrix split per 1 MiB");
    assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
    ctx.take_error().unwrap();
}

fn llava_prompt(e: &Engine) -> (Vec<u32>, Image) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/llava/llava15-llama/golden.json")).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(root.join(g["cases"][0]["image"].as_str().unwrap())).unwrap();
    let turn = ChatTurn { role: "user".into(), text: g["prompt"].as_str().unwrap().into(), images: 1 };
    (e.chat_prompt_ids_with_images(&[turn]).unwrap(), decode(&bytes, DEFAULT_MAX_PIXELS).unwrap())
}

#[test]
fn forced_small_binding_splits_llava_and_matches_cpu() {
    let Some(ctx) = binding(1 << 20) else { return };
    let dir = model("llava15-llama-fixture");
    assert!(largest_segment(&dir) > 4 * ctx.max_binding(), "the head must be split");
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava_prompt(&cpu);
    let want = ids(&mut cpu, &prompt, std::slice::from_ref(&img), 8);
    let mut e = load_dir(&dir, LoadOptions::default(), &Default::default(), Some((ctx.clone(), None))).unwrap();
    assert_eq!(ids(&mut e, &prompt, &[img], 8), want, "greedy ids with an image, 1 MiB bindings");
    assert_eq!(e.timings().image_encoder, Some(Backend::Gpu));
    assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
}

/// A binding below one logits row (SmolLM2: 49152 × 4 bytes): refused with the sizes before
/// any shard is read, on the streamed path and on `use_gpu`, and the CPU engine still works.
#[test]
fn binding_below_one_activation_row_is_a_clear_error() {
    let Some(ctx) = binding(64 << 10) else { return };
    let dir = model("smollm2-135m-int4");
    let err = StreamLoader::new(&manifest(&dir), LoadOptions::default(), Some((ctx.clone(), None))).err().unwrap();
    println!("streamed: {err}");
    assert!(matches!(err, Error::Gpu(_)) && err.to_string().contains("65536-byte binding limit"), "{err}");
    let mut e = cpu_engine(&dir);
    let err = e.use_gpu(ctx.clone(), None).unwrap_err();
    println!("use_gpu: {err}");
    assert!(err.to_string().contains("binding limit"), "{err}");
    assert_eq!(e.backend(), Backend::Cpu);
    let prompt = e.tokenizer().encode("Hello", true).unwrap();
    assert_eq!(ids(&mut e, &prompt, &[], 2).len(), 2);
    ctx.take_error().unwrap();
}

/// The budget counts the vision tower and projector and the KV cache at the context asked for.
#[test]
fn budget_counts_vision_and_the_kv_cache_at_the_context() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("llava15-llama-fixture");
    let opts = |n| LoadOptions { context_len: Some(n), ..Default::default() };
    let plan = |n, mib: u64| StreamLoader::new(&manifest(&dir), opts(n), Some((ctx.clone(), Some(mib << 20))));
    let err = plan(512, 8).err().unwrap().to_string();
    println!("{err}");
    for part in ["decoder weights", "vision tower and projector", "KV cache for 512 positions", "8.0 MiB budget"] {
        assert!(err.contains(part), "`{part}` missing: {err}");
    }
    assert!(plan(512, 64).is_ok());
    let text = model("smollm2-135m-int4");
    let small = |n, mib: u64| {
        StreamLoader::new(&manifest(&text), opts(n), Some((ctx.clone(), Some(mib << 20))))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(small(256, 200).is_ok(), "a 256-position cache fits 200 MiB");
    let err = small(8192, 200).unwrap_err();
    println!("{err}");
    assert!(err.contains("KV cache for 8192 positions"), "{err}");
    // The same check on a model already in memory (`use_gpu`).
    let mut e = Engine::new(webvlm::io::open(&dir).unwrap(), &opts(512)).unwrap();
    assert!(e.use_gpu(ctx.clone(), Some(8 << 20)).unwrap_err().to_string().contains("vision tower"));
    assert_eq!(e.backend(), Backend::Cpu);
}

/// The device is lost after the shards streamed, before `finish` builds the decoder.
fn load_then_lose(dir: &Path, ctx: &Arc<GpuContext>, auto: bool) -> webvlm::Result<Engine> {
    let mut loader = StreamLoader::new(&manifest(dir), LoadOptions::default(), Some((ctx.clone(), None))).unwrap();
    loader.set_cpu_fallback(auto);
    for (i, s) in loader.manifest().shards.clone().iter().enumerate() {
        loader.add_shard(i, &std::fs::read(dir.join(&s.file)).unwrap()).unwrap();
    }
    ctx.destroy();
    loader.finish(std::fs::read_to_string(dir.join("tokenizer.json")).unwrap(), &Default::default())
}

#[test]
fn auto_reloads_on_the_cpu_when_the_gpu_fails_at_finish() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("smollm2-135m-int4");
    let mut cpu = cpu_engine(&dir);
    let prompt = cpu.tokenizer().encode("Once upon a time", true).unwrap();
    let want = ids(&mut cpu, &prompt, &[], 6);
    let mut e = load_then_lose(&dir, &ctx, true).expect("auto falls back instead of failing");
    println!("fell back at load: {}", e.fallback_reason().expect("a reason"));
    assert_eq!(e.backend(), Backend::Cpu);
    assert!(e.needs_weights() && e.decoder_cpu_bytes() * 50 < cpu.decoder_cpu_bytes());
    e.fill_weights(webvlm::io::open(&dir).unwrap().weights.as_ref()).unwrap();
    assert!(!e.needs_weights());
    assert_eq!(e.decoder_cpu_bytes(), cpu.decoder_cpu_bytes());
    assert_eq!(ids(&mut e, &prompt, &[], 6), want);
    // Without filling, the first step asks for the weights (the browser's path): `step`
    // reads them through the engine's reload hook, and errors clearly without one.
    let Some(ctx) = fresh_gpu() else { return };
    let mut e = load_then_lose(&dir, &ctx, true).unwrap();
    e.start(&prompt, GenerateParams::default()).unwrap();
    let err = e.step().unwrap_err().to_string();
    assert!(err.contains("no source"), "{err}");
}

#[test]
fn backend_gpu_reports_the_failure_at_finish() {
    let Some(ctx) = fresh_gpu() else { return };
    let err = load_then_lose(&model("smollm2-135m-int4"), &ctx, false).err().expect("backend gpu fails").to_string();
    println!("{err}");
    assert!(err.to_lowercase().contains("lost") || err.contains("invalid"), "{err}");
}
