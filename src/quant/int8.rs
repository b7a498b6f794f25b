//! INT8 per-output-channel symmetric round-to-nearest quantization.
//!
//! Row `r` of `W: [rows, cols]` gets the f32 scale `s = absmax(row) / 127` and
//! `q = clamp(round(w / s), -127, 127)` (−128 is never produced, so `|q| <= 127` and the
//! kernels' `u8 × i8` pair sums cannot saturate). An all-zero row gets `s = 0`, `q = 0`.

/// Returns `(q: [rows*cols], scales: [rows])`, `w ≈ q * scales[row]`.
pub fn quantize(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len(), rows * cols, "int8::quantize: {} values for [{rows}, {cols}]", w.len());
    let mut q = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(rows);
    if cols == 0 {
        return (q, vec![0.0; rows]);
    }
    for (row, qr) in w.chunks_exact(cols).zip(q.chunks_exact_mut(cols)) {
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = amax / 127.0;
        let inv = if s != 0.0 { 1.0 / s } else { 0.0 };
        for (o, &v) in qr.iter_mut().zip(row) {
            *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
        }
        scales.push(s);
    }
    (q, scales)
}

/// Dense `[rows, cols]`: `q[r, c] * scales[r]`.
pub fn dequantize(q: &[i8], scales: &[f32], cols: usize) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    q.chunks_exact(cols).zip(scales).flat_map(|(row, &s)| row.iter().map(move |&v| v as f32 * s)).collect()
}
