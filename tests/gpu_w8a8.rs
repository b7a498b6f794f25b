//! The GPU's W8A8 path (src/gpu/linear_w8a8.rs: shaders/quantize_act_i8.wgsl,
//! shaders/gemm_w8a8.wgsl; src/gpu/vision_kernel.rs) against the CPU's (src/kernels/w8a8.rs):
//! the GEMM's integer sums equal `dot_scalar`'s exactly over odd shapes (rows, columns and
//! tokens that are not multiples of 4 or of the 64 × 64 tile, rows starting at any byte, a
//! matrix split into parts); with real scales and a bias the output matches `w8a8::matmul`;
//! the per-token quantizer writes the CPU's codes and scales (ties included); and on the
//! llava15-llama fixture converted with smoothing, the GPU tower run W8A8 gives the CPU W8A8
//! tower's hidden states and features. Errors (`rel_err`) are printed. WEBVLM_SKIP_GPU=1 skips.

use crate::gpu_common;

use gpu_common::{fresh_gpu, gpu, rel_err};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use webvlm::convert::{ConvertOptions, WeightChoice};
use webvlm::gpu::linear_w8a8::{plan_gemm_w8a8, plan_linear_w8a8, plan_quantize_act, ActI8};
use webvlm::gpu::vision::{FeatureSelect, GpuVision};
use webvlm::gpu::vision_kernel::VisionKernelMode;
use webvlm::gpu::{GpuContext, GpuMatrix};
use webvlm::kernels::w8a8::{self, dot_scalar, TokAct};
use webvlm::model::llava::{Llava, VisionLoadOptions};
use webvlm::model::LoadOptions;
use webvlm::quant::{QData, QTensor, WeightFormat};
use webvlm::rng::Rng;
use webvlm::vision::w8a8::TowerKernel;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rand_i8(rng: &mut Rng, len: usize) -> Vec<i8> {
    (0..len).map(|_| (rng.below(255) as i32 - 127) as i8).collect()
}

/// The codes of `a` as the GPU lays them out: 4 per u32, column order, `[n, ceil(cols/4)]`.
fn pack(a: &TokAct) -> Vec<u8> {
    let wpr = a.cols.div_ceil(4);
    let mut words = vec![0u32; a.n * wpr];
    for t in 0..a.n {
        for (c, &q) in a.q_tok(t).iter().enumerate() {
            words[t * wpr + c / 4] |= (q as u8 as u32) << (8 * (c % 4));
        }
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn unpack(bytes: &[u8], n: usize, cols: usize) -> Vec<i8> {
    let wpr = cols.div_ceil(4);
    (0..n).flat_map(|t| (0..cols).map(move |c| bytes[4 * (t * wpr) + c] as i8)).collect()
}

/// `[n, rows]` GPU outputs of `wq` (scales 1) times the uploaded codes of `a` (scales 1):
/// the i32 sums as f32, exact below 2^24. `max_bytes` limits a part's buffer.
fn gpu_sums(ctx: &GpuContext, wq: &[i8], rows: usize, cols: usize, a: &TokAct, max_bytes: u64) -> (Vec<f32>, usize) {
    let w = QTensor { rows, cols, data: QData::Int8 { q: wq.to_vec(), scales: vec![1.0; rows] } };
    let m = GpuMatrix::upload_with_limit(ctx, &w, "w8a8.w", max_bytes).unwrap();
    let act = ActI8 { qa: ctx.upload("qa", &pack(a)), qs: ctx.upload_f32("qs", &vec![1.0; a.n]) };
    let y = ctx.zeros("y", 4 * (a.n * rows) as u64);
    let plan = plan_gemm_w8a8(ctx, &m, None, &act, &y, a.n as u32).unwrap();
    plan.submit(ctx);
    (ctx.read_f32(&y, a.n * rows).unwrap(), m.parts.len())
}

#[test]
fn gemm_sums_equal_the_integer_reference_on_odd_shapes() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(88);
    // (rows, cols, tokens): below, at and past the 64 × 64 tile and the 32-column step.
    let shapes = [(1, 1, 1), (3, 5, 2), (7, 31, 9), (65, 33, 70), (129, 100, 3), (70, 257, 65), (33, 1030, 130)];
    for &(rows, cols, n) in &shapes {
        let wq = rand_i8(&mut rng, rows * cols);
        let a = TokAct::new(&rng.normals(n * cols, 0.2), n, cols);
        let want: Vec<f32> = (0..n)
            .flat_map(|t| {
                (0..rows).map(|r| dot_scalar(a.q_tok(t), &wq[r * cols..(r + 1) * cols]) as f32).collect::<Vec<_>>()
            })
            .collect();
        let (got, _) = gpu_sums(&ctx, &wq, rows, cols, &a, u64::MAX);
        assert_eq!(got, want, "[{rows}, {cols}] x {n} tokens: integer sums");
        // The same matrix in parts of 16 rows or fewer (each part's rows, scales, y offset).
        let limit = (16 * cols as u64).max(16);
        let (split, parts) = gpu_sums(&ctx, &wq, rows, cols, &a, limit);
        assert!(rows <= 16 || parts > 1, "[{rows}, {cols}] was not split");
        assert_eq!(split, want, "[{rows}, {cols}] x {n} tokens in {parts} parts");
    }
}

#[test]
fn extreme_codes_sum_exactly() {
    let Some(ctx) = gpu() else { return };
    // Every product ±127·127: the largest sums (|Σ| = 127² · 1000 < 2^24, exact as f32).
    let (rows, cols, n) = (5, 1000, 3);
    let wq: Vec<i8> = (0..rows * cols).map(|i| if (i / cols) % 2 == 0 { 127 } else { -127 }).collect();
    let x: Vec<f32> = (0..n * cols).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    let a = TokAct::new(&x, n, cols);
    let want: Vec<f32> = (0..n)
        .flat_map(|t| {
            (0..rows).map(|r| dot_scalar(a.q_tok(t), &wq[r * cols..(r + 1) * cols]) as f32).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(want[0].abs(), (127 * 127 * (666 - 334)) as f32);
    assert_eq!(gpu_sums(&ctx, &wq, rows, cols, &a, u64::MAX).0, want);
}

/// GPU codes of `x: [n, cols]`, as i8 `[n, cols]`, and the scales.
fn gpu_codes(ctx: &GpuContext, x: &[f32], n: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let xb = ctx.upload_f32("x", x);
    let act = ActI8::new(ctx, n, cols);
    plan_quantize_act(ctx, &xb, &act, n as u32, cols as u32).unwrap().submit(ctx);
    let bytes = ctx.read(&act.qa, 4 * (n * cols.div_ceil(4)) as u64).unwrap();
    (unpack(&bytes, n, cols), ctx.read_f32(&act.qs, n).unwrap())
}

/// The quantizer gives the CPU's codes and scales. WGSL allows its divisions 2.5 ULP, so a
/// scale may differ by that much and a code by one where `x · inv` is within a few ULP of a
/// half-integer; how many did is printed (none on lavapipe, whose division is exact).
#[test]
fn quantizer_codes_equal_the_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(89);
    let (mut off_by_one, mut exact_scales) = (0, true);
    for (n, cols) in [(1, 1), (3, 7), (5, 258), (2, 1000), (9, 4097)] {
        let mut x = rng.normals(n * cols, 0.1);
        if n > 2 {
            x[cols..2 * cols].fill(0.0); // an all-zero token
                                         // Token 2: amax 127, so inv = 1 and these are exact ties (round half to even).
            let ties = [127.0, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -126.5];
            x[2 * cols..2 * cols + ties.len().min(cols)].copy_from_slice(&ties[..ties.len().min(cols)]);
        }
        let cpu = TokAct::new(&x, n, cols);
        let (codes, scales) = gpu_codes(&ctx, &x, n, cols);
        for (g, c) in scales.iter().zip(&cpu.s) {
            assert!((g - c).abs() <= 3.0 * f32::EPSILON * c.abs(), "[{n}, {cols}] scale {g} vs {c}");
        }
        exact_scales &= scales == cpu.s;
        for (i, (&g, &c)) in codes.iter().zip(&cpu.q).enumerate() {
            if g != c {
                let t = i / cols;
                let amax = x[t * cols..(t + 1) * cols].iter().fold(0f32, |m, v| m.max(v.abs()));
                let v = x[i] * (127.0 / amax);
                let tie = (v.abs().fract() - 0.5).abs() <= 4.0 * f32::EPSILON * v.abs().max(1.0);
                assert!((g as i32 - c as i32).abs() == 1 && tie, "[{n}, {cols}] value {i}: GPU {g}, CPU {c}");
                off_by_one += 1;
            }
        }
        if n > 2 && cols >= 8 {
            assert_eq!(&codes[2 * cols..2 * cols + 8], &[127, 2, -4, 0, 0, 2, 126, -126], "ties to even");
        }
    }
    println!("quantizer: {off_by_one} codes off by one at near-ties, scales bit-identical: {exact_scales}");
}

/// Real INT8 weights (per-row scales) and a bias, from f32 activations: the GPU's two steps
/// against `kernels::w8a8::matmul` + bias.
#[test]
fn linear_w8a8_matches_cpu_matmul() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(90);
    let mut worst = 0f32;
    for (rows, cols, n) in [(37, 45, 11), (130, 258, 66), (64, 1024, 577)] {
        let w = QTensor::quantize(&rng.normals(rows * cols, 0.0), rows, cols, WeightFormat::Int8).unwrap();
        let bias = rng.normals(rows, 0.0);
        let x = rng.normals(n * cols, 0.0);
        let mut want = vec![0f32; n * rows];
        w8a8::matmul(&w, &x, n, &mut want).unwrap();
        want.chunks_exact_mut(rows).for_each(|r| r.iter_mut().zip(&bias).for_each(|(y, b)| *y += b));
        let m = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let (xb, bb, yb) = (ctx.upload_f32("x", &x), ctx.upload_f32("b", &bias), ctx.zeros("y", 4 * (n * rows) as u64));
        plan_linear_w8a8(&ctx, &m, Some(&bb), &xb, &yb, n as u32).unwrap().submit(&ctx);
        let err = rel_err(&ctx.read_f32(&yb, n * rows).unwrap(), &want);
        println!("W8A8 linear [{rows}, {cols}] x {n}: GPU vs CPU rel err {err:.2e}");
        worst = worst.max(err);
    }
    assert!(worst < 1e-6, "{worst}");
    let f = QTensor { rows: 2, cols: 4, data: QData::F32(vec![0.0; 8]) };
    let (m, x, y) = (GpuMatrix::upload(&ctx, &f, "f").unwrap(), ctx.zeros("x", 32), ctx.zeros("y", 32));
    assert!(plan_linear_w8a8(&ctx, &m, None, &x, &y, 2).is_err(), "f32 weights are refused");
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/llava/llava15-llama")
}

/// The fixture converted as tests/vision_w8a8.rs does (INT4 text, INT8 vision smoothed, α 0.6),
/// once per test binary.
fn converted() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = root().join(".cache/tmp-vis/gpu-w8a8-smoothed");
        let opts =
            ConvertOptions { weights: WeightChoice::Int4, force: true, smooth_alpha: Some(0.6), ..Default::default() };
        webvlm::convert::convert(&fixture(), &out, &opts, &mut |_| {}).unwrap();
        out
    })
    .clone()
}

fn load(dir: &Path, tower: Option<WeightFormat>) -> Llava {
    let ckpt = webvlm::io::open(dir).unwrap();
    Llava::load(&ckpt.config, ckpt.weights.as_ref(), &LoadOptions::default(), &VisionLoadOptions { tower }).unwrap()
}

/// The golden cases' reference pixel values, one tile each.
fn golden_tiles() -> Vec<Vec<f32>> {
    let g: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("golden.json")).unwrap()).unwrap();
    let mut tiles = Vec::new();
    for case in g["cases"].as_array().unwrap() {
        let pv = &case["pixel_values"];
        let raw = std::fs::read(fixture().join(pv["file"].as_str().unwrap())).unwrap();
        tiles.push(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
    }
    tiles
}

/// Worst rel err over the golden tiles of the GPU tower `v` against `want(tile)`.
fn worst(v: &GpuVision, want: &dyn Fn(&[f32]) -> Vec<f32>) -> f32 {
    golden_tiles().iter().map(|t| rel_err(&v.encode(t).unwrap(), &want(t))).fold(0f32, f32::max)
}

/// The smoothed fixture's tower run W8A8 on the GPU against the CPU W8A8 tower: the selected
/// hidden states and the projected features; the weight-only GPU tower is further off.
#[test]
fn w8a8_tower_matches_cpu_w8a8_tower() {
    let Some(ctx) = fresh_gpu() else { return };
    let mut m = load(&converted(), None);
    assert!(m.tower.kernel.probe.is_some(), "a smoothed INT8 tower is timed on the CPU at load");
    m.tower.kernel = TowerKernel { w8a8: true, probe: None };
    let (s, layers) = (m.cfg.vision.image_size, m.cfg.feature_layers.clone());
    let d = m.cfg.vision.hidden;
    // The selected hidden states side by side, as the GPU writes them: [n, d · layers].
    let hidden = |t: &[f32]| -> Vec<f32> {
        let hs = m.tower.hidden_states(t, s, s, &layers).unwrap();
        (0..hs[0].len() / d).flat_map(|r| hs.iter().flat_map(move |h| h[r * d..(r + 1) * d].to_vec())).collect()
    };
    let select = || FeatureSelect { layers: layers.clone(), skip: 0 };
    let mode = VisionKernelMode::W8A8;
    let v = GpuVision::new_with(ctx.clone(), &m.tower, None, select(), mode).unwrap();
    assert!(v.kernel().w8a8);
    let err_hidden = worst(&v, &hidden);
    let skip = m.cfg.vision.num_positions() - m.cfg.tile_tokens();
    let sel = FeatureSelect { layers: layers.clone(), skip };
    let vf = GpuVision::new_with(ctx.clone(), &m.tower, Some(&m.projector), sel, mode).unwrap();
    let err_feat = worst(&vf, &|t| m.tile_features(t, s, s).unwrap());
    let wo = GpuVision::new_with(ctx.clone(), &m.tower, None, select(), VisionKernelMode::WeightOnly).unwrap();
    let err_wo = worst(&wo, &hidden);
    println!(
        "llava15-llama smoothed INT8 tower: GPU W8A8 vs CPU W8A8 rel err {err_hidden:.2e} (hidden states), \
         {err_feat:.2e} (projected features); GPU weight-only vs CPU W8A8 {err_wo:.2e}; {} vs {} dispatches",
        v.dispatches(),
        wo.dispatches()
    );
    assert!(err_hidden < 1e-5 && err_feat < 1e-5, "hidden {err_hidden}, features {err_feat}");
    assert!(err_wo > err_hidden, "the weight-only tower is the other arithmetic");
}

/// Auto: the smoothed tower is probed on the GPU at load (the choice and figures reported);
/// an unsmoothed INT8 tower and an f32 tower stay on the weight-only GEMM without a probe;
/// W8A8 is refused for an f32 tower.
#[test]
fn auto_mode_probes_only_smoothed_int8_towers() {
    let Some(ctx) = fresh_gpu() else { return };
    let m = load(&converted(), None);
    let v = GpuVision::for_llava(ctx.clone(), &m).unwrap();
    let k = v.kernel();
    let p = k.probe.expect("a smoothed INT8 tower is probed on the GPU");
    assert!(p.int8_ms > 0.0 && p.w8a8_ms > 0.0 && k.w8a8 == (p.w8a8_ms < p.int8_ms));
    println!("GPU vision kernel chosen at load: {}", k.describe());
    let plain = load(&fixture(), Some(WeightFormat::Int8));
    assert_eq!(GpuVision::for_llava(ctx.clone(), &plain).unwrap().kernel(), TowerKernel::default());
    let f32_model = load(&fixture(), None);
    assert_eq!(GpuVision::for_llava(ctx.clone(), &f32_model).unwrap().kernel(), TowerKernel::default());
    let sel = FeatureSelect { layers: f32_model.cfg.feature_layers.clone(), skip: 0 };
    assert!(GpuVision::new_with(ctx, &f32_model.tower, None, sel, VisionKernelMode::W8A8).is_err());
}
