//! Weights streamed to the GPU shard by shard (lavapipe in CI): a converted model loaded with
//! its decoder's matrices only on the GPU gives the CPU path's greedy ids (SmolLM2 INT4 and
//! the LLaVA-1.5 fixture with an image) while the CPU keeps none of those matrices; a model
//! over the budget is refused before any shard is read; a device destroyed mid-answer goes on
//! on the CPU after the weights are read again from the shards, and without any source says
//! so. Set WEBVLM_SKIP_GPU=1 where no Vulkan driver exists.

use crate::gpu_common;
use gpu_common::{fresh_gpu, run_losing_device};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use webvlm::engine::stream::{load_dir, StreamLoader};
use webvlm::engine::{Backend, ChatTurn, Engine, GenerateParams};
use webvlm::gpu::GpuContext;
use webvlm::model::LoadOptions;
use webvlm::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model(name: &str) -> PathBuf {
    let p = root().join(".cache/models").join(name);
    assert!(p.join("manifest.json").exists(), "{} is missing: run `npm test` once (set-up converts it)", p.display());
    p
}

fn cpu_engine(dir: &Path) -> Engine {
    Engine::new(webvlm::io::open(dir).unwrap(), &LoadOptions::default()).unwrap()
}

fn streamed(dir: &Path, ctx: Arc<GpuContext>) -> Engine {
    load_dir(dir, LoadOptions::default(), &Default::default(), Some((ctx, None))).unwrap()
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams { max_new_tokens: n, ..Default::default() }
}

/// The decoder's matrices are on the GPU only: the CPU holds the norms, a few KiB.
fn assert_gpu_only(e: &Engine, cpu: &Engine, matrices: usize) {
    let (held, whole) = (e.decoder_cpu_bytes(), cpu.decoder_cpu_bytes());
    let on_gpu = e.gpu_decoder().map(|d| d.weight_bytes()).unwrap_or(0);
    println!("decoder bytes in memory: {held} streamed vs {whole} on the CPU path; {on_gpu} on the GPU");
    assert_eq!(e.gpu_only_tensors().len(), matrices);
    assert!(held * 50 < whole, "{held} bytes of decoder weights stayed in memory");
    assert_eq!(e.backend(), Backend::Gpu);
}

#[test]
fn smollm2_int4_streamed_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("smollm2-135m-int4");
    let mut cpu = cpu_engine(&dir);
    let prompt = cpu.tokenizer().encode("The capital of France is", true).unwrap();
    let want = run_losing_device(&mut cpu, &prompt, &[], 8, None);
    let mut e = streamed(&dir, ctx);
    let layers = e.config().num_hidden_layers;
    assert_gpu_only(&e, &cpu, 7 * layers + 1); // tied: the embedding is the head
    assert_eq!(run_losing_device(&mut e, &prompt, &[], 8, None), want, "greedy ids, weights streamed to the GPU");
    assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
}

fn llava_prompt(e: &Engine) -> (Vec<u32>, Image) {
    let golden = root().join("tests/fixtures/llava/llava15-llama/golden.json");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    let case = &g["cases"][0];
    let bytes = std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap();
    let img = decode(&bytes, DEFAULT_MAX_PIXELS).unwrap();
    let turn = ChatTurn { role: "user".into(), text: g["prompt"].as_str().unwrap().into(), images: 1 };
    (e.chat_prompt_ids_with_images(&[turn]).unwrap(), img)
}

/// LLaVA: the decoder's block linears, head and embedding stream to the GPU, and so do the
/// vision tower's and projector's matrices (`tests/gpu_resident.rs` checks the bytes).
#[test]
fn llava_fixture_streamed_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("llava15-llama-fixture");
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava_prompt(&cpu);
    let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 10, None);
    let mut e = streamed(&dir, ctx);
    let layers = e.config().num_hidden_layers;
    let vision = e.llava().unwrap().tower.layers.len() * 6 + 3; // + patch, projector's two
    assert_eq!(e.gpu_only_tensors().len(), 7 * layers + 2 + vision);
    assert!(e.model().embed.w.rows > 0 && e.model().embed.w.is_placeholder());
    assert_eq!(
        run_losing_device(&mut e, &prompt, &[img], 10, None),
        want,
        "greedy ids with an image, weights streamed"
    );
    assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
}

/// The budget check runs from the manifest alone, before any shard is read or buffer made.
#[test]
fn model_over_the_budget_is_refused_before_loading() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("smollm2-135m-int4");
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let err = StreamLoader::new(&manifest, LoadOptions::default(), Some((ctx.clone(), Some(16 << 20))))
        .err()
        .expect("a 16 MiB budget is too small")
        .to_string();
    println!("{err}");
    assert!(err.contains("budget") && err.contains("MiB"), "{err}");
    let fits = StreamLoader::new(&manifest, LoadOptions::default(), Some((ctx, Some(512 << 20)))).unwrap();
    assert!(fits.on_gpu());
}

/// Device destroyed mid-answer: the engine reads the decoder's weights again from the shards
/// and the answer goes on on the CPU with the all-CPU tokens; the next turn stays there.
#[test]
fn device_loss_reloads_weights_and_goes_on_on_the_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("smollm2-135m-int4");
    let mut cpu = cpu_engine(&dir);
    let prompt = cpu.tokenizer().encode("Once upon a time", true).unwrap();
    let want = run_losing_device(&mut cpu, &prompt, &[], 10, None);
    let mut e = streamed(&dir, ctx.clone());
    assert_eq!(run_losing_device(&mut e, &prompt, &[], 10, Some((&ctx, 3))), want);
    assert_eq!(e.backend(), Backend::Cpu);
    println!("fell back: {}", e.fallback_reason().expect("a reason"));
    assert!(e.gpu_only_tensors().is_empty());
    assert_eq!(e.decoder_cpu_bytes(), cpu.decoder_cpu_bytes(), "the whole decoder is back in memory");
    assert_eq!(run_losing_device(&mut e, &prompt, &[], 3, None), want[..3]);
}

/// The same loss with the LLaVA fixture and an image: the replay splices the image features in.
#[test]
fn llava_device_loss_reloads_weights() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("llava15-llama-fixture");
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava_prompt(&cpu);
    let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 10, None);
    let mut e = streamed(&dir, ctx.clone());
    assert_eq!(run_losing_device(&mut e, &prompt, &[img], 10, Some((&ctx, 2))), want);
    assert_eq!(e.backend(), Backend::Cpu);
}

/// Without a source for the weights, a device loss is an error that says so (no panic).
#[test]
fn device_loss_without_a_source_is_a_clear_error() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = model("smollm2-135m-int4");
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut loader = StreamLoader::new(&manifest, LoadOptions::default(), Some((ctx.clone(), None))).unwrap();
    for (i, s) in loader.manifest().shards.clone().iter().enumerate() {
        loader.add_shard(i, &std::fs::read(dir.join(&s.file)).unwrap()).unwrap();
    }
    let tok = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let mut e = loader.finish(tok, &Default::default()).unwrap();
    let prompt = e.tokenizer().encode("Hello", true).unwrap();
    e.start(&prompt, greedy(5)).unwrap();
    e.step().unwrap();
    ctx.destroy();
    let err = e.step().unwrap_err().to_string();
    println!("{err}");
    assert!(err.contains("lived only there") && err.contains("no source"), "{err}");
    assert_eq!(e.backend(), Backend::Cpu);
}

/// Uploads go through the queue in bounded pieces (what the browser does so wasm memory holds
/// no mapped copy): odd lengths and chunk sizes read back byte for byte, zeros after.
#[test]
fn chunked_writes_read_back_exactly() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut rng = webvlm::rng::Rng::new(7);
    for (len, chunk) in [(1001usize, 64usize), (4096, 4096), (3, 8), (70_001, 1000), (12, 5)] {
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next_u32() & 0xff) as u8).collect();
        let buf = ctx.zeros("chunked", len as u64 + 16);
        webvlm::gpu::weights::write_chunked(&ctx, &buf, &bytes, chunk);
        let back = ctx.read(&buf, (len.div_ceil(4) * 4 + 16) as u64).unwrap();
        assert_eq!(&back[..len], &bytes[..], "{len} bytes in pieces of {chunk}");
        assert!(back[len..].iter().all(|&b| b == 0), "zeros after {len} bytes");
    }
    ctx.take_error().unwrap();
}
