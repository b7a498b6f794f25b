//! INT8 per-output-channel symmetric quantization (RTN).

/// Returns `(q: [rows*cols], scales: [rows])`, `w ≈ q * scales[row]`.
pub fn quantize(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let _ = (w, rows, cols);
    todo!()
}

pub fn dequantize(q: &[i8], scales: &[f32], cols: usize) -> Vec<f32> {
    let _ = (q, scales, cols);
    todo!()
}
