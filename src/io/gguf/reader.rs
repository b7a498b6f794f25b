//! GGUF container parsing from a byte slice: header, metadata key/values (every value type,
//! arrays included), tensor infos and the aligned tensor-data section.
//!
//! Follows the GGUF spec (ggml `docs/gguf.md`, versions 2 and 3 — both use 64-bit counts).
//! The input is untrusted: every count, string length and tensor extent is checked against
//! the bytes that remain before anything is allocated, so a hostile or truncated file gives
//! an [`Error::Format`] naming the file instead of a panic or a huge allocation.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// `GGUF` in little-endian byte order.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// `general.alignment` when absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// A ggml tensor element type (`enum ggml_type` in `ggml.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

impl GgmlType {
    /// Map a raw `ggml_type` id; unknown or retired ids give `None`.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            30 => BF16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            BF16 => "BF16",
        }
    }

    /// Elements per block (`ggml_blck_size`).
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => 32,
            Q2K | Q3K | Q4K | Q5K | Q6K => 256,
        }
    }

    /// Bytes per block (`ggml_type_size`), from the block structs in `ggml-common.h`.
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q2K => 84,
            Q3K => 110,
            Q4K => 144,
            Q5K => 176,
            Q6K => 210,
        }
    }

    /// Bytes taken by `n` elements, `None` if `n` is not whole blocks or overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size() as u64)
    }
}

/// One metadata value (`gguf_metadata_value_type`).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// Any integer type as `i64` (`u64` values above `i64::MAX` give `None`).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            MetaValue::U8(v) => v as i64,
            MetaValue::I8(v) => v as i64,
            MetaValue::U16(v) => v as i64,
            MetaValue::I16(v) => v as i64,
            MetaValue::U32(v) => v as i64,
            MetaValue::I32(v) => v as i64,
            MetaValue::U64(v) => i64::try_from(v).ok()?,
            MetaValue::I64(v) => v,
            _ => return None,
        })
    }
    /// Any number as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's header entry. `dims` is in GGUF order: `dims[0]` is the innermost
/// (contiguous) dimension, i.e. the reverse of the HF/PyTorch shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Bytes the data takes.
    pub nbytes: u64,
}

impl TensorInfo {
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Shape outermost first (`[out, in]` for a linear weight).
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF header. Tensor data stays in the caller's byte slice.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the tensor-data section.
    pub data_offset: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(self.what, format!("{} (at byte {})", msg.into(), self.pos))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, ctx: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("truncated file: {ctx} needs {n} bytes, {} remain", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, ctx: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, ctx)?);
        Ok(a)
    }
    fn u32(&mut self, ctx: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(ctx)?))
    }
    fn u64(&mut self, ctx: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(ctx)?))
    }
    /// A count of items of at least `min_item` bytes each, checked against what remains.
    fn count(&mut self, min_item: usize, ctx: &str) -> Result<usize> {
        let n = self.u64(ctx)?;
        let fits = usize::try_from(n).ok().and_then(|n| n.checked_mul(min_item)).is_some_and(|b| b <= self.remaining());
        if !fits {
            return Err(self.err(format!("{ctx} count {n} cannot fit in the {} bytes that remain", self.remaining())));
        }
        Ok(n as usize)
    }
    fn string(&mut self, ctx: &str) -> Result<String> {
        let n = self.count(1, ctx)?;
        let bytes = self.take(n, ctx)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{ctx} is not UTF-8")))
    }
}

/// Smallest encoded size of a value of type `ty` (used to bound array counts).
fn min_value_size(ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 9 => 8, // string / nested array: at least a u64 length
        _ => 8,
    }
}

/// Nested arrays deeper than this are rejected (guards the recursion).
const MAX_ARRAY_DEPTH: usize = 8;

fn read_value(c: &mut Cursor, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
    Ok(match ty {
        0 => MetaValue::U8(c.array::<1>(key)?[0]),
        1 => MetaValue::I8(c.array::<1>(key)?[0] as i8),
        2 => MetaValue::U16(u16::from_le_bytes(c.array(key)?)),
        3 => MetaValue::I16(i16::from_le_bytes(c.array(key)?)),
        4 => MetaValue::U32(c.u32(key)?),
        5 => MetaValue::I32(i32::from_le_bytes(c.array(key)?)),
        6 => MetaValue::F32(f32::from_le_bytes(c.array(key)?)),
        7 => match c.array::<1>(key)?[0] {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            b => return Err(c.err(format!("metadata `{key}`: bool byte {b} is not 0 or 1"))),
        },
        8 => MetaValue::String(c.string(key)?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(c.err(format!("metadata `{key}`: arrays nested too deep")));
            }
            let elem = c.u32(key)?;
            if elem > 12 {
                return Err(c.err(format!("metadata `{key}`: unknown array element type {elem}")));
            }
            let n = c.count(min_value_size(elem), key)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_value(c, elem, key, depth + 1)?);
            }
            MetaValue::Array(v)
        }
        10 => MetaValue::U64(c.u64(key)?),
        11 => MetaValue::I64(i64::from_le_bytes(c.array(key)?)),
        12 => MetaValue::F64(f64::from_le_bytes(c.array(key)?)),
        t => return Err(c.err(format!("metadata `{key}`: unknown value type {t}"))),
    })
}

fn read_tensor_info(c: &mut Cursor) -> Result<(String, Vec<u64>, GgmlType, u64)> {
    let name = c.string("tensor name")?;
    let n_dims = c.u32("tensor dims")? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(c.err(format!("tensor `{name}`: {n_dims} dimensions (1..={MAX_DIMS} allowed)")));
    }
    let mut dims = Vec::with_capacity(n_dims);
    for _ in 0..n_dims {
        dims.push(c.u64("tensor dim")?);
    }
    let raw_ty = c.u32("tensor type")?;
    let ty = GgmlType::from_id(raw_ty)
        .ok_or_else(|| c.err(format!("tensor `{name}`: unsupported ggml type id {raw_ty}")))?;
    let offset = c.u64("tensor offset")?;
    Ok((name, dims, ty, offset))
}

/// Parse the header of a GGUF file whose complete contents are `buf`. `what` names the file
/// in errors. Tensor extents are checked to lie inside `buf`.
pub fn parse(buf: &[u8], what: &str) -> Result<GgufHeader> {
    let mut c = Cursor { buf, pos: 0, what };
    let magic = c.array::<4>("magic")?;
    if magic != GGUF_MAGIC {
        return Err(c.err(format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(c.err(format!("GGUF version {version} (only 2 and 3 are supported)")));
    }
    // A tensor info is at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes.
    let n_tensors = c.count(32, "tensor")?;
    // A key/value is at least 8 (key len) + 4 (type) + 1 byte.
    let n_kv = c.count(13, "metadata")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        let ty = c.u32("metadata type")?;
        let v = read_value(&mut c, ty, &key, 0)?;
        if metadata.insert(key.clone(), v).is_some() {
            return Err(c.err(format!("duplicate metadata key `{key}`")));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_i64() {
            Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
            _ => return Err(c.err(format!("general.alignment {v:?} is not a power of two"))),
        },
    };
    let mut raw = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        raw.push(read_tensor_info(&mut c)?);
    }
    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let tensors = raw
        .into_iter()
        .map(|(name, dims, ty, rel)| check_tensor(buf.len() as u64, what, data_offset, alignment, name, dims, ty, rel))
        .collect::<Result<Vec<_>>>()?;
    let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::format(what, format!("duplicate tensor `{}`", w[0])));
    }
    Ok(GgufHeader { version, metadata, tensors, alignment, data_offset })
}

#[allow(clippy::too_many_arguments)]
fn check_tensor(
    file_len: u64,
    what: &str,
    data_offset: u64,
    alignment: u64,
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    rel: u64,
) -> Result<TensorInfo> {
    let bad = |msg: String| Error::format(what, format!("tensor `{name}`: {msg}"));
    let numel =
        dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
    if !dims[0].is_multiple_of(ty.block_size() as u64) {
        return Err(bad(format!(
            "row length {} is not a multiple of the {} block size {}",
            dims[0],
            ty.name(),
            ty.block_size()
        )));
    }
    let nbytes = ty.bytes_for(numel).ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
    if !rel.is_multiple_of(alignment) {
        return Err(bad(format!("offset {rel} is not aligned to {alignment}")));
    }
    let offset = data_offset.checked_add(rel);
    match offset.and_then(|o| o.checked_add(nbytes)) {
        Some(end) if end <= file_len => {}
        _ => {
            return Err(bad(format!(
            "data [{data_offset} + {rel}, +{nbytes} bytes) runs past the end of the {file_len}-byte file (truncated?)"
        )))
        }
    }
    Ok(TensorInfo { name, dims, ty, offset: data_offset + rel, nbytes })
}
