//! INT4 group-wise round-to-nearest (RTN) quantization. Layout: see `quant/mod.rs` and
//! `docs/FORMAT.md`; the rules below are the text of the format's quantization section.
//!
//! Each row of `W: [rows, cols]` is cut into groups of `G` consecutive columns (G = 32, 64 or
//! 128) and every group gets its own f16 scale (and f16 min for the asymmetric variant).
//! Scales and mins are rounded to f16 *before* the weights are rounded, so the stored
//! nibbles are the nearest ones under the scale that will actually be used.
//!
//! **Symmetric** (`int4_sym_gG`, dequantized as `(q - 8) * s`), following llama.cpp `Q4_0`
//! (`quantize_row_q4_0_ref`): let `m` be the group's value of largest magnitude *with its
//! sign*; `s = m / -8`, `q = clamp(round(w / s) + 8, 0, 15)`. The extreme value maps exactly
//! to level 0 (`-8 * s = m`) and all 16 levels are used. The alternative `s = absmax / 7`,
//! `q = round(w / s) + 8` (levels 1..15 only) was measured on N(0, 1) data with this code
//! (`tests/quant.rs::sym_rule_choice`): RMSE/σ at G = 32 / 64 / 128 is about
//! 0.086 / 0.095 / 0.103 for `m / -8` versus 0.097 / 0.108 / 0.118 for `absmax / 7`, so the
//! `Q4_0` rule is kept ([`SymRule::SignedMax8`]).
//!
//! **Asymmetric** (`int4_asym_gG`, dequantized as `q * s + m`), following llama.cpp `Q4_1`:
//! `m = min(w)`, `s = (max(w) - m) / 15`, `q = clamp(round((w - m) / s), 0, 15)`.
//!
//! A group whose values are all zero (or all equal, for asym) gets `s = 0` and `q = 8`
//! (sym) / `q = 0` (asym): it dequantizes exactly, never to NaN.
use half::f16;

/// How the symmetric scale is chosen (see the module doc for the measurement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymRule {
    /// `s = absmax / 7`, levels 1..=15.
    AbsMax7,
    /// llama.cpp `Q4_0`: `s = signed_max / -8`, levels 0..=15. The format's rule.
    SignedMax8,
}

/// Quantize `[rows, cols]` with group size `group` along cols.
/// Returns `(q: [rows*cols/8] packed, scales: [rows*cols/group], mins: Some(..) if !sym)`.
/// `cols` must be a multiple of `group` and `group` a multiple of 8 (checked by the caller,
/// [`crate::quant::QTensor::quantize`]).
pub fn quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    sym: bool,
) -> (Vec<u32>, Vec<f16>, Option<Vec<f16>>) {
    if sym {
        let (q, s) = quantize_sym_with(w, rows, cols, group, SymRule::SignedMax8);
        (q, s, None)
    } else {
        quantize_asym(w, rows, cols, group)
    }
}

/// Symmetric quantization with an explicit scale rule (the format uses
/// [`SymRule::SignedMax8`]; the other rule exists to measure the choice).
pub fn quantize_sym_with(w: &[f32], rows: usize, cols: usize, group: usize, rule: SymRule) -> (Vec<u32>, Vec<f16>) {
    assert_eq!(w.len(), rows * cols, "int4::quantize: {} values for [{rows}, {cols}]", w.len());
    let mut levels = vec![0u8; w.len()];
    let mut scales = Vec::with_capacity(w.len() / group);
    for (g, lv) in w.chunks_exact(group).zip(levels.chunks_exact_mut(group)) {
        let s = sym_group(g, rule, lv);
        scales.push(s);
    }
    (pack(&levels), scales)
}

/// Quantize one symmetric group into `levels` (0..=15), returning its f16 scale.
fn sym_group(g: &[f32], rule: SymRule, levels: &mut [u8]) -> f16 {
    let (amax, signed_max) = g.iter().fold((0f32, 0f32), |(a, m), &v| if v.abs() > a { (v.abs(), v) } else { (a, m) });
    let raw = match rule {
        SymRule::AbsMax7 => amax / 7.0,
        SymRule::SignedMax8 => signed_max / -8.0,
    };
    let s16 = f16::from_f32(raw);
    let s = s16.to_f32();
    let inv = if s != 0.0 { 1.0 / s } else { 0.0 };
    for (l, &v) in levels.iter_mut().zip(g) {
        *l = ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u8;
    }
    s16
}

fn quantize_asym(w: &[f32], rows: usize, cols: usize, group: usize) -> (Vec<u32>, Vec<f16>, Option<Vec<f16>>) {
    assert_eq!(w.len(), rows * cols, "int4::quantize: {} values for [{rows}, {cols}]", w.len());
    let mut levels = vec![0u8; w.len()];
    let mut scales = Vec::with_capacity(w.len() / group);
    let mut mins = Vec::with_capacity(w.len() / group);
    for (g, lv) in w.chunks_exact(group).zip(levels.chunks_exact_mut(group)) {
        let (lo, hi) = g.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let m16 = f16::from_f32(lo);
        let m = m16.to_f32();
        let s16 = f16::from_f32((hi - m) / 15.0);
        let s = s16.to_f32();
        let inv = if s != 0.0 { 1.0 / s } else { 0.0 };
        for (l, &v) in lv.iter_mut().zip(g) {
            *l = ((v - m) * inv).round().clamp(0.0, 15.0) as u8;
        }
        scales.push(s16);
        mins.push(m16);
    }
    (pack(&levels), scales, Some(mins))
}

/// Pack levels (0..=15) eight to a word: weight `8k + j` in bits `4j .. 4j+3` of word `k`.
pub fn pack(levels: &[u8]) -> Vec<u32> {
    levels.chunks(8).map(|c| c.iter().enumerate().fold(0u32, |w, (j, &l)| w | ((l as u32 & 15) << (4 * j)))).collect()
}

/// The level (0..=15) of weight `i` in packed words.
#[inline]
pub fn level(words: &[u32], i: usize) -> u8 {
    ((words[i / 8] >> (4 * (i % 8))) & 15) as u8
}

/// Dense `[rows, cols]` from packed nibbles.
pub fn dequantize(q: &[u32], scales: &[f16], mins: Option<&[f16]>, cols: usize, group: usize) -> Vec<f32> {
    let mut out = vec![0f32; q.len() * 8];
    let (wpr, gpr) = (cols / 8, cols / group);
    for (r, row) in out.chunks_exact_mut(cols).enumerate() {
        dequantize_into(
            &q[r * wpr..(r + 1) * wpr],
            &scales[r * gpr..(r + 1) * gpr],
            mins.map(|m| &m[r * gpr..(r + 1) * gpr]),
            group,
            row,
        );
    }
    out
}

/// Dequantize one row: `words: [cols/8]`, `scales`/`mins`: `[cols/group]`, `out: [cols]`.
pub fn dequantize_into(words: &[u32], scales: &[f16], mins: Option<&[f16]>, group: usize, out: &mut [f32]) {
    for (g, og) in out.chunks_exact_mut(group).enumerate() {
        let s = scales[g].to_f32();
        let base = g * group;
        match mins {
            None => {
                for (j, o) in og.iter_mut().enumerate() {
                    *o = (level(words, base + j) as f32 - 8.0) * s;
                }
            }
            Some(m) => {
                let m = m[g].to_f32();
                for (j, o) in og.iter_mut().enumerate() {
                    *o = level(words, base + j) as f32 * s + m;
                }
            }
        }
    }
}
