//! The ternary weight format: absmean ternarization as BitNet b1.58 defines it, the packed
//! layout and its segments, every kernel path against the BitLinear158 formula, and (ignored,
//! `--nocapture`) the GEMV bandwidth against INT4.
use webvlm::kernels::{self, ternary::TernAct, Isa};
use webvlm::quant::{ternary, QData, QTensor, WeightFormat};
use webvlm::rng::Rng;

fn uniform(r: &mut Rng, n: usize, s: f32) -> Vec<f32> {
    (0..n).map(|_| (r.next_f32() * 2.0 - 1.0) * s).collect()
}

#[test]
fn ternarization_follows_absmean_rule() {
    let mut r = Rng::new(1);
    let (rows, cols) = (7, 45);
    let w = uniform(&mut r, rows * cols, 0.2);
    let t = QTensor::quantize(&w, rows, cols, WeightFormat::Ternary).unwrap();
    let QData::Ternary { q, scale } = &t.data else { panic!("not ternary") };
    let gamma = (w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64) as f32;
    assert_eq!(*scale, gamma);
    let wpr = cols.div_ceil(16);
    assert_eq!(q.len(), rows * wpr);
    let d = t.dequantize();
    for (i, (&wv, &dv)) in w.iter().zip(&d).enumerate() {
        let want = (wv * (1.0 / gamma)).round_ties_even().clamp(-1.0, 1.0);
        assert_eq!(dv, want * gamma, "weight {i}");
        assert_eq!(ternary::value(&q[(i / cols) * wpr..], i % cols), want as i32);
    }
    let mut row = vec![0f32; cols];
    t.row(3, &mut row);
    assert_eq!(&row[..], &d[3 * cols..4 * cols]);
    assert_eq!(WeightFormat::parse("ternary").unwrap(), WeightFormat::Ternary);
    assert_eq!(WeightFormat::Ternary.name(), "ternary");
    assert!((WeightFormat::Ternary.bits_per_weight(4096) - 2.0).abs() < 1e-12);
}

#[test]
fn segments_round_trip_and_are_checked() {
    let mut r = Rng::new(2);
    let t = QTensor::quantize(&uniform(&mut r, 3 * 40, 1.0), 3, 40, WeightFormat::Ternary).unwrap();
    let segs = t.segments();
    assert_eq!(segs.iter().map(|(n, b)| (*n, b.len())).collect::<Vec<_>>(), [("q", 3 * 3 * 4), ("scale", 4)]);
    assert_eq!(QTensor::segment_sizes(WeightFormat::Ternary, 3, 40), [("q", 36), ("scale", 4)]);
    let back = QTensor::from_segments(WeightFormat::Ternary, 3, 40, &segs).unwrap();
    assert_eq!(back.dequantize(), t.dequantize());
    let mut bad = segs[0].1.to_vec();
    bad[5] |= 0b11 << 2; // code 3
    let e = QTensor::from_segments(WeightFormat::Ternary, 3, 40, &[("q", &bad), segs[1]]).unwrap_err();
    assert!(e.to_string().contains("invalid code"), "{e}");
    let e = QTensor::from_segments(WeightFormat::Ternary, 3, 56, &segs).unwrap_err();
    assert!(e.to_string().contains("segment `q`"), "{e}");
    let layout = webvlm::io::manifest::segment_layout("m.weight", WeightFormat::Ternary, &[3, 40]).unwrap();
    assert_eq!(
        layout.iter().map(|(n, _, s)| (*n, s.clone())).collect::<Vec<_>>(),
        [("q", vec![3, 3]), ("scale", vec![1])]
    );
}

/// Every path computes BitLinear158: `(Σ t_w · q_a) · gamma / (127 / max|x|)`.
#[test]
fn kernels_match_bitlinear_formula() {
    let mut r = Rng::new(3);
    for (rows, cols, n) in [(5, 16, 1), (33, 128, 1), (17, 700, 3), (9, 1024, 6), (64, 4096, 1), (3, 2000, 5)] {
        let w = QTensor::quantize(&uniform(&mut r, rows * cols, 0.05), rows, cols, WeightFormat::Ternary).unwrap();
        let x = uniform(&mut r, n * cols, 3.0);
        let wd = w.dequantize();
        let a = TernAct::new(&x, n, cols);
        let mut want = vec![0f32; n * rows];
        for t in 0..n {
            let amax = x[t * cols..(t + 1) * cols].iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = 127.0 / amax;
            for o in 0..rows {
                let s: f64 = (0..cols)
                    .map(|c| wd[o * cols + c] as f64 * (x[t * cols + c] * scale).round_ties_even() as f64)
                    .sum();
                want[t * rows + o] = (s / scale as f64) as f32;
                assert_eq!(a.q_tok(t)[cols / 2] as f32, (x[t * cols + cols / 2] * scale).round_ties_even());
            }
        }
        for isa in Isa::all_available() {
            let mut got = vec![0f32; n * rows];
            kernels::matmul_with(isa, &w, &x, n, &mut got).unwrap();
            let err = got.iter().zip(&want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            let den = want.iter().fold(0f32, |m, w| m.max(w.abs()));
            assert!(err <= 1e-5 * den, "{isa:?} [{rows}, {cols}] n={n}: err {err} of {den}");
        }
    }
}

#[test]
fn convert_accepts_ternary() {
    use webvlm::convert::{target_format, ConvertOptions, WeightChoice};
    let opts = ConvertOptions { weights: "ternary".parse::<WeightChoice>().unwrap(), ..Default::default() };
    let mut warnings = Vec::new();
    assert_eq!(
        target_format("model.layers.0.mlp.up_proj.weight", &[64, 40], &opts, &mut warnings),
        WeightFormat::Ternary
    );
    assert_eq!(target_format("model.norm.weight", &[64], &opts, &mut warnings), WeightFormat::F32);
}

/// Ternary GEMV reads its weights faster per weight than INT4 (4096×4096, one thread, the
/// fastest path, DRAM-resident working set): `--ignored --nocapture`.
#[test]
#[ignore]
fn bench_ternary_vs_int4() {
    use webvlm::bench;
    for isa in Isa::all_available().into_iter().filter(|&i| i != Isa::Scalar) {
        let opts = bench::GemvOptions { isa, ..Default::default() };
        let mut per_weight = Vec::new();
        for fmt in [WeightFormat::Int4 { group: 64, sym: true }, WeightFormat::Ternary] {
            for threads in opts.threads.clone() {
                let g = bench::gemv_once(fmt, 4096, 4096, threads, &opts);
                let ns = g.us_per_gemv * 1e3 / (4096.0 * 4096.0);
                println!(
                    "{isa:?} {:<14} {threads} thr: {:>8.1} us, {:>6.2} GB/s, {:.4} ns/weight",
                    g.format, g.us_per_gemv, g.gbs, ns
                );
                if threads == 1 {
                    per_weight.push(ns);
                }
            }
        }
        assert!(
            per_weight[1] < per_weight[0],
            "{isa:?}: ternary {:.4} ns/weight vs INT4 {:.4}",
            per_weight[1],
            per_weight[0]
        );
    }
}
