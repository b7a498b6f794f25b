//! A LLaVA model resident on the GPU (lavapipe; WEBVLM_SKIP_GPU=1 skips): streamed from its
//! shards, the vision tower's and projector's matrices and the text embedding go straight to
//! GPU buffers and memory keeps none of them (byte counts printed); image prompts are merged
//! on the GPU (`shaders/llava_merge.wgsl`, checked against the CPU reference and, through the
//! decoder, against the CPU-embedded prompt); the greedy ids with an image are the CPU
//! engine's (the LLaVA-1.5 fixture, and NeXT, Gemma and SigLIP fixtures converted here); and
//! after a GPU failure — the device lost mid-answer, before an image is encoded, or as the
//! load finishes — the engine reads those tensors again (from the folder, or, as the browser
//! does, from the shards into in-memory weights) and goes on on the CPU with the same ids.

use crate::gpu_common;
use gpu_common::{fresh_gpu, fresh_gpu_with, rel_err, run_losing_device};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use webvlm::convert::{ConvertOptions, WeightChoice};
use webvlm::engine::stream::{load_dir, StreamLoader};
use webvlm::engine::{Backend, ChatTurn, Engine, GenerateParams};
use webvlm::gpu::decoder::{GpuDecoder, GpuInput, GpuOutput};
use webvlm::gpu::ops_vision::llava_merge;
use webvlm::gpu::stream::GpuUpload;
use webvlm::gpu::{GpuContext, GpuOptions};
use webvlm::io::manifest::{Manifest, ManifestLoader, SkipSink};
use webvlm::model::slots::Slot;
use webvlm::model::LoadOptions;
use webvlm::rng::Rng;
use webvlm::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_model() -> PathBuf {
    let p = root().join(".cache/models/llava15-llama-fixture");
    assert!(p.join("manifest.json").exists(), "{} is missing: run `npm test` once (set-up converts it)", p.display());
    p
}

fn cpu_engine(dir: &Path) -> Engine {
    Engine::new(webvlm::io::open(dir).unwrap(), &LoadOptions::default()).unwrap()
}

fn streamed(dir: &Path, ctx: Arc<GpuContext>) -> Engine {
    load_dir(dir, LoadOptions::default(), &Default::default(), Some((ctx, None))).unwrap()
}

/// The prompt of `golden`'s fixture (one image) and the image of its case `case`.
fn image_prompt(e: &Engine, golden: &Path, case: usize) -> (Vec<u32>, Image) {
    let g: Value = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    let bytes = std::fs::read(root().join(g["cases"][case]["image"].as_str().unwrap())).unwrap();
    let turn = ChatTurn { role: "user".into(), text: g["prompt"].as_str().unwrap().into(), images: 1 };
    (e.chat_prompt_ids_with_images(&[turn]).unwrap(), decode(&bytes, DEFAULT_MAX_PIXELS).unwrap())
}

fn llava15_prompt(e: &Engine, case: usize) -> (Vec<u32>, Image) {
    image_prompt(e, &root().join("tests/fixtures/llava/llava15-llama/golden.json"), case)
}

/// Bytes the CPU path holds for the GPU-only tower and projector matrices of `e`.
fn vision_matrix_bytes(e: &Engine, cpu: &Engine) -> usize {
    let m = cpu.llava().unwrap();
    let vision =
        e.gpu_only_tensors().values().filter(|s| matches!(s, Slot::Vision(..) | Slot::Patch | Slot::Projector(_)));
    vision.map(|&s| m.matrix(s).unwrap().nbytes()).sum()
}

/// The tower's and projector's matrices and the embedding are on the GPU only: memory holds
/// the norms, biases and position embeddings, exactly the CPU path's bytes less those matrices.
fn assert_resident(e: &Engine, cpu: &Engine) {
    let m = e.llava().unwrap();
    let tower = m.tower.layers.len() * 6 + 1 + 1 + usize::from(m.projector.second.is_some());
    let decoder = 7 * e.config().num_hidden_layers + 1 + usize::from(m.lm.lm_head.is_some());
    assert_eq!(e.gpu_only_tensors().len(), tower + decoder, "{:?}", e.gpu_only_tensors().values());
    assert!(m.lm.embed.w.is_placeholder() && !m.has_cpu_vision());
    let (held, whole) = (e.vision_cpu_bytes(), cpu.vision_cpu_bytes());
    println!("vision + projector bytes in memory: {held} resident vs {whole} on the CPU path");
    assert_eq!(held, whole - vision_matrix_bytes(e, cpu), "only the small tensors stay");
    let (dec, dec_whole) = (e.decoder_cpu_bytes(), cpu.decoder_cpu_bytes());
    println!("decoder bytes in memory (embedding included): {dec} resident vs {dec_whole}");
    assert!(dec * 50 < dec_whole, "{dec} bytes of decoder weights stayed in memory");
}

/// `llava_merge` against the CPU reference (the rows `Llava::embed_with_images` writes) over
/// odd shapes, with rows left alone, features taken out of order and a feature table larger
/// than needed.
#[test]
fn llava_merge_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut rng = Rng::new(21);
    for (n, d, k) in [(7usize, 5usize, 3usize), (300, 33, 120), (1, 1, 1), (513, 64, 2), (9, 17, 0)] {
        let x = rng.normals(n * d, 0.0); // [n, d] gathered token rows
        let feats = rng.normals(k.max(1) * d, 0.0); // [k, d]
        let row_of: Vec<u32> =
            (0..n).map(|r| if k > 0 && r % 3 != 1 { ((r * 7) % k) as u32 } else { u32::MAX }).collect();
        let mut want = x.clone();
        for (r, &f) in row_of.iter().enumerate() {
            if f != u32::MAX {
                want[r * d..(r + 1) * d].copy_from_slice(&feats[f as usize * d..(f as usize + 1) * d]);
            }
        }
        let (xb, fb) = (ctx.upload_f32("x", &x), ctx.upload_f32("feats", &feats));
        let mb = ctx.upload("row_of", bytemuck::cast_slice(&row_of));
        let plan = llava_merge(&ctx, &fb, &mb, &xb, n as u32, d as u32).unwrap();
        plan.submit(&ctx);
        assert_eq!(ctx.read_f32(&xb, n * d).unwrap(), want, "merge [{n}, {d}] with {k} feature rows");
    }
}

/// The last row's logits of `input` after what `dec` holds.
fn logits(dec: &mut GpuDecoder, ctx: &GpuContext, input: GpuInput) -> Vec<f32> {
    match pollster::block_on(dec.submit(input).unwrap().read(ctx)).unwrap() {
        GpuOutput::Logits(l) => l,
        GpuOutput::Token(t) => panic!("a token {t} where logits were due"),
    }
}

/// Through the decoder: a prompt with image rows merged on the GPU gives the logits of the
/// same prompt embedded on the CPU (`embed_with_images`), exactly, also when 1 MiB bindings
/// split the prompt into chunks across the image; and the CPU forward's logits closely.
#[test]
fn merged_prompt_matches_cpu_embeds() {
    let Some(ctx) = fresh_gpu_with(&GpuOptions { max_storage_binding: Some(1 << 20), ..Default::default() }) else {
        return;
    };
    let cpu = cpu_engine(&fixture_model());
    let m = cpu.llava().unwrap();
    let (ids, _) = llava15_prompt(&cpu, 0);
    let (d, img) = (m.cfg.text.hidden_size, m.cfg.image_token_id);
    let counts = [m.cfg.tile_tokens()];
    let ids = m.expand_image_tokens(&ids, &counts).unwrap();
    let feats = Rng::new(5).normals(counts[0] * d, 0.0); // [tokens, hidden]
    let x = m.embed_with_images(&ids, &[&feats]).unwrap(); // [n, hidden]
    let mut rows = feats.chunks_exact(d);
    let merged: Vec<Option<&[f32]>> = ids.iter().map(|&t| if t == img { rows.next() } else { None }).collect();
    let safe: Vec<u32> = ids.iter().map(|&t| if t == img { 0 } else { t }).collect();
    let mut dec = GpuDecoder::new(ctx.clone(), &m.lm, 512, None).unwrap();
    let want = logits(&mut dec, &ctx, GpuInput::Embeds(&x));
    dec.truncate(0);
    let got = logits(&mut dec, &ctx, GpuInput::Merged { ids: &safe, rows: &merged });
    assert_eq!(got, want, "merged on the GPU vs embedded on the CPU, {} rows", ids.len());
    let mut kv = m.lm.new_cache(512);
    let reference = m.forward_embeds(x, ids.len(), &mut kv).unwrap();
    let err = rel_err(&got, &reference);
    println!("merged prompt of {} rows: logits rel err {err:.2e} against the CPU forward", ids.len());
    assert!(err < 1e-4, "{err}");
}

/// Streamed: nothing but small tensors in memory (the tower's unused last layer and
/// `post_layernorm` dropped as they arrive), the CPU engine's ids with an image.
#[test]
fn llava_streamed_resident_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = fixture_model();
    let manifest = Manifest::parse(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let unused = GpuUpload::plan(ctx.clone(), &manifest, None, None).unwrap().unused;
    println!("dropped at load: {unused:?}");
    let last = |n: &String| n.contains("encoder.layers.2.") || n.contains("post_layernorm.");
    assert!(unused.len() == 16 + 2 && unused.iter().all(last), "layer 2 of 3 is not read (feature layer -2)");
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava15_prompt(&cpu, 0);
    let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 10, None);
    let mut e = streamed(&dir, ctx);
    assert_resident(&e, &cpu);
    assert_eq!(
        run_losing_device(&mut e, &prompt, &[img], 10, None),
        want,
        "greedy ids with an image, resident on the GPU"
    );
    assert_eq!(e.timings().image_encoder, Some(Backend::Gpu));
    assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
}

/// The device lost mid-answer: the tensors come back from the folder, the answer goes on on
/// the CPU with the same ids, and a new image is then encoded by the refilled CPU tower.
#[test]
fn llava_device_loss_mid_answer_reloads_everything() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = fixture_model();
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava15_prompt(&cpu, 0);
    let (_, other) = llava15_prompt(&cpu, 1);
    let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 10, None);
    let want_other = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&other), 6, None);
    let mut e = streamed(&dir, ctx.clone());
    assert_eq!(run_losing_device(&mut e, &prompt, &[img], 10, Some((&ctx, 3))), want);
    assert_eq!(e.backend(), Backend::Cpu);
    println!("fell back: {}", e.fallback_reason().expect("a reason"));
    assert!(e.gpu_only_tensors().is_empty());
    assert_eq!(e.vision_cpu_bytes(), cpu.vision_cpu_bytes(), "the tower and projector are back in memory");
    assert_eq!(e.decoder_cpu_bytes(), cpu.decoder_cpu_bytes(), "the decoder and embedding are back");
    assert_eq!(run_losing_device(&mut e, &prompt, &[other], 6, None), want_other, "a new image on the CPU tower");
    assert_eq!(e.timings().image_encoder, Some(Backend::Cpu));
}

/// The device is gone before the image is encoded: the tower comes back from the folder, the
/// CPU encodes the image and answers the same.
#[test]
fn llava_gpu_vision_failure_reloads_the_tower() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = fixture_model();
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava15_prompt(&cpu, 0);
    let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 8, None);
    let mut e = streamed(&dir, ctx.clone());
    ctx.destroy();
    assert_eq!(run_losing_device(&mut e, &prompt, &[img], 8, None), want);
    assert_eq!((e.backend(), e.timings().image_encoder), (Backend::Cpu, Some(Backend::Cpu)));
    assert_eq!(e.vision_cpu_bytes(), cpu.vision_cpu_bytes());
}

/// The device lost after the shards streamed, before `finish` (backend `auto`).
fn load_then_lose(dir: &Path, ctx: &Arc<GpuContext>) -> Engine {
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut loader = StreamLoader::new(&manifest, LoadOptions::default(), Some((ctx.clone(), None))).unwrap();
    loader.set_cpu_fallback(true);
    for (i, s) in loader.manifest().shards.clone().iter().enumerate() {
        loader.add_shard(i, &std::fs::read(dir.join(&s.file)).unwrap()).unwrap();
    }
    ctx.destroy();
    let tok = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    loader.finish(tok, &Default::default()).expect("auto falls back instead of failing")
}

/// The browser's reload: each shard holding a GPU-only tensor read again, only those tensors
/// decoded (`wasm.rs` `reload_weights`).
fn shard_weights(dir: &Path, e: &Engine) -> webvlm::io::manifest::MemWeights {
    let keep: BTreeSet<String> = e.gpu_only_tensors().keys().cloned().collect();
    let mut loader = ManifestLoader::new(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    for (i, s) in loader.manifest().shards.clone().iter().enumerate() {
        let keep = |n: &str| keep.contains(n);
        let mut skip = SkipSink { keep: &keep };
        loader.add_shard_into(i, &std::fs::read(dir.join(&s.file)).unwrap(), Some(&mut skip)).unwrap();
    }
    loader.into_weights()
}

/// `auto` with the GPU failing as the load finishes: the engine is on the CPU wanting the
/// tower, projector and embedding too; without a source an image is a clear error, and with
/// the shards read again the answer is the CPU engine's.
#[test]
fn llava_auto_fallback_at_finish_reads_vision_again() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = fixture_model();
    let mut cpu = cpu_engine(&dir);
    let (prompt, img) = llava15_prompt(&cpu, 0);
    let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 8, None);
    let mut e = load_then_lose(&dir, &ctx);
    println!("fell back at load: {}", e.fallback_reason().expect("a reason"));
    assert!(e.needs_weights() && e.vision_cpu_bytes() * 10 < cpu.vision_cpu_bytes());
    let err = e.start_with_images(&prompt, std::slice::from_ref(&img), GenerateParams::default()).unwrap_err();
    assert!(err.to_string().contains("no source"), "{err}");
    let weights = shard_weights(&dir, &e);
    e.fill_weights(&weights).unwrap();
    assert!(!e.needs_weights());
    assert_eq!(e.vision_cpu_bytes(), cpu.vision_cpu_bytes());
    assert_eq!(run_losing_device(&mut e, &prompt, &[img], 8, None), want);
}

/// NeXT (tiles, `image_newline`), Gemma (the embedding scale over merged features, tied head)
/// and SigLIP (patch bias, no class token) fixtures converted (f32, f16 projector), streamed
/// resident: the CPU engine's greedy ids with an image, then the same after a device loss.
#[test]
fn converted_fixtures_resident_match_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    for name in ["llavanext-mistral", "llava-gemma", "llava-siglip"] {
        let fixture = root().join("tests/fixtures/llava").join(name);
        let out = std::env::temp_dir().join(format!("webvlm-resident-{name}"));
        let opts = ConvertOptions {
            weights: WeightChoice::F32,
            vision_weights: Some(WeightChoice::F32),
            smooth_alpha: None,
            force: true,
            ..Default::default()
        };
        webvlm::convert::convert(&fixture, &out, &opts, &mut |_| {}).unwrap();
        let mut cpu = cpu_engine(&out);
        let (prompt, img) = image_prompt(&cpu, &fixture.join("golden.json"), 0);
        let want = run_losing_device(&mut cpu, &prompt, std::slice::from_ref(&img), 8, None);
        let mut e = streamed(&out, ctx.clone());
        assert_resident(&e, &cpu);
        assert_eq!(
            run_losing_device(&mut e, &prompt, std::slice::from_ref(&img), 8, None),
            want,
            "{name}: resident on the GPU"
        );
        assert_eq!(e.backend(), Backend::Gpu, "{name}: {:?}", e.fallback_reason());
        let lose = fresh_gpu().unwrap();
        let mut e = streamed(&out, lose.clone());
        assert_eq!(
            run_losing_device(&mut e, &prompt, &[img], 8, Some((&lose, 2))),
            want,
            "{name}: after a device loss"
        );
        assert_eq!(e.backend(), Backend::Cpu);
        println!("{name}: {} ids on the GPU and after a device loss", want.len());
    }
}
