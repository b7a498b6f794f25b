//! W8A8 kernels (per-token int8 activations × INT8 weights, i32 sums): every available path
//! equals the scalar integer reference exactly on random odd shapes and on extreme values,
//! the per-token quantization's rounding bound, and the f32 result against dense math. Runs
//! natively and in wasm as a module of the `kernels` test binary (`cargo test --release --test
//! kernels w8a8::`, `scripts/test-wasm-kernels.sh`).
use webvlm::kernels::w8a8::{self, dot_scalar, TokAct};
use webvlm::kernels::Isa;
use webvlm::quant::{QData, QTensor, WeightFormat};
use webvlm::rng::Rng;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn rand_i8(rng: &mut Rng, len: usize) -> Vec<i8> {
    (0..len).map(|_| (rng.below(255) as i32 - 127) as i8).collect()
}

/// The reference: `[n, rows]` sums by [`dot_scalar`].
fn reference(wq: &[i8], rows: usize, cols: usize, a: &TokAct) -> Vec<i32> {
    let mut out = Vec::with_capacity(a.n * rows);
    for t in 0..a.n {
        for r in 0..rows {
            out.push(dot_scalar(a.q_tok(t), &wq[r * cols..(r + 1) * cols]));
        }
    }
    out
}

#[test]
fn every_path_equals_the_integer_reference_on_odd_shapes() {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    assert!(Isa::all_available().contains(&Isa::Simd128));
    let mut rng = Rng::new(81);
    let shapes = [(1, 1), (3, 31), (5, 33), (7, 65), (2, 100), (9, 257), (4, 1000)];
    for &(rows, cols) in &shapes {
        for n in [1, 3, 4, 5, 9] {
            let wq = rand_i8(&mut rng, rows * cols);
            let a = TokAct::new(&rng.normals(n * cols, 0.3), n, cols);
            let want = reference(&wq, rows, cols, &a);
            for isa in Isa::all_available() {
                let got = w8a8::gemm_i32(isa, &wq, rows, cols, &a).unwrap();
                assert_eq!(got, want, "{isa:?} [{rows}, {cols}] x {n} tokens");
            }
        }
    }
}

#[test]
fn extreme_values_do_not_saturate() {
    // All products 127·127 (and −127·127): the i16 pair sums of maddubs are at their largest.
    let (rows, cols, n) = (3, 96 + 7, 5);
    let wq: Vec<i8> = (0..rows * cols).map(|i| if i % cols < 50 { 127 } else { -127 }).collect();
    let x: Vec<f32> = (0..n * cols).map(|i| if (i / cols) % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let a = TokAct::new(&x, n, cols);
    assert!(a.q.iter().all(|&v| v.abs() == 127));
    let want = reference(&wq, rows, cols, &a);
    assert_eq!(want[0], 127 * 127 * (50 - 53));
    for isa in Isa::all_available() {
        assert_eq!(w8a8::gemm_i32(isa, &wq, rows, cols, &a).unwrap(), want, "{isa:?}");
    }
}

#[test]
fn per_token_quantization_rounds_to_the_nearest_step() {
    let mut rng = Rng::new(5);
    let (n, cols) = (4, 77);
    let mut x = rng.normals(n * cols, 0.0);
    x[cols..2 * cols].fill(0.0); // an all-zero token
    let a = TokAct::new(&x, n, cols);
    assert_eq!(a.s[1], 0.0);
    assert!(a.q_tok(1).iter().all(|&v| v == 0));
    for t in 0..n {
        let amax = x[t * cols..(t + 1) * cols].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((a.s[t] - amax / 127.0).abs() <= 1e-9);
        for c in 0..cols {
            let err = (a.q[t * cols + c] as f32 * a.s[t] - x[t * cols + c]).abs();
            assert!(err <= a.s[t] * 0.5 + 1e-6, "token {t} column {c}: error {err}");
            assert_eq!(a.qu[t * cols + c] as i32, a.q[t * cols + c] as i32 + 128);
        }
    }
}

#[test]
fn matmul_is_close_to_dense_math_and_exact_to_the_integers() {
    let mut rng = Rng::new(11);
    let (rows, cols, n) = (37, 129, 6);
    let w = QTensor::quantize(&rng.normals(rows * cols, 0.0), rows, cols, WeightFormat::Int8).unwrap();
    let x = rng.normals(n * cols, 0.1);
    let dense = w.dequantize(); // [rows, cols]
    let QData::Int8 { q, scales } = &w.data else { unreachable!() };
    let a = TokAct::new(&x, n, cols);
    let ints = reference(q, rows, cols, &a);
    let mut num = 0f32;
    let mut den = 0f32;
    for isa in Isa::all_available() {
        let mut y = vec![0f32; n * rows];
        w8a8::matmul_with(isa, &w, &x, n, &mut y).unwrap();
        for t in 0..n {
            for r in 0..rows {
                let exact = ints[t * rows + r] as f32 * (a.s[t] * scales[r]);
                assert_eq!(y[t * rows + r], exact, "{isa:?}: the f32 result is the integer sum times the scales");
                let f: f32 = (0..cols).map(|c| x[t * cols + c] * dense[r * cols + c]).sum();
                num = num.max((y[t * rows + r] - f).abs());
                den = den.max(f.abs());
            }
        }
    }
    // Per-token int8 of normal inputs: ~0.4% of the largest output at 129 columns.
    assert!(num / den < 0.02, "W8A8 vs dense f32: relative error {}", num / den);
}

#[test]
fn matmul_refuses_other_formats_and_bad_shapes() {
    let w = QTensor::quantize(&[0.5; 64], 2, 32, WeightFormat::Int4 { group: 32, sym: true }).unwrap();
    let mut y = vec![0f32; 2];
    assert!(w8a8::matmul(&w, &[0.0; 32], 1, &mut y).is_err());
    let w = QTensor::quantize(&[0.5; 64], 2, 32, WeightFormat::Int8).unwrap();
    assert!(w8a8::matmul(&w, &[0.0; 31], 1, &mut y).is_err());
    assert!(w8a8::gemm_i32(Isa::Scalar, &[0; 63], 2, 32, &TokAct::new(&[0.0; 32], 1, 32)).is_err());
}
