//! Entropy-guided INT4/INT8 allocation (`--entropy-guided`), in the spirit of Q-VLM (Wang et al.
//! 2024, "Q-VLM: Post-training Quantization for Large Vision-Language Models"): the entropy of a
//! layer's activations is the proxy for its cross-layer dependency; it partitions the decoder
//! into blocks of consecutive layers and weights each layer's quantization error.
//!
//! Definitions (all from the calibration pass of the f32 model, [`super::stats`]):
//! - **activation entropy** of an input site: Shannon entropy in bits of the histogram of its
//!   inputs quantized to 8 bits with one scale per token (`q = round(x · 127 / max|x_token|)`,
//!   255 codes), i.e. the information the int8 input of the runtime's kernels carries per
//!   value. A layer's entropy `H_l` is the mean over its four sites (q/k/v, o, gate/up, down).
//! - **blocks**: the layers are cut into `B` runs of consecutive layers with about equal total
//!   entropy ([`partition`]): high-entropy layers (strong dependency) get short blocks.
//! - **allocation** ([`allocate`]): each tensor's measured sensitivity `err(INT4) − err(INT8)`
//!   is weighted by `H_l / mean(H)`; whole blocks go INT8 in decreasing weighted sensitivity
//!   per parameter while they fit the INT8 budget `(1 − R)·P`; the first block that does not
//!   fit is split tensor by tensor (same order) until the budget is met, and the blocks after it
//!   stay INT4. The INT4 share is `R` to within one tensor, as with `--ratio`
//!   (`R·P − max_size < int4 ≤ R·P`), and the result depends only on its inputs.

use serde::Serialize;
use std::ops::Range;

/// Histogram bins: int8 codes `-127..=127`.
pub const BINS: usize = 255;

/// Add rows `x: [n, cols]` to `hist` (`[BINS]`), each row quantized with its own absmax.
pub fn add_rows(hist: &mut [u64], x: &[f32], cols: usize) {
    for row in x.chunks_exact(cols.max(1)) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if amax == 0.0 || !amax.is_finite() {
            hist[127] += row.len() as u64;
            continue;
        }
        let inv = 127.0 / amax;
        for &v in row {
            let q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i32;
            hist[(q + 127) as usize] += 1;
        }
    }
}

/// Shannon entropy in bits of a histogram (0 when empty).
pub fn entropy_bits(hist: &[u64]) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    hist.iter().filter(|&&c| c > 0).map(|&c| c as f64 / t).map(|p| -p * p.log2()).sum()
}

/// Cut `entropy` (one value per layer, ≥ 0) into `blocks` runs of consecutive layers of about
/// equal total entropy: a run ends once its total reaches `total / blocks` (or when only as
/// many layers are left as runs still to fill). Every run holds at least one layer.
pub fn partition(entropy: &[f64], blocks: usize) -> Vec<Range<usize>> {
    let n = entropy.len();
    let b = blocks.clamp(1, n.max(1));
    if n == 0 {
        return Vec::new();
    }
    let total: f64 = entropy.iter().map(|e| e.max(0.0)).sum();
    let target = if total > 0.0 { total / b as f64 } else { 0.0 };
    let mut out = Vec::with_capacity(b);
    let (mut start, mut acc) = (0, 0.0);
    for (l, e) in entropy.iter().enumerate() {
        acc += e.max(0.0);
        let runs_left = b - out.len(); // including the current one
        let layers_left = n - l - 1;
        let full = target == 0.0 || acc >= target * (1.0 - 1e-12);
        if runs_left > 1 && (full && layers_left >= runs_left - 1 || layers_left == runs_left - 1) {
            out.push(start..l + 1);
            start = l + 1;
            acc = 0.0;
        }
    }
    out.push(start..n);
    out
}

/// One block linear for [`allocate`].
#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub layer: usize,
    pub params: usize,
    /// `err(INT4) − err(INT8)` on calibration inputs.
    pub sensitivity: f64,
}

/// One block of the allocation, as written to `quality.json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BlockReport {
    /// First and last layer (inclusive).
    pub layers: [usize; 2],
    /// Mean activation entropy of its layers, bits.
    pub entropy: f64,
    /// `"int8"`, `"int4"` or `"mixed"` (the block split to meet the size).
    pub precision: String,
}

/// Which items go INT8 for an INT4 share `ratio`, given each layer's entropy and the blocks;
/// see the module docs. Returns the choice per item and one report per block.
pub fn allocate(items: &[Item], entropy: &[f64], blocks: &[Range<usize>], ratio: f64) -> (Vec<bool>, Vec<BlockReport>) {
    let total: usize = items.iter().map(|i| i.params).sum();
    let budget = (1.0 - ratio.clamp(0.0, 1.0)) * total as f64;
    let mean_h = entropy.iter().sum::<f64>() / entropy.len().max(1) as f64;
    let weight = |l: usize| if mean_h > 0.0 { entropy.get(l).copied().unwrap_or(mean_h) / mean_h } else { 1.0 };
    let score = |i: &Item| i.sensitivity * weight(i.layer);
    let block_of = |l: usize| blocks.iter().position(|b| b.contains(&l)).unwrap_or(0);
    let members: Vec<Vec<usize>> =
        (0..blocks.len()).map(|b| (0..items.len()).filter(|&i| block_of(items[i].layer) == b).collect()).collect();
    let density = |ix: &[usize]| {
        let p: usize = ix.iter().map(|&i| items[i].params).sum();
        ix.iter().map(|&i| score(&items[i])).sum::<f64>() / p.max(1) as f64
    };
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| density(&members[b]).total_cmp(&density(&members[a])).then(a.cmp(&b)));
    let mut int8 = vec![false; items.len()];
    let mut held = 0usize;
    for b in order {
        if held as f64 >= budget {
            break;
        }
        let size: usize = members[b].iter().map(|&i| items[i].params).sum();
        if (held + size) as f64 <= budget {
            members[b].iter().for_each(|&i| int8[i] = true);
            held += size;
            continue;
        }
        // The block that does not fit: its tensors by weighted sensitivity per parameter.
        let mut ix = members[b].clone();
        let d = |i: usize| score(&items[i]) / items[i].params.max(1) as f64;
        ix.sort_by(|&x, &y| d(y).total_cmp(&d(x)).then(x.cmp(&y)));
        for i in ix {
            if held as f64 >= budget {
                break;
            }
            int8[i] = true;
            held += items[i].params;
        }
        break;
    }
    let reports = blocks
        .iter()
        .enumerate()
        .map(|(b, r)| {
            let n8 = members[b].iter().filter(|&&i| int8[i]).count();
            let precision = match n8 {
                0 => "int4",
                n if n == members[b].len() => "int8",
                _ => "mixed",
            };
            let h = entropy[r.clone()].iter().sum::<f64>() / r.len().max(1) as f64;
            BlockReport { layers: [r.start, r.end - 1], entropy: h, precision: precision.into() }
        })
        .collect();
    (int8, reports)
}

/// Default block count for `layers` decoder layers: about three layers per block.
pub fn default_blocks(layers: usize) -> usize {
    layers.div_ceil(3).max(1)
}
