//! Quantization tests: round-trip error bounds per format and group size, the exact
//! dequantization math and packing of `docs/FORMAT.md`, all-zero groups, the choice of the
//! symmetric INT4 scale rule, and segment round trips.
use half::f16;
use webvlm::quant::int4::{self, SymRule};
use webvlm::quant::{QData, QTensor, WeightFormat};

use webvlm::rng::Rng;

fn rmse(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt() as f32
}

fn int4_parts(t: &QTensor) -> (usize, &[u32], &[f16], Option<&[f16]>) {
    match &t.data {
        QData::Int4 { group, q, scales, mins } => (*group, q, scales, mins.as_deref()),
        _ => panic!("not int4"),
    }
}

/// Every weight is within the RTN bound of its group: half a step inside the range, one
/// step at the clamped +7 end of the symmetric grid, plus f16 rounding of scale and min.
#[test]
fn int4_round_trip_bounds() {
    let mut rng = Rng::new(1);
    let (rows, cols) = (16, 512);
    for group in [32, 64, 128] {
        for sym in [true, false] {
            for offset in [0.0, 0.7] {
                let w = rng.normals(rows * cols, offset);
                let t = QTensor::quantize(&w, rows, cols, WeightFormat::Int4 { group, sym }).unwrap();
                let d = t.dequantize();
                let (_, _, scales, mins) = int4_parts(&t);
                for (i, (&a, &b)) in w.iter().zip(&d).enumerate() {
                    let g = i / group;
                    let s = scales[g].to_f32().abs();
                    let bound = match mins {
                        None => s * 1.001 + 1e-6,
                        Some(m) => 0.5 * s * 1.001 + (m[g].to_f32().abs() + a.abs()) / 1024.0,
                    };
                    assert!((a - b).abs() <= bound, "g{group} sym={sym} #{i}: {a} -> {b}, step {s}");
                }
                let e = rmse(&w, &d);
                let limit = if sym { 0.16 } else { 0.12 };
                assert!(e < limit, "g{group} sym={sym} offset {offset}: rmse {e}");
            }
        }
    }
}

#[test]
fn int8_round_trip_bounds() {
    let mut rng = Rng::new(2);
    let (rows, cols) = (9, 300);
    let w = rng.normals(rows * cols, 0.3);
    let t = QTensor::quantize(&w, rows, cols, WeightFormat::Int8).unwrap();
    let QData::Int8 { scales, q } = &t.data else { panic!() };
    for r in 0..rows {
        let amax = w[r * cols..(r + 1) * cols].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(scales[r], amax / 127.0);
    }
    assert!(q.iter().all(|&v| v != -128));
    for (i, (a, b)) in w.iter().zip(t.dequantize()).enumerate() {
        assert!((a - b).abs() <= scales[i / cols] * 0.5001, "#{i}: {a} -> {b}");
    }
}

/// A hand-built example of the packing and of `(q - 8) * s` / `q * s + m`.
#[test]
fn int4_packing_and_dequant_math() {
    // levels 0..15 twice: w = (level - 8) * 0.5, signed max -4 -> s = 0.5 exactly.
    let w: Vec<f32> = (0..32).map(|i| ((i % 16) as f32 - 8.0) * 0.5).collect();
    let t = QTensor::quantize(&w, 1, 32, WeightFormat::Int4 { group: 32, sym: true }).unwrap();
    let (_, q, s, m) = int4_parts(&t);
    assert_eq!(q, &[0x7654_3210, 0xFEDC_BA98, 0x7654_3210, 0xFEDC_BA98]);
    assert_eq!((s[0].to_f32(), m), (0.5, None));
    assert_eq!(t.dequantize(), w);

    // asym: w = 1 + 0.25 * level -> m = 1, s = 0.25.
    let w: Vec<f32> = (0..32).map(|i| 1.0 + 0.25 * ((31 - i) % 16) as f32).collect();
    let t = QTensor::quantize(&w, 1, 32, WeightFormat::Int4 { group: 32, sym: false }).unwrap();
    let (_, q, s, m) = int4_parts(&t);
    assert_eq!(q[0], 0x89AB_CDEF);
    assert_eq!((s[0].to_f32(), m.unwrap()[0].to_f32()), (0.25, 1.0));
    assert_eq!(t.dequantize(), w);

    // dequantization of arbitrary segments follows the formula nibble by nibble.
    let mut rng = Rng::new(3);
    let words: Vec<u32> = (0..16).map(|_| rng.next_u32()).collect();
    let scales: Vec<f16> = (0..4).map(|i| f16::from_f32(0.1 * (i + 1) as f32)).collect();
    let mins: Vec<f16> = (0..4).map(|i| f16::from_f32(-0.3 * i as f32)).collect();
    for mn in [None, Some(&mins[..])] {
        let d = int4::dequantize(&words, &scales, mn, 64, 32);
        for i in 0..128 {
            let lv = ((words[i / 8] >> (4 * (i % 8))) & 15) as f32;
            let (s, g) = (scales[i / 32].to_f32(), i / 32);
            let want = match mn {
                None => (lv - 8.0) * s,
                Some(m) => lv * s + m[g].to_f32(),
            };
            assert_eq!(d[i], want, "#{i}");
        }
    }
}

#[test]
fn all_zero_groups_give_zero_scale() {
    let mut w = vec![0f32; 2 * 128];
    w[200] = 1.0; // row 1, last group not all zero
    for fmt in
        [WeightFormat::Int8, WeightFormat::Int4 { group: 32, sym: true }, WeightFormat::Int4 { group: 64, sym: false }]
    {
        let t = QTensor::quantize(&w, 2, 128, fmt).unwrap();
        let d = t.dequantize();
        assert!(d.iter().all(|v| v.is_finite()), "{}", fmt.name());
        assert!(d[..128].iter().all(|&v| v == 0.0), "{}: zero row not exact", fmt.name());
        assert!((d[200] - 1.0).abs() < 1e-3 && d[129..200].iter().all(|&v| v == 0.0), "{}", fmt.name());
        match &t.data {
            QData::Int8 { scales, .. } => assert_eq!(scales[0], 0.0),
            QData::Int4 { scales, .. } => assert_eq!(scales[0].to_f32(), 0.0),
            _ => unreachable!(),
        }
    }
    // constant groups (asym): zero step, exact min.
    let t = QTensor::quantize(&[0.75; 64], 1, 64, WeightFormat::Int4 { group: 32, sym: false }).unwrap();
    assert_eq!(t.dequantize(), vec![0.75; 64]);
}

/// The measurement behind the symmetric rule (doc of `quant::int4`): on N(0,1) data the
/// llama.cpp `Q4_0` rule (`signed_max / -8`) beats `absmax / 7` at every group size.
#[test]
fn sym_rule_choice() {
    let mut rng = Rng::new(4);
    let (rows, cols) = (256, 1024);
    let w = rng.normals(rows * cols, 0.0);
    for group in [32, 64, 128] {
        let mut e = [0f32; 2];
        for (k, rule) in [SymRule::SignedMax8, SymRule::AbsMax7].into_iter().enumerate() {
            let (q, s) = int4::quantize_sym_with(&w, rows, cols, group, rule);
            e[k] = rmse(&w, &int4::dequantize(&q, &s, None, cols, group));
        }
        println!("group {group}: rmse signed_max/-8 = {:.4}, absmax/7 = {:.4}", e[0], e[1]);
        assert!(e[0] < e[1], "group {group}: {e:?}");
        let (q, s, _) = int4::quantize(&w, rows, cols, group, true);
        let def = rmse(&w, &int4::dequantize(&q, &s, None, cols, group));
        assert_eq!(def, e[0], "format rule is SignedMax8");
    }
}

#[test]
fn f16_and_segments_round_trip() {
    let mut rng = Rng::new(5);
    let w = rng.normals(4 * 64, 0.0);
    for fmt in [WeightFormat::F32, WeightFormat::F16, WeightFormat::Int8, WeightFormat::Int4 { group: 64, sym: false }]
    {
        let t = QTensor::quantize(&w, 4, 64, fmt).unwrap();
        let segs = t.segments();
        let back = QTensor::from_segments(fmt, 4, 64, &segs).unwrap();
        assert_eq!(back.dequantize(), t.dequantize(), "{}", fmt.name());
        if fmt == WeightFormat::F16 {
            for (a, b) in w.iter().zip(t.dequantize()) {
                assert!((a - b).abs() <= a.abs() / 2048.0 + 1e-7);
            }
        }
    }
}
