//! safetensors reading and writing, following the format description in
//! huggingface/safetensors `README.md` ("Format"): an 8-byte little-endian header length `N`,
//! `N` bytes of JSON (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`,
//! offsets relative to the data section that follows), then the data section.
//!
//! The reader checks every length before it trusts it (header length against a limit and the
//! file size, each tensor's offsets against the data section, `numel · dtype size` against the
//! byte length with overflow checks, overlaps) and names the file and the tensor in every
//! error. The writer places each tensor on a [`ALIGN`]-byte boundary of the *file* (the header
//! is padded with spaces, gaps are filled with small `U8` padding tensors so the file stays
//! contiguous as the reference implementation requires), so absolute file offsets can be
//! handed to a GPU upload unchanged.

use crate::error::{Error, Result};
use crate::quant::pod_vec;
use half::{bf16, f16};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// Largest header accepted (the reference implementation uses the same 100 MB limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Every tensor written by [`write`] starts at a multiple of this many bytes in the file.
pub const ALIGN: usize = 16;
/// Name prefix of the filler tensors [`write`] inserts between aligned tensors.
pub const PAD_PREFIX: &str = "__pad__.";

/// Element types this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    I8,
    U8,
    U32,
    I32,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::U32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
        }
    }
    /// The spelling used in safetensors headers.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I8 => "I8",
            Dtype::U8 => "U8",
            Dtype::U32 => "U32",
            Dtype::I32 => "I32",
        }
    }
    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I8" => Dtype::I8,
            "U8" => Dtype::U8,
            "U32" => Dtype::U32,
            "I32" => Dtype::I32,
            _ => return None,
        })
    }
}

/// One tensor of a header. `begin..end` is relative to the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub begin: usize,
    pub end: usize,
}

/// A parsed and validated header. Owns no tensor data: pair it with the file's bytes.
#[derive(Clone, Debug)]
pub struct Header {
    /// The file name used in error messages.
    pub file: String,
    /// Absolute offset of the data section (`8 + N`).
    pub data_start: usize,
    /// `__metadata__`, if present.
    pub metadata: BTreeMap<String, String>,
    /// Tensors in data order.
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl Header {
    /// Parse and validate the header of a safetensors file whose complete contents are `bytes`.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Header> {
        let err = |msg: String| Error::format(file, msg);
        if bytes.len() < 8 {
            return Err(err(format!("truncated: {} bytes, a safetensors file needs at least 8", bytes.len())));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if n > MAX_HEADER_BYTES {
            return Err(err(format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")));
        }
        if n > (bytes.len() - 8) as u64 {
            return Err(err(format!(
                "header length {n} runs past the end of the file ({} bytes): truncated or not safetensors",
                bytes.len()
            )));
        }
        let data_start = 8 + n as usize;
        let text = std::str::from_utf8(&bytes[8..data_start]).map_err(|e| err(format!("header is not UTF-8: {e}")))?;
        let doc: Map<String, Value> = serde_json::from_str(text).map_err(|e| err(format!("header JSON: {e}")))?;
        let data_len = bytes.len() - data_start;
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::with_capacity(doc.len());
        for (name, v) in &doc {
            if name == "__metadata__" {
                metadata = parse_metadata(file, v)?;
            } else {
                tensors.push(parse_tensor(file, name, v, data_len)?);
            }
        }
        tensors.sort_by_key(|t| (t.begin, t.end));
        for w in tensors.windows(2) {
            if w[1].begin < w[0].end {
                return Err(err(format!("tensors `{}` and `{}` overlap", w[0].name, w[1].name)));
            }
        }
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(Header { file: file.to_string(), data_start, metadata, tensors, index })
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.get(name).ok_or_else(|| Error::format(&self.file, format!("no tensor `{name}`")))
    }

    /// Absolute byte range of `name` in the file.
    pub fn file_range(&self, name: &str) -> Result<std::ops::Range<usize>> {
        let t = self.info(name)?;
        Ok(self.data_start + t.begin..self.data_start + t.end)
    }

    /// Raw bytes of `name`; `bytes` must be the file this header was parsed from.
    pub fn data<'a>(&self, bytes: &'a [u8], name: &str) -> Result<&'a [u8]> {
        let r = self.file_range(name)?;
        bytes
            .get(r)
            .ok_or_else(|| Error::format(&self.file, format!("tensor `{name}` lies past the end of the given bytes")))
    }

    /// `name` as dense f32 values (F32, F16 and BF16 tensors).
    pub fn to_f32(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        let b = self.data(bytes, name)?;
        Ok(match t.dtype {
            Dtype::F32 => pod_vec::<f32>(b),
            Dtype::F16 => pod_vec::<f16>(b).iter().map(|v| v.to_f32()).collect(),
            Dtype::BF16 => pod_vec::<bf16>(b).iter().map(|v| v.to_f32()).collect(),
            d => {
                return Err(Error::Unsupported(format!(
                    "{}: tensor `{name}` has dtype {} where a float tensor is needed",
                    self.file,
                    d.name()
                )))
            }
        })
    }
}

fn parse_metadata(file: &str, v: &Value) -> Result<BTreeMap<String, String>> {
    let obj = v.as_object().ok_or_else(|| Error::format(file, "`__metadata__` is not an object"))?;
    obj.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => Err(Error::format(file, format!("`__metadata__.{k}` is not a string"))),
        })
        .collect()
}

fn parse_tensor(file: &str, name: &str, v: &Value, data_len: usize) -> Result<TensorInfo> {
    let err = |msg: String| Error::format(file, format!("tensor `{name}`: {msg}"));
    let obj = v.as_object().ok_or_else(|| err("entry is not an object".into()))?;
    let dtype_s = obj.get("dtype").and_then(Value::as_str).ok_or_else(|| err("no `dtype` string".into()))?;
    let dtype = Dtype::parse(dtype_s)
        .ok_or_else(|| Error::Unsupported(format!("{file}: tensor `{name}` has dtype `{dtype_s}`")))?;
    let shape_v = obj.get("shape").and_then(Value::as_array).ok_or_else(|| err("no `shape` array".into()))?;
    let mut shape = Vec::with_capacity(shape_v.len());
    let mut numel: usize = 1;
    for d in shape_v {
        let d = d.as_u64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| err(format!("bad dimension {d}")))?;
        numel = numel.checked_mul(d).ok_or_else(|| err(format!("shape {shape_v:?} overflows")))?;
        shape.push(d);
    }
    let offs = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| err("no `data_offsets` pair".into()))?;
    let off = |i: usize| offs[i].as_u64().ok_or_else(|| err(format!("bad data offset {}", offs[i])));
    let (begin, end) = (off(0)?, off(1)?);
    if begin > end || end > data_len as u64 {
        return Err(err(format!(
            "data_offsets [{begin}, {end}] outside the {data_len}-byte data section (truncated file?)"
        )));
    }
    let (begin, end) = (begin as usize, end as usize);
    let want = numel.checked_mul(dtype.size()).ok_or_else(|| err(format!("shape {shape:?} overflows")))?;
    if end - begin != want {
        return Err(err(format!("{} bytes for shape {shape:?} {dtype_s}, which needs {want}", end - begin)));
    }
    Ok(TensorInfo { name: name.to_string(), dtype, shape, begin, end })
}

/// One tensor handed to [`write`].
#[derive(Clone, Debug)]
pub struct WriteTensor<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// Where [`write`] put things: absolute file ranges of each given tensor (in the order given),
/// and the total file size.
#[derive(Clone, Debug)]
pub struct Layout {
    pub ranges: Vec<std::ops::Range<usize>>,
    pub size: usize,
}

fn pad_to(x: usize, align: usize) -> usize {
    x.div_ceil(align) * align
}

/// Plan the file: the header bytes (already padded) and the layout, without writing data.
fn plan(tensors: &[WriteTensor], metadata: &BTreeMap<String, String>) -> Result<(Vec<u8>, Layout)> {
    let mut rel = Vec::with_capacity(tensors.len());
    let mut pads = Vec::new();
    let mut pos = 0usize;
    for t in tensors {
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(t.dtype.size())) != Some(t.data.len()) {
            return Err(Error::Shape(format!(
                "tensor `{}`: {} bytes for shape {:?} {}",
                t.name,
                t.data.len(),
                t.shape,
                t.dtype.name()
            )));
        }
        let start = pad_to(pos, ALIGN);
        if start > pos {
            pads.push((pos, start));
        }
        rel.push((start, start + t.data.len()));
        pos = start + t.data.len();
    }
    let mut doc = Map::new();
    if !metadata.is_empty() {
        doc.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    for (t, &(b, e)) in tensors.iter().zip(&rel) {
        if doc.contains_key(&t.name) {
            return Err(Error::Invalid(format!("tensor `{}` given twice", t.name)));
        }
        doc.insert(t.name.clone(), entry(t.dtype, &t.shape, b, e));
    }
    for (i, &(b, e)) in pads.iter().enumerate() {
        doc.insert(format!("{PAD_PREFIX}{i}"), entry(Dtype::U8, &[e - b], b, e));
    }
    let mut header = serde_json::to_vec(&Value::Object(doc))?;
    // Pad with spaces so that the data section starts on an ALIGN boundary of the file.
    header.resize(pad_to(8 + header.len(), ALIGN) - 8, b' ');
    let data_start = 8 + header.len();
    let ranges = rel.iter().map(|&(b, e)| data_start + b..data_start + e).collect();
    Ok((header, Layout { ranges, size: data_start + pos }))
}

fn entry(dtype: Dtype, shape: &[usize], b: usize, e: usize) -> Value {
    serde_json::json!({ "dtype": dtype.name(), "shape": shape, "data_offsets": [b, e] })
}

/// Where [`write`] would put `tensors`, without writing anything.
pub fn layout(tensors: &[WriteTensor], metadata: &BTreeMap<String, String>) -> Result<Layout> {
    plan(tensors, metadata).map(|(_, l)| l)
}

/// Write a safetensors file to `w` (`file` names it in errors): tensors in the order given,
/// each starting on an [`ALIGN`]-byte boundary of the file. Returns where each tensor landed.
pub fn write(
    file: &str,
    w: &mut dyn Write,
    tensors: &[WriteTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<Layout> {
    let (header, layout) = plan(tensors, metadata)?;
    let io = |e| Error::io(file, e);
    w.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&header).map_err(io)?;
    let mut pos = 8 + header.len();
    let zeros = [0u8; ALIGN];
    for (t, r) in tensors.iter().zip(&layout.ranges) {
        w.write_all(&zeros[..r.start - pos]).map_err(io)?;
        w.write_all(t.data).map_err(io)?;
        pos = r.end;
    }
    Ok(layout)
}

/// [`write`] into a new byte vector.
pub fn serialize(tensors: &[WriteTensor], metadata: &BTreeMap<String, String>) -> Result<(Vec<u8>, Layout)> {
    let mut out = Vec::new();
    let layout = write("<memory>", &mut out, tensors, metadata)?;
    Ok((out, layout))
}
