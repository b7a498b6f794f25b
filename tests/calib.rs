//! Calibrated quantization (`webvlm::calib`): GPTQ, AWQ and the INT4/INT8 ratio on small
//! random layers, the linear algebra under GPTQ, and an end-to-end `convert --method gptq|awq
//! --calibrate FILE` of the tiny HF Llama whose `quality.json` must agree with `eval` of the
//! written model.

mod io_common;

use io_common::{scratch, write_tiny_hf, Rng};
use webvlm::calib::awq::{dense_matmul, search, sq_err};
use webvlm::calib::gptq::{gptq, GptqOptions};
use webvlm::calib::linalg::inverse_cholesky_upper;
use webvlm::calib::mixed::choose_int8;
use webvlm::calib::{CalibConfig, Method, TextSpec};
use webvlm::convert::{convert, ConvertOptions, WeightChoice};
use webvlm::quant::{QTensor, WeightFormat};

const FORMATS: [WeightFormat; 3] =
    [WeightFormat::Int4 { group: 32, sym: true }, WeightFormat::Int4 { group: 64, sym: false }, WeightFormat::Int8];

/// `X: [n, cols]` with strongly correlated channels (a few latent factors + small noise) and
/// channel magnitudes spread over 1..8.
fn correlated(rng: &mut Rng, n: usize, cols: usize, factors: usize) -> Vec<f32> {
    let mix = rng.vec(factors * cols, 1.0);
    let mut x = vec![0f32; n * cols];
    for row in x.chunks_exact_mut(cols) {
        let z = rng.vec(factors, 1.0);
        for (c, v) in row.iter_mut().enumerate() {
            let s: f32 = (0..factors).map(|f| z[f] * mix[f * cols + c]).sum();
            *v = (s + 0.05 * rng.uniform()) * (1.0 + 7.0 * (c % 8) as f32 / 7.0);
        }
    }
    x
}

fn gram(x: &[f32], cols: usize) -> Vec<f64> {
    let mut h = vec![0f64; cols * cols];
    for row in x.chunks_exact(cols) {
        for i in 0..cols {
            for j in 0..cols {
                h[i * cols + j] += row[i] as f64 * row[j] as f64;
            }
        }
    }
    h
}

fn out_err(w: &[f32], q: &QTensor, x: &[f32]) -> f64 {
    let (r, c) = (q.rows, q.cols);
    let n = x.len() / c;
    sq_err(&dense_matmul(w, r, c, x, n), &dense_matmul(&q.dequantize(), r, c, x, n))
}

#[test]
fn gptq_output_error_is_below_rtn_on_correlated_inputs() {
    let (rows, cols, n) = (48, 128, 512);
    for (seed, fmt) in FORMATS.iter().enumerate() {
        for act_order in [false, true] {
            let mut rng = Rng::new(11 + seed as u64);
            let w = rng.vec(rows * cols, 1.0);
            let x = correlated(&mut rng, n, cols, 12);
            let h = gram(&x, cols);
            let rtn = QTensor::quantize(&w, rows, cols, *fmt).unwrap();
            let g = gptq(&w, rows, cols, &h, *fmt, &GptqOptions { act_order, ..Default::default() }).unwrap();
            assert_eq!(g.format(), *fmt);
            let (er, eg) = (out_err(&w, &rtn, &x), out_err(&w, &g, &x));
            eprintln!("{} act_order={act_order}: rtn {er:.4e} gptq {eg:.4e} ratio {:.3}", fmt.name(), eg / er);
            assert!(eg < 0.7 * er, "{}: gptq {eg} vs rtn {er}", fmt.name());
        }
    }
}

#[test]
fn gptq_with_an_identity_hessian_is_rtn_byte_for_byte() {
    let (rows, cols) = (8, 128);
    let w = Rng::new(5).vec(rows * cols, 2.0);
    let mut h = vec![0f64; cols * cols];
    (0..cols).for_each(|i| h[i * cols + i] = 3.0);
    for fmt in FORMATS {
        let g = gptq(&w, rows, cols, &h, fmt, &GptqOptions::default()).unwrap();
        let r = QTensor::quantize(&w, rows, cols, fmt).unwrap();
        assert_eq!(g.segments(), r.segments(), "{}", fmt.name());
    }
}

#[test]
fn inverse_cholesky_factor_times_h_is_identity() {
    let n = 40;
    let x = correlated(&mut Rng::new(3), 200, n, 50);
    let mut h = gram(&x, n);
    (0..n).for_each(|i| h[i * n + i] += 1.0);
    let u = inverse_cholesky_upper(&h, n).unwrap();
    for i in 0..n {
        for j in 0..i {
            assert_eq!(u[i * n + j], 0.0);
        }
    }
    // (Uᵀ U) H = I
    let mut worst = 0f64;
    for i in 0..n {
        for j in 0..n {
            let v: f64 = (0..n).map(|k| (0..n).map(|m| u[m * n + i] * u[m * n + k]).sum::<f64>() * h[k * n + j]).sum();
            worst = worst.max((v - (i == j) as u8 as f64).abs());
        }
    }
    assert!(worst < 1e-8, "{worst}");
}

#[test]
fn awq_is_never_worse_than_rtn_and_helps_with_outlier_channels() {
    let (cols, n) = (128, 128);
    let mut gains = 0;
    for seed in 0..6u64 {
        let mut rng = Rng::new(100 + seed);
        let (r1, r2) = (32, 16);
        let (w1, w2) = (rng.vec(r1 * cols, 1.0), rng.vec(r2 * cols, 1.0));
        let mut x = rng.vec(n * cols, 1.0);
        if seed % 2 == 0 {
            // a few outlier input channels, as in LLM activations
            for row in x.chunks_exact_mut(cols) {
                for c in [3, 40, 77] {
                    row[c] *= 30.0;
                }
            }
        }
        let mean_abs: Vec<f32> =
            (0..cols).map(|c| x.chunks_exact(cols).map(|r| r[c].abs()).sum::<f32>() / n as f32).collect();
        for fmt in FORMATS {
            let res = search(&[(&w1, r1), (&w2, r2)], &x, n, &mean_abs, fmt, 20).unwrap();
            let rtn: f64 = [(&w1, r1), (&w2, r2)]
                .iter()
                .map(|(w, r)| out_err(w, &QTensor::quantize(w, *r, cols, fmt).unwrap(), &x))
                .sum();
            assert!((res.rtn_err - rtn).abs() <= 1e-9 * rtn, "{}: rtn {rtn} vs {}", fmt.name(), res.rtn_err);
            assert!(res.err <= rtn, "{}: awq {} > rtn {rtn}", fmt.name(), res.err);
            eprintln!("seed {seed} {}: alpha {} awq/rtn {:.3}", fmt.name(), res.alpha, res.err / rtn);
            if seed % 2 == 0 && fmt != WeightFormat::Int8 && res.err < 0.9 * rtn {
                gains += 1;
            }
        }
    }
    assert!(gains >= 4, "AWQ helped with outlier channels in only {gains} of 6 INT4 cases");
}

#[test]
fn ratio_keeps_the_requested_int4_share_to_one_tensor() {
    let mut rng = Rng::new(9);
    let items: Vec<(usize, f64)> =
        (0..70).map(|_| (1000 + (rng.next_u64() % 50_000) as usize, rng.uniform().abs() as f64)).collect();
    let total: usize = items.iter().map(|i| i.0).sum();
    let biggest = items.iter().map(|i| i.0).max().unwrap();
    for ratio in [0.0, 0.25, 0.6, 0.9, 1.0] {
        let int8 = choose_int8(&items, ratio);
        let int4: usize = items.iter().zip(&int8).filter(|(_, &e)| !e).map(|(i, _)| i.0).sum();
        let target = ratio * total as f64;
        assert!(
            int4 as f64 <= target + 1e-6 && int4 as f64 > target - biggest as f64,
            "ratio {ratio}: {int4} of {total}"
        );
        // every INT8 tensor is at least as sensitive per parameter as every INT4 one
        let d = |i: usize| items[i].1 / items[i].0 as f64;
        let min8 = (0..items.len()).filter(|&i| int8[i]).map(d).fold(f64::INFINITY, f64::min);
        let max4 = (0..items.len()).filter(|&i| !int8[i]).map(d).fold(0.0, f64::max);
        assert!(int8.iter().all(|&e| !e) || int8.iter().all(|&e| e) || min8 >= max4, "ratio {ratio}");
    }
}

fn prose(path: &std::path::Path) {
    let mut rng = Rng::new(77);
    let words = [" abc", " de", " ab", " a", " abc de", " c", " e"];
    let paras: Vec<String> =
        (0..24).map(|_| (0..40).map(|_| words[(rng.next_u64() % 7) as usize]).collect::<String>()).collect();
    std::fs::write(path, paras.join("\n\n")).unwrap();
}

fn calibrated_convert(method: Method, ratio: Option<f64>, name: &str) -> (serde_json::Value, webvlm::calib::Quality) {
    let src = scratch(&format!("calib-src-{name}"));
    write_tiny_hf(&src, 21);
    let text = src.join("prose.txt");
    prose(&text);
    let out = scratch(&format!("calib-out-{name}"));
    let c = CalibConfig { method, ratio, spec: TextSpec::File(text.clone()), seq_len: 64, ..Default::default() };
    let opts =
        ConvertOptions { weights: WeightChoice::Int4, calib: Some(c.clone()), force: true, ..Default::default() };
    convert(&src, &out, &opts, &mut |_| {}).unwrap();
    let q: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("quality.json")).unwrap()).unwrap();
    let e = webvlm::calib::run::eval_paths(&out, &src, &TextSpec::File(text), &c, &mut |_, _, _| {}).unwrap();
    (q, e)
}

#[test]
fn convert_with_gptq_and_awq_writes_a_quality_report_that_eval_reproduces() {
    for (method, ratio, name) in [(Method::Gptq, None, "gptq"), (Method::Awq, Some(0.5), "awq-ratio")] {
        let (q, e) = calibrated_convert(method, ratio, name);
        let layers = q["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2 * 7, "{name}");
        assert!(layers.iter().all(|l| l["rel_err"].as_f64().unwrap().is_finite()), "{name}");
        let ev = &q["evaluation"];
        let kl = ev["mean_kl"].as_f64().unwrap();
        eprintln!("{name}: {ev} eval {e:?}");
        assert!(kl > 0.0 && kl.is_finite(), "{name}: {kl}");
        // The written shards are the model that was evaluated during conversion.
        assert!((e.mean_kl - kl).abs() <= 1e-6 * kl.max(1e-9), "{name}: eval {} vs quality.json {kl}", e.mean_kl);
        assert_eq!(e.positions as u64, ev["positions"].as_u64().unwrap());
        assert!((e.top1_agreement - ev["top1_agreement"].as_f64().unwrap()).abs() < 1e-12);
        let int8 = layers.iter().filter(|l| l["format"] == "int8").count();
        match ratio {
            None => assert_eq!(int8, 0),
            Some(_) => {
                let p = |f: &str| {
                    layers.iter().filter(|l| l["format"] == f).map(|l| l["params"].as_u64().unwrap()).sum::<u64>()
                };
                let (p4, p8) = (p("int4_sym_g64"), p("int8"));
                assert!(int8 > 0 && p4 as f64 <= 0.5 * (p4 + p8) as f64, "{p4} int4, {p8} int8");
            }
        }
    }
}

#[test]
fn site_gram_from_the_kernel_path_equals_the_direct_sum() {
    // A site's Gram matrix from the kernel path equals the direct sum.
    let x = correlated(&mut Rng::new(4), 37, 24, 5);
    let mut s = webvlm::calib::stats::SiteStats::new(24, 1, 1000);
    s.add(&x[..20 * 24], 20);
    s.add(&x[20 * 24..], 17);
    let h = gram(&x, 24);
    let worst = s.gram.iter().zip(&h).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f64::max);
    assert!(worst < 1e-4, "{worst}");
    assert_eq!((s.count, s.sample_rows()), (37, 37));
}
