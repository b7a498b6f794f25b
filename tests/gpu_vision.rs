//! The vision tower on the GPU (src/gpu/vision.rs, src/gpu/ops_vision.rs) against the CPU
//! tower: its own kernels (patch unfold, embeddings, row copy) over odd shapes; the projected
//! features of each LLaVA fixture's tower (LLaVA-1.5, LLaVA-NeXT anyres, LLaVA-Gemma) on the
//! reference pixel values, with f32 and INT8 vision weights (INT8: against the CPU tower on the
//! same weights dequantized, and, looser, against the CPU's int8-activation path); a SigLIP-style tower (no class
//! token, patch bias, tanh GELU) with two selected layers side by side; the whole fixtures on
//! the GPU (vision + decoder) against transformers' greedy ids; and a device lost before an
//! image is encoded (the engine encodes on the CPU and answers the same); the browser's
//! awaited path (`submit_images`, read, `complete_images`, then `start_with_images`) gives the
//! same ids, reports the GPU in `timings.image_encoder`, and falls back to the CPU encoder when
//! the device is gone. Errors are the
//! normalized L2 error (`rel_err`), printed. Set WEBVLM_SKIP_GPU=1 to skip.

use crate::gpu_common;

use gpu_common::{fresh_gpu, rel_err};
use serde_json::Value;
use std::path::PathBuf;
use webvlm::engine::{Backend, ChatTurn, Engine, GenerateParams};
use webvlm::gpu::ops_vision::{copy_rows, patch_unfold, vision_embed, RowCopy};
use webvlm::gpu::vision::{FeatureSelect, GpuVision};
use webvlm::gpu::{GpuContext, Plan};
use webvlm::model::linear::Linear;
use webvlm::model::llava::{Llava, VisionLoadOptions};
use webvlm::model::LoadOptions;
use webvlm::quant::{QData, QTensor, WeightFormat};
use webvlm::rng::Rng;
use webvlm::vision::clip::{unfold_patches, EncoderLayer, TowerKind, VisionDims, VisionTower};
use webvlm::vision::image::{decode, DEFAULT_MAX_PIXELS};
use webvlm::vision::ops::Activation;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(ctx: &GpuContext, plan: &Plan, out: &wgpu::Buffer, n: usize) -> Vec<f32> {
    plan.submit(ctx);
    ctx.read_f32(out, n).unwrap()
}

#[test]
fn patch_unfold_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut rng = Rng::new(11);
    // (c, h, w, p): square and not, sides that are not multiples of p (the rest is dropped).
    for (c, h, w, p) in [(3usize, 28usize, 42usize, 14usize), (3, 17, 23, 5), (1, 6, 6, 6), (2, 33, 16, 4)] {
        let px = rng.normals(c * h * w, 0.0);
        let want = unfold_patches(&px, c, h, w, p);
        let (pb, ob) = (ctx.upload_f32("px", &px), ctx.zeros("cols", 4 * want.len() as u64));
        let plan = patch_unfold(&ctx, &pb, &ob, (c as u32, h as u32, w as u32), p as u32).unwrap();
        assert_eq!(run(&ctx, &plan, &ob, want.len()), want, "unfold [{c}, {h}, {w}] by {p}");
    }
}

#[test]
fn vision_embed_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut rng = Rng::new(12);
    for (n, d, cls) in [(17usize, 32usize, true), (25, 48, false), (577, 37, true), (2, 1, false)] {
        let patches = rng.normals((n - cls as usize) * d, 0.0);
        let (class, pos) = (rng.normals(d, 0.0), rng.normals(n * d, 0.0));
        let mut want: Vec<f32> = if cls { class.clone() } else { Vec::new() };
        want.extend(&patches);
        want.iter_mut().zip(&pos).for_each(|(x, p)| *x += p);
        let (pb, cb, qb) = (ctx.upload_f32("p", &patches), ctx.upload_f32("c", &class), ctx.upload_f32("pos", &pos));
        let xb = ctx.zeros("x", 4 * (n * d) as u64);
        let plan = vision_embed(&ctx, &pb, cls.then_some(&cb), &qb, &xb, n as u32, d as u32).unwrap();
        assert_eq!(run(&ctx, &plan, &xb, n * d), want, "embed [{n}, {d}] cls {cls}");
    }
}

#[test]
fn copy_rows_matches_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut rng = Rng::new(13);
    let (n, d, layers) = (19usize, 13usize, 3usize);
    let src = rng.normals(n * d, 0.0);
    let (sb, db) = (ctx.upload_f32("src", &src), ctx.zeros("dst", 4 * ((n - 1) * d * layers) as u64));
    for (slot, skip) in [(0usize, 1usize), (2, 1)] {
        let r = RowCopy {
            rows: (n - skip) as u32,
            cols: d as u32,
            skip: skip as u32,
            ld_src: d as u32,
            ld_dst: (d * layers) as u32,
            off: (slot * d) as u32,
        };
        let got = run(&ctx, &copy_rows(&ctx, &sb, &db, r).unwrap(), &db, (n - 1) * d * layers);
        for t in 0..n - skip {
            let row = &got[t * d * layers + slot * d..][..d];
            assert_eq!(row, &src[(t + skip) * d..(t + skip + 1) * d], "row {t} slot {slot}");
        }
    }
    let bad = RowCopy { rows: n as u32, cols: d as u32, skip: 1, ld_src: d as u32, ld_dst: d as u32, off: 0 };
    assert!(copy_rows(&ctx, &sb, &db, bad).is_err(), "reading past the source is refused");
}

fn fixture_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures/llava").join(name)
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir(name).join("golden.json")).unwrap()).unwrap()
}

/// The fixture's LLaVA model with the vision tower in `tower` (`None`: as stored).
fn load_llava(name: &str, tower: Option<WeightFormat>) -> Llava {
    let ckpt = webvlm::io::open(&fixture_dir(name)).unwrap();
    Llava::load(&ckpt.config, ckpt.weights.as_ref(), &LoadOptions::default(), &VisionLoadOptions { tower }).unwrap()
}

/// A case's tiles `[C, H, W]`, their `(H, W)` and the image's original `(height, width)`.
type Tiles = (Vec<Vec<f32>>, (usize, usize), (usize, usize));

/// Each case's reference pixel values as tiles, with the image's original size.
fn reference_tiles(name: &str, case: &Value) -> Tiles {
    let pv = &case["pixel_values"];
    let shape: Vec<usize> = pv["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let raw = std::fs::read(fixture_dir(name).join(pv["file"].as_str().unwrap())).unwrap();
    let data: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let (c, h, w) = (shape[shape.len() - 3], shape[shape.len() - 2], shape[shape.len() - 1]);
    let orig = (case["image_height"].as_u64().unwrap() as usize, case["image_width"].as_u64().unwrap() as usize);
    (data.chunks_exact(c * h * w).map(|t| t.to_vec()).collect(), (h, w), orig)
}

/// The tower's linear weights replaced by their dequantized f32 values: what the GPU computes
/// with quantized weights (f32 activations times the stored weights' values).
fn dequantize_tower(m: &mut Llava) {
    for l in &mut m.tower.layers {
        for lin in [&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.fc1, &mut l.fc2] {
            lin.w = QTensor { rows: lin.w.rows, cols: lin.w.cols, data: QData::F32(lin.w.dequantize()) };
        }
    }
}

/// Worst rel err of GPU features (each tile, then the packed image) against `cpu`'s.
fn worst_err(v: &GpuVision, m: &Llava, cpu: &Llava, name: &str) -> f32 {
    let mut worst = 0f32;
    for case in golden(name)["cases"].as_array().unwrap() {
        let (tiles, hw, orig) = reference_tiles(name, case);
        for t in &tiles {
            let want = cpu.tile_features(t, hw.0, hw.1).unwrap();
            let got = v.encode(t).unwrap();
            assert_eq!(got.len(), want.len());
            worst = worst.max(rel_err(&got, &want));
        }
        let refs: Vec<&[f32]> = tiles.iter().map(|t| t.as_slice()).collect();
        let want = cpu.image_features(&refs, hw, orig).unwrap();
        let got = v.image_features(m, &refs, hw, orig).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: packed feature count");
        worst = worst.max(rel_err(&got, &want));
    }
    worst
}

/// GPU vs CPU projected features of every case. With quantized vision weights the tight
/// bound is against the CPU tower on the dequantized weights (the same arithmetic); the CPU's
/// own quantized path, which also rounds activations to int8, is compared with `loose`.
fn compare_fixture_features(name: &str, tower: Option<WeightFormat>, loose: f32) {
    let Some(ctx) = fresh_gpu() else { return };
    let m = load_llava(name, tower);
    let v = GpuVision::for_llava(ctx, &m).unwrap();
    let mut exact = load_llava(name, tower);
    dequantize_tower(&mut exact);
    let err = worst_err(&v, &m, &exact, name);
    let err_cpu = worst_err(&v, &m, &m, name);
    println!(
        "{name} vision {tower:?}: GPU vs CPU features rel err {err:.2e} (same weights, f32 activations), \
         {err_cpu:.2e} (CPU path), {} dispatches per tile",
        v.dispatches()
    );
    assert!(err < 1e-5, "{name} {tower:?}: features differ by {err}");
    assert!(err_cpu < loose, "{name} {tower:?}: features differ from the CPU path by {err_cpu}");
}

#[test]
fn llava15_features_match_cpu() {
    compare_fixture_features("llava15-llama", None, 1e-5);
}

#[test]
fn llavanext_anyres_features_match_cpu() {
    compare_fixture_features("llavanext-mistral", None, 1e-5);
}

#[test]
fn llava_gemma_features_match_cpu() {
    compare_fixture_features("llava-gemma", None, 1e-5);
}

/// INT8 vision weights: the same weight bytes on both sides; the CPU kernels multiply
/// int8-quantized activations (blocks of 32), the GPU f32 ones.
#[test]
fn int8_vision_features_match_cpu() {
    for name in ["llava15-llama", "llavanext-mistral", "llava-gemma"] {
        compare_fixture_features(name, Some(WeightFormat::Int8), 5e-2);
    }
}

fn random_linear(rng: &mut Rng, rows: usize, cols: usize, bias: bool) -> Linear {
    let w: Vec<f32> = rng.normals(rows * cols, 0.0).iter().map(|x| x / (cols as f32).sqrt()).collect();
    Linear { w: QTensor { rows, cols, data: QData::F32(w) }, bias: bias.then(|| rng.normals(rows, 0.0)) }
}

/// A SigLIP-style tower of random weights: no class token, a patch bias, no pre-norm.
fn siglip_tower(rng: &mut Rng) -> VisionTower {
    let dims = VisionDims {
        kind: TowerKind::Siglip,
        hidden: 48,
        intermediate: 80,
        layers: 3,
        heads: 3,
        channels: 3,
        image_size: 30,
        patch_size: 6,
        act: Activation::GeluTanh,
        eps: 1e-6,
    };
    let (d, m) = (dims.hidden, dims.intermediate);
    let ln = |rng: &mut Rng| -> (Vec<f32>, Vec<f32>) {
        (rng.normals(d, 0.0).iter().map(|x| 1.0 + 0.1 * x).collect(), rng.normals(d, 0.0))
    };
    let layers = (0..dims.layers)
        .map(|_| EncoderLayer {
            ln1: ln(rng),
            q: random_linear(rng, d, d, true),
            k: random_linear(rng, d, d, true),
            v: random_linear(rng, d, d, true),
            o: random_linear(rng, d, d, true),
            ln2: ln(rng),
            fc1: random_linear(rng, m, d, true),
            fc2: random_linear(rng, d, m, true),
        })
        .collect();
    VisionTower {
        patch: random_linear(rng, d, 3 * 36, true),
        class_embedding: None,
        position: rng.normals(dims.num_positions() * d, 0.0),
        pre_norm: None,
        layers,
        dims,
        kernel: Default::default(),
        smoothed: false,
    }
}

/// SigLIP-style, hidden states 1 and 3 side by side (no projector), every row kept.
#[test]
fn siglip_two_layer_features_match_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut rng = Rng::new(21);
    let tower = siglip_tower(&mut rng);
    let s = tower.dims.image_size;
    let px = rng.normals(3 * s * s, 0.0);
    let layers = vec![1usize, 3];
    let v = GpuVision::new(ctx, &tower, None, FeatureSelect { layers: layers.clone(), skip: 0 }).unwrap();
    let hs = tower.hidden_states(&px, s, s, &layers).unwrap();
    let (n, d) = (tower.dims.num_positions(), tower.dims.hidden);
    let want: Vec<f32> = (0..n).flat_map(|t| hs.iter().flat_map(move |h| h[t * d..(t + 1) * d].to_vec())).collect();
    let got = v.encode(&px).unwrap();
    let err = rel_err(&got, &want);
    println!("SigLIP-style tower, layers {layers:?}: GPU vs CPU rel err {err:.2e}");
    assert!(err < 1e-5, "{err}");
    assert!(v.encode(&px[1..]).is_err(), "a wrong pixel count is refused");
}

/// Greedy ids of the fixture's cases with the engine on the GPU (vision and decoder there).
fn engine_ids(e: &mut Engine, name: &str) -> Vec<Vec<u32>> {
    let g = golden(name);
    let mut out = Vec::new();
    for case in g["cases"].as_array().unwrap() {
        let bytes = std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap();
        let img = decode(&bytes, DEFAULT_MAX_PIXELS).unwrap();
        let turn = ChatTurn { role: "user".into(), text: g["prompt"].as_str().unwrap().into(), images: 1 };
        let prompt = e.chat_prompt_ids_with_images(&[turn]).unwrap();
        e.reset();
        e.start_with_images(&prompt, &[img], GenerateParams { max_new_tokens: 12, ..Default::default() }).unwrap();
        let mut ids = Vec::new();
        while let Some(ev) = e.step().unwrap() {
            ids.push(ev.id);
        }
        out.push(ids);
    }
    out
}

fn golden_ids(name: &str) -> Vec<Vec<u32>> {
    let g = golden(name);
    let ids = |c: &Value| -> Vec<u32> {
        c["greedy_ids_stop_at_eos"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    g["cases"].as_array().unwrap().iter().map(ids).collect()
}

/// The whole fixture on the GPU (vision and decoder) gives transformers' greedy ids.
fn whole_fixture_on_gpu(name: &str) {
    let Some(ctx) = fresh_gpu() else { return };
    let mut e = Engine::new(webvlm::io::open(&fixture_dir(name)).unwrap(), &LoadOptions::default()).unwrap();
    e.use_gpu(ctx, None).unwrap();
    assert!(e.gpu_vision().is_some(), "images are encoded on the GPU");
    assert_eq!(engine_ids(&mut e, name), golden_ids(name), "{name}: greedy ids with vision on the GPU");
    assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
}

#[test]
fn llava15_whole_fixture_on_gpu() {
    whole_fixture_on_gpu("llava15-llama");
}

#[test]
fn llavanext_whole_fixture_on_gpu() {
    whole_fixture_on_gpu("llavanext-mistral");
}

#[test]
fn llava_gemma_whole_fixture_on_gpu() {
    whole_fixture_on_gpu("llava-gemma");
}

/// The device is gone before the image is encoded: the engine encodes on the CPU, says why,
/// and answers as transformers does.
#[test]
fn device_loss_before_encode_falls_back_to_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let name = "llava15-llama";
    let mut e = Engine::new(webvlm::io::open(&fixture_dir(name)).unwrap(), &LoadOptions::default()).unwrap();
    e.use_gpu(ctx.clone(), None).unwrap();
    ctx.destroy();
    assert_eq!(engine_ids(&mut e, name), golden_ids(name));
    assert_eq!(e.backend(), Backend::Cpu);
    assert!(e.gpu_vision().is_none());
    println!("fell back: {}", e.fallback_reason().expect("a reason"));
}

/// Greedy ids of `name`'s first case through the awaited path the browser takes: the image
/// is submitted to the GPU tower, its features read back and cached, then the run starts.
fn awaited_ids(e: &mut Engine, name: &str) -> Vec<u32> {
    let g = golden(name);
    let case = &g["cases"][0];
    let img =
        decode(&std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
    let turn = ChatTurn { role: "user".into(), text: g["prompt"].as_str().unwrap().into(), images: 1 };
    let prompt = e.chat_prompt_ids_with_images(&[turn]).unwrap();
    e.reset();
    let images = [img.clone(), img];
    if let Some(p) = e.submit_images(&images).unwrap() {
        assert_eq!(p.len(), 1, "the same image twice is submitted once");
        let read = pollster::block_on(p.read());
        e.complete_images(read).unwrap();
    }
    e.start_with_images(&prompt, &images[..1], GenerateParams { max_new_tokens: 12, ..Default::default() }).unwrap();
    let mut ids = Vec::new();
    while let Some(ev) = e.step().unwrap() {
        ids.push(ev.id);
    }
    ids
}

/// The browser's path on the GPU: same ids as transformers, the image encoded on the GPU
/// (timed), and a second submit of the cached image has nothing to do.
#[test]
fn awaited_image_encode_on_gpu_matches_golden() {
    let Some(ctx) = fresh_gpu() else { return };
    for name in ["llava15-llama", "llavanext-mistral"] {
        let mut e = Engine::new(webvlm::io::open(&fixture_dir(name)).unwrap(), &LoadOptions::default()).unwrap();
        e.use_gpu(ctx.clone(), None).unwrap();
        assert_eq!(awaited_ids(&mut e, name), golden_ids(name)[0], "{name}");
        let t = e.timings();
        println!("{name}: image encoded on {:?} in {:.1} ms", t.image_encoder, t.image_encode_ms);
        assert_eq!(t.image_encoder, Some(Backend::Gpu));
        assert!(t.image_encode_ms > 0.0);
        assert_eq!(e.backend(), Backend::Gpu, "{:?}", e.fallback_reason());
        let g = golden(name);
        let bytes = std::fs::read(root().join(g["cases"][0]["image"].as_str().unwrap())).unwrap();
        assert!(e.submit_images(&[decode(&bytes, DEFAULT_MAX_PIXELS).unwrap()]).unwrap().is_none());
    }
}

/// The device is gone before the browser's path submits the image: the CPU encodes it, the
/// engine says why, and the answer is transformers'.
#[test]
fn awaited_image_encode_falls_back_to_cpu() {
    let Some(ctx) = fresh_gpu() else { return };
    let name = "llava15-llama";
    let mut e = Engine::new(webvlm::io::open(&fixture_dir(name)).unwrap(), &LoadOptions::default()).unwrap();
    e.use_gpu(ctx.clone(), None).unwrap();
    ctx.destroy();
    assert_eq!(awaited_ids(&mut e, name), golden_ids(name)[0]);
    assert_eq!(e.backend(), Backend::Cpu);
    assert_eq!(e.timings().image_encoder, Some(Backend::Cpu));
    println!("fell back: {}", e.fallback_reason().expect("a reason"));
}

/// `bench --backend gpu`'s image prompt timing on the NeXT fixture: the split is reported,
/// the image went through the GPU tower in several tiles, and fresh images missed the cache.
#[test]
fn bench_image_ttft_splits_encode_and_prefill() {
    let Some(ctx) = fresh_gpu() else { return };
    let dir = fixture_dir("llavanext-mistral");
    let mut e = Engine::new(webvlm::io::open(&dir).unwrap(), &LoadOptions::default()).unwrap();
    e.use_gpu(ctx, None).unwrap();
    let r = webvlm::bench_gpu_vision::image_ttft(&mut e, 2).unwrap().expect("a LLaVA model");
    webvlm::bench_gpu_vision::print_ttft("llavanext-mistral", &r);
    assert!(r.vision_on_gpu && r.tiles > 1, "{r:?}");
    assert!(r.image_encode_ms > 0.0 && r.prefill_ms > 0.0, "{r:?}");
    assert!((r.ttft_ms - r.image_encode_ms - r.prefill_ms).abs() < 1e-9);
    assert!(r.prompt_tokens > e.llava().unwrap().cfg.tile_tokens(), "{r:?}");
}
