//! CPU kernels for `y = W · x` over every weight format.
//!
//! Quantized formats (INT4, INT8) quantize the activations to int8 in blocks of 32 (one f32
//! scale per block, round-to-nearest of `x / (absmax/127)`, see [`act`]) and accumulate
//! integer dot products per block, as llama.cpp does (`ggml_vec_dot_q4_0_q8_0`); f32 and f16
//! weights multiply f32 activations. Ternary weights quantize the activations per token, as
//! BitNet b1.58 does ([`ternary`]; AVX2/VNNI in [`ternary_avx2`], simd128 in `ternary_simd128`). The scalar reference in [`scalar`] defines the exact
//! arithmetic; SIMD paths must equal it within 1e-5 relative: natively [`avx2`] (AVX2+FMA+F16C,
//! optionally AVX-VNNI) and [`avx512`] (AVX-512 VNNI, INT4 only), chosen by runtime detection
//! ([`Isa::best`]); in wasm [`simd128`], chosen by `cfg(target_feature = "simd128")`. Every
//! path is public through [`matmul_with`] / [`rows_on`] so tests can compare them.
//!
//! The vision tower's W8A8 linears (per-token int8 activations × INT8 weights, one i32 sum
//! per output) are in [`w8a8`].
//!
//! Work is split over output rows, in chunks of whole rows, on [`crate::par`]'s pool (the
//! calling thread and its workers; natively threads, in the threaded wasm build Web Workers,
//! in the plain wasm build the calling thread alone).
//! Every ISA entry point writes `out: [rows_in_chunk, n]` (row-major per weight row), which
//! lets [`matmul`] reuse each unpacked weight block across several tokens.

pub mod act;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;
pub mod ternary;
#[cfg(target_arch = "x86_64")]
pub mod ternary_avx2;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod ternary_simd128;
pub mod w8a8;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod w8a8_simd128;
#[cfg(target_arch = "x86_64")]
pub mod w8a8_x86;

use crate::error::{Error, Result};
use crate::quant::{QData, QTensor};
use act::ActQ;

/// The activations as a kernel sees them.
pub enum Input<'a> {
    /// `x: [n, cols]` for f32 / f16 weights.
    F32 { x: &'a [f32], n: usize },
    /// Quantized activations for INT8 / INT4 weights, and for asymmetric INT4 the per-group
    /// offset term `[n, cols/group]` ([`ActQ::group_corr`]; empty otherwise).
    Q { a: ActQ, gcorr: Vec<f32> },
    /// Per-token int8 activations for ternary weights ([`ternary`]).
    T { a: ternary::TernAct },
}

impl Input<'_> {
    pub fn n(&self) -> usize {
        match self {
            Input::F32 { n, .. } => *n,
            Input::Q { a, .. } => a.n,
            Input::T { a } => a.n,
        }
    }
}

/// An instruction-set path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 + FMA + F16C + AVX-VNNI (`vpdpbusd` for the integer dot products).
    AvxVnni,
    /// x86-64 AVX-512 F/BW/VNNI for INT4 (512-bit `vpdpbusd`), otherwise as `Avx2`.
    Avx512,
    /// wasm32 simd128.
    Simd128,
}

impl Isa {
    /// Whether this path can run on this machine / build.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::detected(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => avx2::detected_vnni(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::detected(),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest available path.
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::AvxVnni, Isa::Avx2, Isa::Simd128].into_iter().find(|i| i.available()).unwrap_or(Isa::Scalar)
    }

    /// The fastest available path for [`w8a8`] (its 512-bit-VNNI path also needs AVX-512 VL).
    pub fn best_w8a8() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if w8a8_x86::detected_512vnni() && !avx2::detected_vnni() {
            return Isa::Avx512;
        }
        [Isa::AvxVnni, Isa::Avx2, Isa::Simd128].into_iter().find(|i| i.available()).unwrap_or(Isa::Scalar)
    }

    /// All paths available here (for tests and benchmarks).
    pub fn all_available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Simd128]
            .into_iter()
            .filter(|i| i.available())
            .collect()
    }
}

/// `y[rows] = W[rows, cols] · x[cols]`. Panics with a message on mismatched lengths (a bug in
/// the caller); [`matvec_with`] returns the error instead.
pub fn matvec(w: &QTensor, x: &[f32], y: &mut [f32]) {
    if let Err(e) = matmul_with(Isa::best(), w, x, 1, y) {
        panic!("matvec: {e}");
    }
}

/// `y[n, rows] = x[n, cols] · Wᵀ` (every row of `x` times the matrix). Panics on mismatched
/// lengths; [`matmul_with`] returns the error instead.
pub fn matmul(w: &QTensor, x: &[f32], n: usize, y: &mut [f32]) {
    if let Err(e) = matmul_with(Isa::best(), w, x, n, y) {
        panic!("matmul: {e}");
    }
}

/// [`matvec`] on a chosen path.
pub fn matvec_with(isa: Isa, w: &QTensor, x: &[f32], y: &mut [f32]) -> Result<()> {
    matmul_with(isa, w, x, 1, y)
}

/// [`matmul`] on a chosen path, with shape and availability checks.
pub fn matmul_with(isa: Isa, w: &QTensor, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
    check(isa, w, x.len(), n, y.len())?;
    if n == 0 || w.rows == 0 {
        return Ok(());
    }
    if n == 1 {
        run_rows(isa, w, &prepare(w, x, 1), y);
        return Ok(());
    }
    // Cache blocking over tokens: a block's activations stay in L2 while every row streams
    // past them (the rows are re-read once per block). Activations are quantized per token,
    // so quantizing a block alone gives the same values.
    let tb = token_block(w);
    let mut yt = vec![0f32; w.rows * tb.min(n)]; // [rows, tokens of the block]
    for t0 in (0..n).step_by(tb) {
        let k = tb.min(n - t0);
        let inp = prepare(w, &x[t0 * w.cols..(t0 + k) * w.cols], k);
        run_rows(isa, w, &inp, &mut yt[..w.rows * k]);
        for (r, row) in yt[..w.rows * k].chunks_exact(k).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                y[(t0 + t) * w.rows + r] = v;
            }
        }
    }
    Ok(())
}

/// Tokens per cache block of [`matmul_with`]: about 256 KiB of activations in the kernel's
/// layout (int8 for the integer formats, f32 for float weights), 4 to 64 tokens, a multiple of 4.
fn token_block(w: &QTensor) -> usize {
    let per_token = match w.data {
        QData::F32(_) | QData::F16(_) => 4 * w.cols,
        _ => w.cols,
    };
    ((256 * 1024 / per_token.max(1)).clamp(4, 64)) / 4 * 4
}

pub(crate) fn check(isa: Isa, w: &QTensor, xlen: usize, n: usize, ylen: usize) -> Result<()> {
    if !isa.available() {
        return Err(Error::Unsupported(format!("kernel path {isa:?} on this machine")));
    }
    if xlen != n * w.cols {
        return Err(Error::Shape(format!(
            "x has {xlen} values, expected {n} x {} for weight [{}, {}]",
            w.cols, w.rows, w.cols
        )));
    }
    if ylen != n * w.rows {
        return Err(Error::Shape(format!(
            "y has {ylen} values, expected {n} x {} for weight [{}, {}]",
            w.rows, w.rows, w.cols
        )));
    }
    Ok(())
}

/// Quantize (or borrow) the activations for `w`'s format.
pub fn prepare<'a>(w: &QTensor, x: &'a [f32], n: usize) -> Input<'a> {
    match &w.data {
        QData::F32(_) | QData::F16(_) => Input::F32 { x, n },
        QData::Int8 { .. } => Input::Q { a: ActQ::new(x, n, w.cols), gcorr: Vec::new() },
        QData::Int4 { group, mins, .. } => {
            let a = ActQ::new(x, n, w.cols);
            let gcorr = if mins.is_some() { a.group_corr(*group) } else { Vec::new() };
            Input::Q { a, gcorr }
        }
        QData::Ternary { .. } => Input::T { a: ternary::TernAct::new(x, n, w.cols) },
    }
}

/// Rows per parallel task: about 64 KiB of weights each, but at least 2 tasks per thread
/// when the matrix is small (decode steps of small models), and at least 8 rows.
fn chunk_rows(w: &QTensor, threads: usize) -> usize {
    let bytes_per_row = (w.nbytes() / w.rows.max(1)).max(1);
    let by_bytes = (64 * 1024 / bytes_per_row).clamp(8, 1024);
    let by_threads = w.rows.div_ceil(2 * threads.max(1)).max(8);
    by_bytes.min(by_threads)
}

/// Weight bytes (times tokens, up to 4) below which a product runs on one thread: splitting
/// costs about a microsecond, which such a product does not repay.
const MIN_SPLIT_BYTES: usize = 16 * 1024;

/// Compute `out: [rows, n]` for all rows of `w`, in parallel chunks of rows.
fn run_rows(isa: Isa, w: &QTensor, inp: &Input, out: &mut [f32]) {
    let n = inp.n();
    let threads = crate::par::threads();
    let chunk = chunk_rows(w, threads);
    if threads <= 1 || w.rows <= chunk || w.nbytes() * n.min(4) < MIN_SPLIT_BYTES {
        return rows_on(isa, w, inp, 0, out);
    }
    crate::par::chunks_mut(out, chunk * n, |i, o| rows_on(isa, w, inp, i * chunk, o));
}

/// One ISA's kernel over rows `r0 .. r0 + out.len()/n`, `out: [nrows, n]`.
pub fn rows_on(isa: Isa, w: &QTensor, inp: &Input, r0: usize, out: &mut [f32]) {
    if let (QData::Ternary { q, scale }, Input::T { a }) = (&w.data, inp) {
        return ternary_rows_on(isa, q, *scale, w.cols, a, r0, out);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(avx2::detected(), "AVX2/FMA/F16C not available");
            // SAFETY: the CPU features were checked just above.
            unsafe { avx2::rows(w, inp, r0, out, avx2::Kern::Avx2) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => {
            assert!(avx2::detected_vnni(), "AVX2/FMA/F16C/AVX-VNNI not available");
            // SAFETY: the CPU features were checked just above.
            unsafe { avx2::rows(w, inp, r0, out, avx2::Kern::Vnni) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            assert!(avx512::detected(), "AVX2/FMA/F16C/AVX-512 F/BW/VNNI not available");
            // SAFETY: the CPU features were checked just above.
            unsafe { avx2::rows(w, inp, r0, out, avx2::Kern::Avx512) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => simd128::rows(w, inp, r0, out),
        _ => scalar::rows(w, inp, r0, out),
    }
}

/// The ternary kernel of one ISA (every x86 path runs the AVX2 `maddubs` kernel, measured
/// faster than `vpdpbusd`, see [`ternary_avx2`]).
fn ternary_rows_on(isa: Isa, q: &[u32], gamma: f32, cols: usize, a: &ternary::TernAct, r0: usize, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 => {
            assert!(avx2::detected(), "AVX2/FMA/F16C not available");
            // SAFETY: AVX2, FMA and F16C were checked just above.
            unsafe { ternary_avx2::rows(q, gamma, cols, a, r0, out) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => ternary_simd128::rows(q, gamma, cols, a, r0, out),
        _ => ternary::rows_scalar(q, gamma, cols, a, r0, out),
    }
}
