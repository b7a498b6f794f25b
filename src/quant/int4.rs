//! INT4 group-wise quantization (RTN). Layout: see `quant/mod.rs` and `docs/FORMAT.md`.
use half::f16;

/// Quantize `[rows, cols]` with group size `group` along cols.
/// Returns `(q: [rows*cols/8] packed, scales: [rows*cols/group], mins: Some(..) if !sym)`.
pub fn quantize(w: &[f32], rows: usize, cols: usize, group: usize, sym: bool) -> (Vec<u32>, Vec<f16>, Option<Vec<f16>>) {
    let _ = (w, rows, cols, group, sym);
    todo!()
}

/// Dense `[rows, cols]` from packed nibbles.
pub fn dequantize(q: &[u32], scales: &[f16], mins: Option<&[f16]>, cols: usize, group: usize) -> Vec<f32> {
    let _ = (q, scales, mins, cols, group);
    todo!()
}

/// Dequantize one row: `words: [cols/8]`, `scales`/`mins`: `[cols/group]`, `out: [cols]`.
pub fn dequantize_into(words: &[u32], scales: &[f16], mins: Option<&[f16]>, group: usize, out: &mut [f32]) {
    let _ = (words, scales, mins, group, out);
    todo!()
}
