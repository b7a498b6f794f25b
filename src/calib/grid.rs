//! The quantization grids of the runtime's INT8 and INT4 formats, one (row, group) at a time,
//! so that calibrated methods (GPTQ's column-by-column rounding, AWQ's scaled weights) choose
//! levels on exactly the grid that [`QTensor::quantize`] uses and produce the same bytes
//! (`docs/FORMAT.md`, section 4): INT4 sym = llama.cpp `Q4_0` (`s = f16(signed_max / -8)`),
//! INT4 asym = `Q4_1` (`m = f16(min)`, `s = f16((max - m) / 15)`), INT8 = `absmax / 127` per row.

use crate::error::{Error, Result};
use crate::quant::{int4, QData, QTensor, WeightFormat};
use half::f16;

/// One group's parameters: the values stored (`s16`, `m16` for INT4, `s` for INT8) and the
/// f32 values the kernels multiply by.
#[derive(Clone, Copy, Debug, Default)]
pub struct Param {
    pub s: f32,
    pub m: f32,
    pub s16: f16,
    pub m16: f16,
}

/// A format's grid: which formats calibrated methods can produce, and its group width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub fmt: WeightFormat,
    /// Columns per group (`cols` for INT8, one scale per row).
    pub group: usize,
}

impl Grid {
    /// The grid of `fmt` for a matrix with `cols` columns (INT8 or INT4 only).
    pub fn new(fmt: WeightFormat, cols: usize) -> Result<Grid> {
        match fmt {
            WeightFormat::Int8 => Ok(Grid { fmt, group: cols.max(1) }),
            WeightFormat::Int4 { group, .. } if cols.is_multiple_of(group) => Ok(Grid { fmt, group }),
            WeightFormat::Int4 { group, .. } => {
                Err(Error::Shape(format!("int4 group size {group} does not divide {cols} columns")))
            }
            f => Err(Error::Unsupported(format!("calibrated quantization to {}", f.name()))),
        }
    }

    /// Parameters of a group holding `vals` (the same rule as RTN).
    pub fn param(&self, vals: &[f32]) -> Param {
        match self.fmt {
            WeightFormat::Int4 { sym: true, .. } => {
                let (_, signed_max) =
                    vals.iter().fold((0f32, 0f32), |(a, m), &v| if v.abs() > a { (v.abs(), v) } else { (a, m) });
                let s16 = f16::from_f32(signed_max / -8.0);
                Param { s: s16.to_f32(), s16, ..Param::default() }
            }
            WeightFormat::Int4 { sym: false, .. } => {
                let (lo, hi) = vals.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                let m16 = f16::from_f32(lo);
                let m = m16.to_f32();
                let s16 = f16::from_f32((hi - m) / 15.0);
                Param { s: s16.to_f32(), m, s16, m16 }
            }
            _ => {
                let amax = vals.iter().fold(0f32, |a, v| a.max(v.abs()));
                Param { s: amax / 127.0, ..Param::default() }
            }
        }
    }

    /// The level `v` rounds to under `p` (INT4: 0..=15, INT8: -127..=127).
    #[inline]
    pub fn level(&self, p: &Param, v: f32) -> i32 {
        let inv = if p.s != 0.0 { 1.0 / p.s } else { 0.0 };
        match self.fmt {
            WeightFormat::Int4 { sym: true, .. } => ((v * inv).round() + 8.0).clamp(0.0, 15.0) as i32,
            WeightFormat::Int4 { sym: false, .. } => ((v - p.m) * inv).round().clamp(0.0, 15.0) as i32,
            _ => (v * inv).round().clamp(-127.0, 127.0) as i32,
        }
    }

    /// The value level `q` stands for under `p`.
    #[inline]
    pub fn value(&self, p: &Param, q: i32) -> f32 {
        match self.fmt {
            WeightFormat::Int4 { sym: true, .. } => (q - 8) as f32 * p.s,
            WeightFormat::Int4 { sym: false, .. } => q as f32 * p.s + p.m,
            _ => q as f32 * p.s,
        }
    }

    /// Pack `levels: [rows, cols]` and `params: [rows, cols/group]` into a [`QTensor`].
    pub fn build(&self, rows: usize, cols: usize, levels: &[i32], params: &[Param]) -> QTensor {
        debug_assert_eq!(levels.len(), rows * cols);
        debug_assert_eq!(params.len(), rows * (cols / self.group));
        let data = match self.fmt {
            WeightFormat::Int4 { group, sym } => {
                let lv: Vec<u8> = levels.iter().map(|&q| q as u8).collect();
                QData::Int4 {
                    group,
                    q: int4::pack(&lv),
                    scales: params.iter().map(|p| p.s16).collect(),
                    mins: (!sym).then(|| params.iter().map(|p| p.m16).collect()),
                }
            }
            _ => QData::Int8 {
                q: levels.iter().map(|&q| q as i8).collect(),
                scales: params.iter().map(|p| p.s).collect(),
            },
        };
        QTensor { rows, cols, data }
    }
}

/// Round-to-nearest of `w: [rows, cols]` on `grid` (equal to [`QTensor::quantize`]).
pub fn rtn(grid: &Grid, w: &[f32], rows: usize, cols: usize) -> QTensor {
    let mut levels = vec![0i32; rows * cols];
    let mut params = Vec::with_capacity(rows * cols / grid.group);
    for (g, lv) in w.chunks_exact(grid.group).zip(levels.chunks_exact_mut(grid.group)) {
        let p = grid.param(g);
        for (l, &v) in lv.iter_mut().zip(g) {
            *l = grid.level(&p, v);
        }
        params.push(p);
    }
    grid.build(rows, cols, &levels, &params)
}
