//! The GPU linear layer (`webvlm::gpu::linear`) against the CPU for every weight format:
//! GEMV (n = 1) and tiled GEMM (n > 1) over odd shapes, matrices split into several parts by a
//! small artificial binding limit, bias, the embedding gather, and the bench probes at toy sizes.
//!
//! References: f32/f16/int8/int4 use `QTensor::dequantize` times x in f64 (the GPU keeps f32
//! activations, so only f32 rounding separates the two); ternary uses the CPU kernel
//! `kernels::matmul_with(Isa::Scalar, ..)`, whose per-token int8 activations the GPU reproduces.

use crate::gpu_common;

use gpu_common::{gpu, rel_err};
use webvlm::gpu::linear::{plan_gather, plan_linear};
use webvlm::gpu::{GpuContext, GpuMatrix};
use webvlm::kernels::{matmul_with, Isa};
use webvlm::quant::{QTensor, WeightFormat};
use webvlm::rng::Rng;

const F32: WeightFormat = WeightFormat::F32;
const F16: WeightFormat = WeightFormat::F16;
const INT8: WeightFormat = WeightFormat::Int8;
const TERN: WeightFormat = WeightFormat::Ternary;

fn int4(group: usize, sym: bool) -> WeightFormat {
    WeightFormat::Int4 { group, sym }
}

/// The error bound of a format, against the references above. All GPU paths accumulate in f32
/// over at most a few thousand terms, so f32 rounding alone gives ~1e-6 relative.
fn bound(f: WeightFormat) -> f32 {
    match f {
        // plain f32 sums in a different order than the f64 reference
        F32 | F16 | INT8 => 1e-5,
        // s·Σ nibble·x + c·Σ x cancels (c = -8 s): the two sums are ~8x the result, so their
        // f32 rounding costs about one more decimal digit
        WeightFormat::Int4 { .. } => 1e-4,
        // the integer sums are exact; 127 / absmax may round differently from the CPU (WGSL
        // division is within 2.5 ulp), which can move an activation quant by one at a tie
        _ => 1e-3,
    }
}

/// CPU reference `y[n, rows]` (f64 accumulation of the dequantized weights, or the CPU ternary
/// kernel), plus bias.
fn reference(q: &QTensor, x: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let (rows, cols) = (q.rows, q.cols);
    let mut y = vec![0f32; n * rows];
    if q.format() == TERN {
        matmul_with(Isa::Scalar, q, x, n, &mut y).unwrap();
    } else {
        let w = q.dequantize();
        for t in 0..n {
            for r in 0..rows {
                let s: f64 = (0..cols).map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64).sum();
                y[t * rows + r] = s as f32;
            }
        }
    }
    if let Some(b) = bias {
        y.iter_mut().enumerate().for_each(|(i, v)| *v += b[i % rows]);
    }
    y
}

/// Run the GPU linear layer on a random `[rows, cols]` matrix and compare; returns the error.
#[allow(clippy::too_many_arguments)]
fn check(
    ctx: &GpuContext,
    rng: &mut Rng,
    f: WeightFormat,
    rows: usize,
    cols: usize,
    n: usize,
    parts: usize,
    bias: bool,
) -> f32 {
    let w = rng.normals(rows * cols, 0.0);
    let q = QTensor::quantize(&w, rows, cols, f).unwrap();
    let limit = if parts <= 1 { ctx.max_binding() } else { split_limit(&q, parts) };
    let m = GpuMatrix::upload_with_limit(ctx, &q, "w", limit).unwrap();
    assert!(parts <= 1 || m.parts.len() >= 2, "{f:?} [{rows}, {cols}] not split ({} parts)", m.parts.len());
    assert_eq!(m.nbytes(), q.nbytes() as u64 - if f == TERN { 4 } else { 0 });
    let x: Vec<f32> = rng.normals(n * cols, 0.0);
    let b: Option<Vec<f32>> = bias.then(|| rng.normals(rows, 0.0));
    let xb = ctx.upload_f32("x", &x);
    let yb = ctx.zeros("y", 4 * (n * rows) as u64);
    let bb = b.as_ref().map(|b| ctx.upload_f32("bias", b));
    let plan = plan_linear(ctx, &m, bb.as_ref(), &xb, &yb, n as u32).unwrap();
    plan.submit(ctx);
    let got = ctx.read_f32(&yb, n * rows).unwrap();
    let want = reference(&q, &x, n, b.as_deref());
    let e = rel_err(&got, &want);
    println!("{:>14} [{rows:>4}, {cols:>4}] n {n:>2} parts {:>2} bias {bias:<5} err {e:.2e}", f.name(), m.parts.len());
    assert!(e < bound(f), "{f:?} [{rows}, {cols}] n {n}: error {e} over {}", bound(f));
    e
}

/// A per-buffer byte limit that cuts `q` into about `parts` row ranges.
fn split_limit(q: &QTensor, parts: usize) -> u64 {
    let widest = q.segments().iter().map(|(_, b)| b.len()).max().unwrap() as u64;
    (widest / parts as u64).max(widest / q.rows as u64 + 16) + 16
}

/// Shapes whose columns are arbitrary (odd, not multiples of 4, 16 or the workgroup size).
const ODD_SHAPES: [(usize, usize); 6] = [(37, 77), (5, 1000), (130, 129), (300, 64), (1, 513), (67, 2050)];

#[test]
fn dense_and_int8_and_ternary_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    for f in [F32, F16, INT8, TERN] {
        for (i, &(rows, cols)) in ODD_SHAPES.iter().enumerate() {
            for n in [1, 2, 7, 33] {
                check(&ctx, &mut rng, f, rows, cols, n, 1, (i + n) % 2 == 0);
            }
        }
    }
}

#[test]
fn int4_matches_cpu_for_every_group() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(12);
    for sym in [true, false] {
        for group in [32, 64, 128] {
            // cols: multiples of the group but not of the 256-lane workgroup
            for (rows, mult) in [(37, 3), (130, 5), (1, 1), (65, 9)] {
                for n in [1, 2, 7, 33] {
                    check(&ctx, &mut rng, int4(group, sym), rows, group * mult, n, 1, n == 2);
                }
            }
        }
    }
}

#[test]
fn split_matrices_match_cpu() {
    // n = 70 spans two 64-token GEMM tiles, 203 rows four 64-row tiles (cut across parts)
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(13);
    for f in [F32, F16, INT8, TERN, int4(32, true), int4(64, false), int4(128, true)] {
        let cols = if matches!(f, WeightFormat::Int4 { .. }) { 256 } else { 131 };
        for n in [1, 7, 33, 70] {
            check(&ctx, &mut rng, f, 203, cols, n, 4, true);
        }
    }
}

#[test]
fn gather_returns_rows_of_every_format() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(14);
    for f in [F32, F16, INT8, TERN, int4(32, true), int4(64, false), int4(128, false)] {
        let (rows, cols) = if matches!(f, WeightFormat::Int4 { .. }) { (301, 384) } else { (301, 97) };
        let q = QTensor::quantize(&rng.normals(rows * cols, 0.0), rows, cols, f).unwrap();
        for parts in [1, 3] {
            let limit = if parts == 1 { ctx.max_binding() } else { split_limit(&q, parts) };
            let m = GpuMatrix::upload_with_limit(&ctx, &q, "emb", limit).unwrap();
            let ids: Vec<u32> = vec![0, rows as u32 - 1, 7, rng.below(rows) as u32, rows as u32 - 1, 150];
            let n = ids.len();
            let ib = ctx.upload("ids", bytemuck::cast_slice(&ids));
            let out = ctx.zeros("out", 4 * (n * cols) as u64);
            plan_gather(&ctx, &m, &ib, &out, n as u32).unwrap().submit(&ctx);
            let got = ctx.read_f32(&out, n * cols).unwrap();
            let mut want = vec![0f32; n * cols];
            for (t, &id) in ids.iter().enumerate() {
                q.row(id as usize, &mut want[t * cols..(t + 1) * cols]);
            }
            let e = rel_err(&got, &want);
            println!("gather {:>14} parts {} err {e:.2e}", f.name(), m.parts.len());
            // a row is decoded exactly as on the CPU, up to one fused multiply-add
            assert!(e < 1e-6, "{f:?}: gather error {e}");
        }
    }
}

#[test]
fn one_row_larger_than_the_limit_is_an_error() {
    let Some(ctx) = gpu() else { return };
    let q = QTensor::quantize(&vec![0.5; 4 * 64], 4, 64, F32).unwrap();
    assert!(GpuMatrix::upload_with_limit(&ctx, &q, "w", 128).is_err());
    assert_eq!(GpuMatrix::upload_with_limit(&ctx, &q, "w", 256 + 16).unwrap().parts.len(), 4);
}

#[test]
fn bench_probes_run_at_toy_sizes() {
    let Some(ctx) = gpu() else { return };
    let (gbps, ms) = webvlm::gpu::bench::gemv_gbps(&ctx, int4(64, true), 64, 256, 2).unwrap();
    println!("toy int4 gemv: {gbps:.3} GB/s, {ms:.3} ms");
    assert!(gbps > 0.0 && ms > 0.0);
    let (gbps, ms) = webvlm::gpu::bench::copy_gbps(&ctx, 1 << 16, 2).unwrap();
    println!("toy copy: {gbps:.3} GB/s, {ms:.3} ms");
    assert!(gbps > 0.0 && ms > 0.0);
}

#[test]
fn grids_past_65535_workgroups_fold_into_y() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(15);
    // gather: 5 tokens × 3.5M columns = 68360 workgroups of 256 values
    let (rows, cols) = (5, 3_500_000);
    let q = QTensor::quantize(&rng.normals(rows * cols, 0.0), rows, cols, INT8).unwrap();
    let m = GpuMatrix::upload(&ctx, &q, "wide").unwrap();
    let ids: Vec<u32> = vec![4, 0, 2, 4, 1];
    let ib = ctx.upload("ids", bytemuck::cast_slice(&ids));
    let out = ctx.zeros("out", 4 * (ids.len() * cols) as u64);
    plan_gather(&ctx, &m, &ib, &out, ids.len() as u32).unwrap().submit(&ctx);
    let got = ctx.read_f32(&out, ids.len() * cols).unwrap();
    let mut want = vec![0f32; ids.len() * cols];
    for (t, &id) in ids.iter().enumerate() {
        q.row(id as usize, &mut want[t * cols..(t + 1) * cols]);
    }
    let e = rel_err(&got, &want);
    println!("gather over a folded grid: err {e:.2e}");
    assert!(e < 1e-6);
    // and a GEMV over 1M-column rows (256 lanes a row, each summing ~250 vec4 chunks)
    check(&ctx, &mut rng, INT8, 3, 1_000_003, 1, 1, false);
}
