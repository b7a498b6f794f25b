//! Lossless repacking of ggml 4-bit blocks into the runtime's INT4 format.
//!
//! `block_q4_0` (`x = (q - 8) d`) is exactly `int4_sym_g32` and `block_q4_1` (`x = q d + m`)
//! exactly `int4_asym_g32` (layouts: ggml `ggml-common.h`; ours: `quant/mod.rs`,
//! `docs/FORMAT.md`). Only the nibble order differs: a ggml block keeps `x[j]` in the low and
//! `x[j + 16]` in the high nibble of byte `j`; our word `k` keeps weight `8k + i` in bits
//! `4i .. 4i + 3`. The f16 scales (and mins) are copied bit for bit.

use super::reader::GgmlType;
use crate::quant::{QData, QTensor};
use half::f16;

/// Repack `data` (`rows * cols` elements of `ty`, row-major `[rows, cols]`) as a [`QTensor`]
/// when `ty` maps losslessly onto a runtime format; `None` otherwise (or if `cols` is not a
/// whole number of blocks).
pub fn to_qtensor(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<QTensor> {
    let sym = match ty {
        GgmlType::Q4_0 => true,
        GgmlType::Q4_1 => false,
        _ => return None,
    };
    let ts = ty.type_size();
    let blocks = rows.checked_mul(cols)? / 32;
    if !cols.is_multiple_of(32) || data.len() != blocks * ts {
        return None;
    }
    let mut q = Vec::with_capacity(blocks * 4); // [rows*cols/8] words
    let mut scales = Vec::with_capacity(blocks); // [rows*cols/32]
    let mut mins = Vec::with_capacity(if sym { 0 } else { blocks });
    let qs_at = if sym { 2 } else { 4 };
    for b in data.chunks_exact(ts) {
        scales.push(f16::from_le_bytes([b[0], b[1]]));
        if !sym {
            mins.push(f16::from_le_bytes([b[2], b[3]]));
        }
        let qs = &b[qs_at..qs_at + 16];
        let nib = |e: usize| if e < 16 { qs[e] & 0xF } else { qs[e - 16] >> 4 } as u32;
        for k in 0..4 {
            q.push((0..8).fold(0u32, |w, i| w | nib(8 * k + i) << (4 * i)));
        }
    }
    let mins = (!sym).then_some(mins);
    Some(QTensor { rows, cols, data: QData::Int4 { group: 32, q, scales, mins } })
}

/// Reorder whole rows of raw block data: output row `dst` is input row `src_of(dst)`.
/// Used to undo the Q/K permutation without dequantizing.
pub fn permute_rows(data: &[u8], rows: usize, src_of: impl Fn(usize) -> usize) -> Vec<u8> {
    let row_bytes = data.len() / rows;
    let mut out = Vec::with_capacity(data.len());
    for dst in 0..rows {
        let s = src_of(dst);
        out.extend_from_slice(&data[s * row_bytes..(s + 1) * row_bytes]);
    }
    out
}
