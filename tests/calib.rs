//! Calibrated quantization (`webvlm::calib`): GPTQ, AWQ and the INT4/INT8 ratio on small
//! random layers, the linear algebra under GPTQ, and an end-to-end `convert --method gptq|awq
//! --calibrate FILE` of the tiny HF Llama whose `quality.json` must agree with `eval` of the
//! written model.

use crate::io_common;

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
    calibrated_convert_with(CalibConfig { method, ratio, ..Default::default() }, name).0
}

/// Convert the tiny HF Llama with `c` (its text replaced by generated prose); quality.json, the
/// `eval` of the written folder, and the output folder.
fn calibrated_convert_with(
    c: CalibConfig,
    name: &str,
) -> ((serde_json::Value, webvlm::calib::Quality), std::path::PathBuf) {
    let src = scratch(&format!("calib-src-{name}"));
    write_tiny_hf(&src, 21);
    let text = src.join("prose.txt");
    prose(&text);
    let out = scratch(&format!("calib-out-{name}"));
    let c = CalibConfig { spec: TextSpec::File(text.clone()), seq_len: 64, ..c };
    let opts =
        ConvertOptions { weights: WeightChoice::Int4, calib: Some(c.clone()), force: true, ..Default::default() };
    convert(&src, &out, &opts, &mut |_| {}).unwrap();
    let q: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("quality.json")).unwrap()).unwrap();
    let e = webvlm::calib::run::eval_paths(&out, &src, &TextSpec::File(text), &c, &mut |_, _, _| {}).unwrap();
    ((q, e), out)
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

#[test]
fn activation_entropy_of_known_histograms() {
    use webvlm::calib::entropy::{add_rows, entropy_bits, BINS};
    let mut h = vec![0u64; BINS];
    // Every row's absmax maps to ±127: two equally likely codes, one bit.
    add_rows(&mut h, &[2.0, -2.0, 0.5, -0.5], 2);
    assert_eq!((h[0], h[254]), (2, 2));
    assert!((entropy_bits(&h) - 1.0).abs() < 1e-12);
    // Codes -127, 0, 127 in equal numbers: log2(3) bits; an all-zero row is all code 0.
    let mut h = vec![0u64; BINS];
    add_rows(&mut h, &[1.0, 0.0, -1.0], 3);
    add_rows(&mut h, &[-2.0, 0.001, 2.0, 4.0, -4.0, 0.01], 3);
    assert_eq!((h[0], h[127], h[254]), (3, 3, 3));
    assert!((entropy_bits(&h) - 3f64.log2()).abs() < 1e-12);
    let mut z = vec![0u64; BINS];
    add_rows(&mut z, &[0.0; 6], 3);
    assert_eq!((z[127], entropy_bits(&z)), (6, 0.0));
    assert_eq!(entropy_bits(&vec![0; BINS]), 0.0);
    // Gaussian-like inputs carry more information than outlier-dominated ones.
    let mut rng = Rng::new(3);
    let (mut plain, mut outlier) = (vec![0u64; BINS], vec![0u64; BINS]);
    let x = rng.vec(64 * 128, 1.0);
    add_rows(&mut plain, &x, 128);
    let mut y = x.clone();
    y.chunks_exact_mut(128).for_each(|r| r[5] *= 100.0);
    add_rows(&mut outlier, &y, 128);
    assert!(entropy_bits(&plain) > entropy_bits(&outlier) + 2.0);
}

#[test]
fn entropy_partition_is_contiguous_and_gives_high_entropy_layers_short_blocks() {
    use webvlm::calib::entropy::partition;
    let e = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 6.0, 6.0, 1.0, 1.0, 1.0, 1.0];
    for b in 1..=e.len() + 2 {
        let p = partition(&e, b);
        assert_eq!(p.len(), b.min(e.len()), "{b}");
        assert_eq!(p[0].start, 0);
        assert_eq!(p.last().unwrap().end, e.len());
        assert!(p.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()), "{b}: {p:?}");
        assert_eq!(p, partition(&e, b));
    }
    // total 24, 4 blocks of about 6: the two 6-bit layers are blocks on their own.
    let p = partition(&e, 4);
    assert_eq!(p, vec![0..6, 6..7, 7..8, 8..12]);
    assert_eq!(partition(&[0.0; 5], 2).len(), 2);
}

#[test]
fn entropy_guided_allocation_hits_the_share_to_one_tensor_and_is_deterministic() {
    use webvlm::calib::entropy::{allocate, partition, Item};
    let mut rng = Rng::new(17);
    let layers = 30;
    let entropy: Vec<f64> = (0..layers).map(|_| 4.0 + 3.0 * rng.uniform().abs() as f64).collect();
    let items: Vec<Item> = (0..layers * 7)
        .map(|i| Item {
            layer: i / 7,
            params: 1000 + (rng.next_u64() % 30_000) as usize,
            sensitivity: rng.uniform().abs() as f64,
        })
        .collect();
    let total: usize = items.iter().map(|i| i.params).sum();
    let biggest = items.iter().map(|i| i.params).max().unwrap();
    for blocks in [1, 6, 10, 30] {
        let parts = partition(&entropy, blocks);
        for ratio in [0.0, 0.3, 0.6, 0.9, 1.0] {
            let (int8, rep) = allocate(&items, &entropy, &parts, ratio);
            assert_eq!((int8.clone(), rep.clone()), allocate(&items, &entropy, &parts, ratio));
            let int4: usize = items.iter().zip(&int8).filter(|(_, &e)| !e).map(|(i, _)| i.params).sum();
            let target = ratio * total as f64;
            assert!(
                int4 as f64 <= target + 1e-6 && int4 as f64 > target - biggest as f64,
                "blocks {blocks} ratio {ratio}: {int4} of {total}"
            );
            // Blocks are all-INT4 or all-INT8 except at most one.
            assert_eq!(rep.len(), parts.len());
            assert!(rep.iter().filter(|b| b.precision == "mixed").count() <= 1, "{rep:?}");
            for (b, r) in rep.iter().zip(&parts) {
                let n8 = items.iter().zip(&int8).filter(|(i, &e)| r.contains(&i.layer) && e).count();
                let want = match b.precision.as_str() {
                    "int8" => 7 * r.len(),
                    "int4" => 0,
                    _ => n8.clamp(1, 7 * r.len() - 1),
                };
                assert_eq!(n8, want, "{b:?}");
            }
        }
    }
}

#[test]
fn convert_entropy_guided_records_each_tensors_choice_in_the_manifest() {
    let c = CalibConfig { method: Method::Rtn, ratio: Some(0.5), entropy_blocks: Some(2), ..Default::default() };
    let ((q, e), out) = calibrated_convert_with(c, "entropy");
    assert_eq!(q["allocation"], "entropy-guided");
    let blocks = q["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    let ent = q["layer_entropy"].as_array().unwrap();
    assert!(ent.iter().all(|h| h.as_f64().unwrap() > 0.0 && h.as_f64().unwrap() <= 255f64.log2()), "{ent:?}");
    let layers = q["layers"].as_array().unwrap();
    let p = |f: &str| layers.iter().filter(|l| l["format"] == f).map(|l| l["params"].as_u64().unwrap()).sum::<u64>();
    let (p4, p8) = (p("int4_sym_g64"), p("int8"));
    let biggest = layers.iter().map(|l| l["params"].as_u64().unwrap()).max().unwrap();
    assert!(p4 as f64 <= 0.5 * (p4 + p8) as f64 && p4 + biggest > (p4 + p8) / 2, "{p4} int4, {p8} int8");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let tensors = m["tensors"].as_array().unwrap();
    for l in layers {
        let t = tensors.iter().find(|t| t["name"] == l["name"]).unwrap_or_else(|| panic!("{}", l["name"]));
        assert_eq!(t["format"], l["format"], "{}", l["name"]);
    }
    assert!((e.mean_kl - q["evaluation"]["mean_kl"].as_f64().unwrap()).abs() <= 1e-6 * e.mean_kl.max(1e-9));
    // The plot beside quality.json: one line per linear kind, one marker per block linear.
    let svg = std::fs::read_to_string(out.join("quality.svg")).unwrap();
    let names = xml_elements(&svg);
    assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 7);
    let int8 = layers.iter().filter(|l| l["format"] == "int8").count();
    assert_eq!(names.iter().filter(|n| *n == "circle").count(), layers.len() - int8 + 1);
}

/// A small XML well-formedness check: one root, tags nested and closed, attributes
/// `name="value"` without `<` in values, entities only `&amp; &lt; &gt; &quot;`; returns the
/// element names in document order.
fn xml_elements(doc: &str) -> Vec<String> {
    let body = doc.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").expect("xml declaration");
    let (mut stack, mut names, mut rest, mut roots) = (Vec::<String>::new(), Vec::new(), body, 0);
    let text_ok =
        |t: &str| t.split('&').skip(1).all(|e| ["amp;", "lt;", "gt;", "quot;"].iter().any(|k| e.starts_with(k)));
    while let Some(i) = rest.find('<') {
        assert!(text_ok(&rest[..i]) && (!stack.is_empty() || rest[..i].trim().is_empty()), "text {:?}", &rest[..i]);
        let end = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "closing tag");
        } else {
            let selfclose = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, mut attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "name {name:?}");
            loop {
                attrs = attrs.trim_start();
                if attrs.is_empty() {
                    break;
                }
                let (k, v) = attrs.split_once("=\"").unwrap_or_else(|| panic!("attribute in {tag:?}"));
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'), "{k:?}");
                let close = v.find('"').expect("unterminated attribute");
                assert!(!v[..close].contains('<') && text_ok(&v[..close]), "{:?}", &v[..close]);
                attrs = &v[close + 1..];
            }
            if stack.is_empty() {
                roots += 1;
            }
            names.push(name.to_string());
            if !selfclose {
                stack.push(name.to_string());
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty() && rest.trim().is_empty() && roots == 1, "unclosed {stack:?}");
    names
}

#[test]
fn the_error_plot_is_well_formed_svg_with_one_point_per_linear() {
    use webvlm::calib::pipeline::{LinearReport, LINEARS};
    let mut rng = Rng::new(8);
    let reports: Vec<LinearReport> = (0..4 * 7)
        .map(|i| LinearReport {
            name: format!("model.layers.{}.{}.weight", i / 7, LINEARS[i % 7]),
            format: if i % 5 == 0 { "int8" } else { "int4_sym_g64" }.into(),
            params: 100,
            rel_err: 10f64.powf(-4.0 + 3.0 * rng.uniform().abs() as f64),
            awq_alpha: None,
        })
        .collect();
    let doc = webvlm::calib::plot::svg(&reports, "gptq <int4> & \"test\"");
    let names = xml_elements(&doc);
    assert_eq!(names[0], "svg");
    assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 7);
    // one marker per linear (+ one of each in the legend), INT8 as squares
    assert_eq!(names.iter().filter(|n| *n == "circle").count(), 28 - 6 + 1);
    assert!(doc.contains("<polyline class=\"mlp.down_proj\""));
    assert!(doc.contains("gptq &lt;int4&gt; &amp; &quot;test&quot;"));
    // every plotted coordinate lies inside the picture
    for part in doc.split("points=\"").skip(1) {
        let pts = &part[..part.find('"').unwrap()];
        assert_eq!(pts.split(' ').count(), 4, "{pts}");
        for p in pts.split(' ') {
            let (x, y) = p.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((0.0..=760.0).contains(&x) && (0.0..=420.0).contains(&y), "{p}");
        }
    }
}

#[test]
fn site_sample_of_a_stream_of_unknown_length_thins_to_evenly_spaced_rows() {
    // Rows whose first value is their index; a cap of 8 rows and a step of 1 to start with.
    let cols = 4;
    let mut s = webvlm::calib::stats::SiteStats::new(cols, 1, 8);
    let mut next = 0usize;
    for n in [3, 10, 1, 20, 7] {
        let x: Vec<f32> = (next..next + n).flat_map(|i| [i as f32, 1.0, -1.0, 0.5]).collect();
        s.add(&x, n);
        next += n;
    }
    let kept: Vec<usize> = s.sample.chunks_exact(cols).map(|r| r[0] as usize).collect();
    assert_eq!(s.count, 41);
    assert!((4..=8).contains(&kept.len()), "{kept:?}");
    let step = kept[1] - kept[0];
    assert!(step.is_power_of_two() && kept.iter().enumerate().all(|(i, &k)| k == i * step), "{kept:?}");
    assert!(kept.last().unwrap() + step >= 41 || kept.len() == 8, "{kept:?}");
}
