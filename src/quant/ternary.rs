//! Ternary (BitNet b1.58) weights: every weight is `-1`, `0` or `+1` times one f32 scale per
//! tensor. Follows the BitNet b1.58 recipe ("The Era of 1-bit LLMs", Ma et al. 2024, and its
//! training FAQ `weight_quant`): `gamma = max(mean(|W|), 1e-5)`,
//! `q = clamp(round(W * (1 / gamma)), -1, 1)` (round half to even, as `torch.round`), and
//! `W ≈ q * gamma`. One scale for the whole tensor, as BitLinear158 trains it (a per-row scale
//! would change the model's arithmetic for checkpoints trained ternary).
//!
//! Packing (`docs/FORMAT.md`, format `ternary`): each weight is a 2-bit code `c = q + 1`
//! (`0 → -1`, `1 → 0`, `2 → +1`; code 3 is invalid). Each row is packed on its own into
//! `ceil(cols / 16)` little-endian u32 words; weight `16k + j` of a row sits in bits
//! `2j .. 2j+1` of the row's word `k`, so byte `b` of a row holds weights `4b .. 4b+3` (weight
//! `4b + i` in bits `2i .. 2i+1`). Columns past `cols` in the last word are padded with code 1
//! (weight 0).

/// Weights per u32 word.
pub const PER_WORD: usize = 16;

/// Words per packed row of `cols` weights.
pub fn words_per_row(cols: usize) -> usize {
    cols.div_ceil(PER_WORD)
}

/// The absmean scale `gamma = max(mean(|w|), 1e-5)` (mean accumulated in f64).
pub fn absmean(w: &[f32]) -> f32 {
    if w.is_empty() {
        return 1e-5;
    }
    let s: f64 = w.iter().map(|v| v.abs() as f64).sum();
    ((s / w.len() as f64) as f32).max(1e-5)
}

/// Ternarize `[rows, cols]` with one absmean scale. Returns `(q: [rows * words_per_row], gamma)`.
pub fn quantize(w: &[f32], rows: usize, cols: usize) -> (Vec<u32>, f32) {
    assert_eq!(w.len(), rows * cols, "ternary::quantize: {} values for [{rows}, {cols}]", w.len());
    let gamma = absmean(w);
    (quantize_with(w, rows, cols, gamma), gamma)
}

/// Ternarize with a given scale (`gamma` of a larger fused tensor, for example).
pub fn quantize_with(w: &[f32], rows: usize, cols: usize, gamma: f32) -> Vec<u32> {
    let inv = 1.0 / gamma;
    let wpr = words_per_row(cols);
    let mut q = vec![0x5555_5555u32; rows * wpr]; // code 1 (weight 0) everywhere
    if cols == 0 {
        return q;
    }
    for (row, qr) in w.chunks_exact(cols).zip(q.chunks_exact_mut(wpr)) {
        for (c, &v) in row.iter().enumerate() {
            let t = (v * inv).round_ties_even().clamp(-1.0, 1.0) as i32;
            let code = (t + 1) as u32;
            let (k, j) = (c / PER_WORD, c % PER_WORD);
            qr[k] = (qr[k] & !(3 << (2 * j))) | (code << (2 * j));
        }
    }
    q
}

/// The ternary value (-1, 0, +1) of weight `c` in a packed row.
#[inline]
pub fn value(row: &[u32], c: usize) -> i32 {
    ((row[c / PER_WORD] >> (2 * (c % PER_WORD))) & 3) as i32 - 1
}

/// Whether any 2-bit code in `words` is the invalid code 3.
pub fn has_invalid_code(words: &[u32]) -> bool {
    words.iter().any(|&w| w & (w >> 1) & 0x5555_5555 != 0)
}

/// Dense `out: [cols]` of one packed row.
pub fn dequantize_row(row: &[u32], gamma: f32, out: &mut [f32]) {
    for (c, o) in out.iter_mut().enumerate() {
        *o = value(row, c) as f32 * gamma;
    }
}

/// Dense `[rows, cols]`.
pub fn dequantize(q: &[u32], gamma: f32, rows: usize, cols: usize) -> Vec<f32> {
    let wpr = words_per_row(cols);
    let mut out = vec![0f32; rows * cols];
    if cols == 0 {
        return out;
    }
    for (o, r) in out.chunks_exact_mut(cols).zip(q.chunks_exact(wpr)) {
        dequantize_row(r, gamma, o);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_codes_in_documented_order() {
        // gamma = mean(|w|) = 1: values round to -1, 0, +1 (0.5 rounds to even 0, -1.5 clamps).
        let w = [-1.0, 0.0, 1.0, 0.5, -1.5, 2.0, -0.4, 0.0];
        let (q, g) = quantize(&w, 1, 8);
        assert_eq!(g, 0.8);
        // values at gamma 0.8: -1.25→-1, 0, 1.25→1, 0.625→1, -1.875→-1, 2.5→1, -0.5→-0 (even), 0
        let want = [-1, 0, 1, 1, -1, 1, 0, 0];
        for (c, &v) in want.iter().enumerate() {
            assert_eq!(value(&q, c), v, "weight {c}");
        }
        // weight 0 (code 0) in bits 0..1, weight 2 (code 2) in bits 4..5, padding code 1.
        assert_eq!(q[0] & 3, 0);
        assert_eq!((q[0] >> 4) & 3, 2);
        assert_eq!(q[0] >> 16, 0x5555);
        assert!(!has_invalid_code(&q));
        assert!(has_invalid_code(&[3]));
    }

    #[test]
    fn rows_are_padded_to_whole_words() {
        let w: Vec<f32> = (0..2 * 20).map(|i| (i % 3) as f32 - 1.0).collect();
        let (q, g) = quantize(&w, 2, 20);
        assert_eq!(q.len(), 2 * 2);
        let d = dequantize(&q, g, 2, 20);
        for (a, b) in d.iter().zip(&w) {
            assert_eq!(*a, b.signum() * g * (b.abs() > 0.0) as i32 as f32);
        }
    }
}
