//! Weight formats: the in-memory form of every weight matrix the runtime multiplies by.
//!
//! A matrix `W` has shape `[rows, cols]` = `[out_features, in_features]` (HF `nn.Linear`
//! layout), and `y = W · x`. Each format is a set of flat, u32-aligned *segments* (quants apart
//! from scales) so the same bytes can go to a GPU storage buffer unchanged. `docs/FORMAT.md`
//! describes each layout byte by byte; this module is the code that follows it.
//!
//! | format        | bits/weight     | segments                                  | dequantization                      |
//! |---------------|-----------------|-------------------------------------------|-------------------------------------|
//! | `f32`         | 32              | `w: f32[rows*cols]`                        | `w`                                 |
//! | `f16`         | 16              | `w: f16[rows*cols]`                        | `w`                                 |
//! | `int8`        | 8 + 32/cols     | `q: i8[rows*cols]`, `scales: f32[rows]`    | `q * scales[r]`                     |
//! | `int4_sym_gG` | 4 + 16/G        | `q: u32[rows*cols/8]`, `scales: f16[rows*cols/G]` | `(q - 8) * s`              |
//! | `int4_asym_gG`| 4 + 32/G        | `q`, `scales`, `mins: f16[rows*cols/G]`    | `q * s + m`                         |
//! | `ternary`     | 2 (+ row pad)   | `q: u32[rows*ceil(cols/16)]`, `scale: f32[1]` | `(code - 1) * scale`            |
//!
//! INT4 packing: word `k` of a row holds weights `8k .. 8k+7`, weight `8k + j` in bits
//! `4j .. 4j+3` (little-endian, so byte `b` holds weights `8k+2b` (low nibble) and `8k+2b+1`).
//! Ternary packing: see [`ternary`] (16 two-bit codes per word, each row padded to whole words).

pub mod float;
pub mod int4;
pub mod int8;
pub mod ternary;

use crate::error::{Error, Result};
use half::f16;
use serde::{Deserialize, Serialize};

/// How a weight matrix is stored. Serialized as a short string (`"int4_sym_g64"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    /// Symmetric INT8, one f32 scale per output row.
    Int8,
    /// INT4, group-wise along `cols`, group size 32, 64 or 128.
    Int4 {
        group: usize,
        sym: bool,
    },
    /// BitNet b1.58 ternary weights, 2 bits each, one f32 absmean scale per tensor.
    Ternary,
}

pub const INT4_GROUPS: [usize; 3] = [32, 64, 128];

impl WeightFormat {
    pub fn name(&self) -> String {
        match self {
            WeightFormat::F32 => "f32".into(),
            WeightFormat::F16 => "f16".into(),
            WeightFormat::Int8 => "int8".into(),
            WeightFormat::Ternary => "ternary".into(),
            WeightFormat::Int4 { group, sym } => {
                format!("int4_{}_g{group}", if *sym { "sym" } else { "asym" })
            }
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Unsupported(format!("weight format `{s}`"));
        Ok(match s {
            "f32" => WeightFormat::F32,
            "f16" => WeightFormat::F16,
            "int8" => WeightFormat::Int8,
            "ternary" => WeightFormat::Ternary,
            _ => {
                let rest = s.strip_prefix("int4_").ok_or_else(bad)?;
                let (kind, g) = rest.split_once("_g").ok_or_else(bad)?;
                let sym = match kind {
                    "sym" => true,
                    "asym" => false,
                    _ => return Err(bad()),
                };
                let group: usize = g.parse().map_err(|_| bad())?;
                if !INT4_GROUPS.contains(&group) {
                    return Err(bad());
                }
                WeightFormat::Int4 { group, sym }
            }
        })
    }

    /// Average storage cost in bits per weight for a matrix with `cols` columns.
    pub fn bits_per_weight(&self, cols: usize) -> f64 {
        match self {
            WeightFormat::F32 => 32.0,
            WeightFormat::F16 => 16.0,
            WeightFormat::Int8 => 8.0 + 32.0 / cols as f64,
            WeightFormat::Int4 { group, sym } => 4.0 + if *sym { 16.0 } else { 32.0 } / *group as f64,
            WeightFormat::Ternary => 32.0 * ternary::words_per_row(cols) as f64 / cols.max(1) as f64,
        }
    }
}

impl Serialize for WeightFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for WeightFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WeightFormat::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The payload of a [`QTensor`], one variant per format family.
#[derive(Clone, Debug)]
pub enum QData {
    /// `[rows*cols]`
    F32(Vec<f32>),
    /// `[rows*cols]`
    F16(Vec<f16>),
    /// `q: [rows*cols]`, `scales: [rows]`
    Int8 { q: Vec<i8>, scales: Vec<f32> },
    /// `q: [rows*cols/8]` packed nibbles, `scales: [rows*cols/group]`,
    /// `mins: [rows*cols/group]` for the asymmetric variant, `None` for symmetric.
    Int4 { group: usize, q: Vec<u32>, scales: Vec<f16>, mins: Option<Vec<f16>> },
    /// `q: [rows * ceil(cols/16)]` packed 2-bit codes ([`ternary`]), `scale`: the tensor's
    /// absmean scale.
    Ternary { q: Vec<u32>, scale: f32 },
}

/// A weight matrix `[rows, cols]` in one of the runtime's formats.
#[derive(Clone, Debug)]
pub struct QTensor {
    pub rows: usize,
    pub cols: usize,
    pub data: QData,
}

impl QTensor {
    pub fn format(&self) -> WeightFormat {
        match &self.data {
            QData::F32(_) => WeightFormat::F32,
            QData::F16(_) => WeightFormat::F16,
            QData::Int8 { .. } => WeightFormat::Int8,
            QData::Int4 { group, mins, .. } => WeightFormat::Int4 { group: *group, sym: mins.is_none() },
            QData::Ternary { .. } => WeightFormat::Ternary,
        }
    }

    /// A shape-only stand-in for a matrix whose bytes live elsewhere (uploaded to the GPU as
    /// its shard arrived): the format and shape with empty segments. CPU kernels must not run
    /// on it; [`QTensor::is_placeholder`] tells.
    pub fn placeholder(fmt: WeightFormat, rows: usize, cols: usize) -> QTensor {
        let data = match fmt {
            WeightFormat::F32 => QData::F32(Vec::new()),
            WeightFormat::F16 => QData::F16(Vec::new()),
            WeightFormat::Int8 => QData::Int8 { q: Vec::new(), scales: Vec::new() },
            WeightFormat::Int4 { group, sym } => {
                QData::Int4 { group, q: Vec::new(), scales: Vec::new(), mins: (!sym).then(Vec::new) }
            }
            WeightFormat::Ternary => QData::Ternary { q: Vec::new(), scale: 0.0 },
        };
        QTensor { rows, cols, data }
    }

    /// Whether this is a [`QTensor::placeholder`] (a non-empty shape without its bytes).
    pub fn is_placeholder(&self) -> bool {
        self.rows * self.cols > 0 && self.segments().first().is_some_and(|(_, b)| b.is_empty())
    }

    /// Quantize a dense row-major `[rows, cols]` matrix with round-to-nearest.
    pub fn quantize(w: &[f32], rows: usize, cols: usize, fmt: WeightFormat) -> Result<QTensor> {
        if w.len() != rows * cols {
            return Err(Error::Shape(format!("{} values for [{rows}, {cols}]", w.len())));
        }
        let data = match fmt {
            WeightFormat::F32 => QData::F32(w.to_vec()),
            WeightFormat::F16 => QData::F16(float::to_f16(w)),
            WeightFormat::Int8 => {
                let (q, scales) = int8::quantize(w, rows, cols);
                QData::Int8 { q, scales }
            }
            WeightFormat::Int4 { group, sym } => {
                if !cols.is_multiple_of(group) {
                    return Err(Error::Shape(format!("int4 group size {group} does not divide {cols} columns")));
                }
                let (q, scales, mins) = int4::quantize(w, rows, cols, group, sym);
                QData::Int4 { group, q, scales, mins }
            }
            WeightFormat::Ternary => {
                let (q, scale) = ternary::quantize(w, rows, cols);
                QData::Ternary { q, scale }
            }
        };
        Ok(QTensor { rows, cols, data })
    }

    /// Back to a dense row-major f32 matrix `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        match &self.data {
            QData::F32(w) => w.clone(),
            QData::F16(w) => float::to_f32(w),
            QData::Int8 { q, scales } => int8::dequantize(q, scales, self.cols),
            QData::Int4 { group, q, scales, mins } => int4::dequantize(q, scales, mins.as_deref(), self.cols, *group),
            QData::Ternary { q, scale } => ternary::dequantize(q, *scale, self.rows, self.cols),
        }
    }

    /// Dense f32 copy of row `r` (used for embedding lookups).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        match &self.data {
            QData::F32(w) => out.copy_from_slice(&w[r * c..(r + 1) * c]),
            QData::F16(w) => {
                for (o, v) in out.iter_mut().zip(&w[r * c..(r + 1) * c]) {
                    *o = v.to_f32();
                }
            }
            QData::Int8 { q, scales } => {
                for (o, v) in out.iter_mut().zip(&q[r * c..(r + 1) * c]) {
                    *o = *v as f32 * scales[r];
                }
            }
            QData::Int4 { group, q, scales, mins } => {
                let g0 = r * c / group;
                let words = &q[r * c / 8..(r + 1) * c / 8];
                let ng = c / group;
                int4::dequantize_into(words, &scales[g0..g0 + ng], mins.as_ref().map(|m| &m[g0..g0 + ng]), *group, out);
            }
            QData::Ternary { q, scale } => {
                let wpr = ternary::words_per_row(c);
                ternary::dequantize_row(&q[r * wpr..(r + 1) * wpr], *scale, out);
            }
        }
    }

    /// Bytes the weights occupy (all segments).
    pub fn nbytes(&self) -> usize {
        self.segments().iter().map(|(_, b)| b.len()).sum()
    }

    /// The named, u32-aligned byte segments of this tensor, in the order of `docs/FORMAT.md`.
    /// Segments whose natural length is not a multiple of 4 bytes are *not* padded here;
    /// writers pad between segments.
    pub fn segments(&self) -> Vec<(&'static str, &[u8])> {
        match &self.data {
            QData::F32(w) => vec![("w", bytemuck::cast_slice(w))],
            QData::F16(w) => vec![("w", bytemuck::cast_slice(w))],
            QData::Int8 { q, scales } => {
                vec![("q", bytemuck::cast_slice(q)), ("scales", bytemuck::cast_slice(scales))]
            }
            QData::Int4 { q, scales, mins, .. } => {
                let mut v: Vec<(&'static str, &[u8])> =
                    vec![("q", bytemuck::cast_slice(q)), ("scales", bytemuck::cast_slice(scales))];
                if let Some(m) = mins {
                    v.push(("mins", bytemuck::cast_slice(m)));
                }
                v
            }
            QData::Ternary { q, scale } => {
                vec![("q", bytemuck::cast_slice(q)), ("scale", bytemuck::bytes_of(scale))]
            }
        }
    }

    /// Expected byte length of each segment for a format and shape.
    pub fn segment_sizes(fmt: WeightFormat, rows: usize, cols: usize) -> Vec<(&'static str, usize)> {
        let n = rows * cols;
        match fmt {
            WeightFormat::F32 => vec![("w", 4 * n)],
            WeightFormat::F16 => vec![("w", 2 * n)],
            WeightFormat::Int8 => vec![("q", n), ("scales", 4 * rows)],
            WeightFormat::Int4 { group, sym } => {
                let mut v = vec![("q", n / 2), ("scales", 2 * n / group)];
                if !sym {
                    v.push(("mins", 2 * n / group));
                }
                v
            }
            WeightFormat::Ternary => vec![("q", 4 * rows * ternary::words_per_row(cols)), ("scale", 4)],
        }
    }

    /// Rebuild a tensor from its segments (as written by [`QTensor::segments`]), checking
    /// every length. `segs` holds `(name, bytes)` in any order.
    pub fn from_segments(fmt: WeightFormat, rows: usize, cols: usize, segs: &[(&str, &[u8])]) -> Result<QTensor> {
        let get = |name: &str| -> Result<&[u8]> {
            let want =
                Self::segment_sizes(fmt, rows, cols).into_iter().find(|(n, _)| *n == name).map(|(_, s)| s).unwrap_or(0);
            let b = segs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b)
                .ok_or_else(|| Error::format(fmt.name(), format!("segment `{name}` missing")))?;
            if b.len() != want {
                return Err(Error::format(
                    fmt.name(),
                    format!("segment `{name}` has {} bytes, [{rows}, {cols}] needs {want}", b.len()),
                ));
            }
            Ok(b)
        };
        if let WeightFormat::Int4 { group, .. } = fmt {
            if !cols.is_multiple_of(group) {
                return Err(Error::Shape(format!("group {group} does not divide {cols} columns")));
            }
        }
        let data = match fmt {
            WeightFormat::F32 => QData::F32(pod_vec(get("w")?)),
            WeightFormat::F16 => QData::F16(pod_vec(get("w")?)),
            WeightFormat::Int8 => QData::Int8 { q: pod_vec(get("q")?), scales: pod_vec(get("scales")?) },
            WeightFormat::Int4 { group, sym } => QData::Int4 {
                group,
                q: pod_vec(get("q")?),
                scales: pod_vec(get("scales")?),
                mins: if sym { None } else { Some(pod_vec(get("mins")?)) },
            },
            WeightFormat::Ternary => {
                let q: Vec<u32> = pod_vec(get("q")?);
                let scale: f32 = pod_vec::<f32>(get("scale")?)[0];
                if ternary::has_invalid_code(&q) {
                    return Err(Error::format("ternary", "segment `q` holds the invalid code 3"));
                }
                if !scale.is_finite() {
                    return Err(Error::format("ternary", format!("scale {scale} is not finite")));
                }
                QData::Ternary { q, scale }
            }
        };
        Ok(QTensor { rows, cols, data })
    }
}

/// Copy little-endian bytes into a typed vector (works whatever the alignment of `b`).
pub fn pod_vec<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    let n = b.len() / std::mem::size_of::<T>();
    let mut v = vec![T::zeroed(); n];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&b[..n * std::mem::size_of::<T>()]);
    v
}
