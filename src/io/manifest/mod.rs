//! The converted format: `manifest.json` + safetensors shards (`model-00000.safetensors`, ...).
//!
//! `manifest.json` holds the HF config, the tokenizer spec, the image processor's settings
//! (vision models), and for every tensor its shape, weight format and segments (`q`, `scales`, `mins` or `w`), each located by shard index,
//! *absolute* byte offset in the shard file and length. The offsets are multiples of 16, so a
//! segment can go to a GPU storage buffer straight from the file bytes. Every shard is also a
//! plain safetensors file in which segment `s` of tensor `t` is the tensor `t.s` (layouts in
//! [`segment_layout`]); readers check the manifest and the shard headers against each other.
//! Shards and side files carry a size and a sha256.
//!
//! Two readers share the per-tensor decoding ([`decode_tensor`]): [`open_dir`] (native,
//! memory-mapped) and [`ManifestLoader`] (browser: one shard's bytes at a time).

mod loader;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub mod writer;

pub use loader::{ManifestLoader, MemWeights, SkipSink};
#[cfg(not(target_arch = "wasm32"))]
pub use native::{open_dir, ManifestWeights};

use crate::error::{Error, Result};
use crate::io::safetensors::{Dtype, Header};
use crate::io::{Tensor, TensorData, TokenizerSpec, WeightSource};
use crate::quant::{pod_vec, QTensor, WeightFormat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const FORMAT: &str = "webvlm";
pub const VERSION: u32 = 1;
/// Segment offsets in shards are multiples of this (the writer uses 16).
pub const SEGMENT_ALIGN: u64 = 4;

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub model_type: String,
    /// The HF `config.json` document.
    pub config: serde_json::Value,
    pub tokenizer: ManifestTokenizer,
    /// The image processor's settings (vision models only; absent in text-only manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessor: Option<serde_json::Value>,
    pub tensors: Vec<TensorEntry>,
    pub shards: Vec<FileEntry>,
    /// Side files (`tokenizer.json`).
    pub files: Vec<FileEntry>,
}

/// [`TokenizerSpec`] fields plus the file holding `tokenizer.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestTokenizer {
    #[serde(flatten)]
    pub spec: TokenizerSpec,
    pub file: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub format: WeightFormat,
    /// Segment name (`q`, `scales`, `mins`, `w`) → location.
    pub segments: BTreeMap<String, Segment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Index into [`Manifest::shards`].
    pub shard: usize,
    /// Absolute byte offset in the shard file.
    pub offset: u64,
    pub length: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// A plain file name next to `manifest.json`.
    pub file: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `[rows, cols]` of a matrix, or an error naming the tensor.
fn matrix_dims(name: &str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [r, c] => Ok((*r, *c)),
        _ => Err(Error::Shape(format!("tensor `{name}`: quantized formats need 2 dims, shape is {shape:?}"))),
    }
}

/// How each segment of a tensor is stored in a shard: `(segment, dtype, shape)`.
/// `f32` tensors of any rank have one segment `w`; the other formats need `[rows, cols]`.
pub fn segment_layout(
    name: &str,
    fmt: WeightFormat,
    shape: &[usize],
) -> Result<Vec<(&'static str, Dtype, Vec<usize>)>> {
    if fmt == WeightFormat::F32 {
        return Ok(vec![("w", Dtype::F32, shape.to_vec())]);
    }
    let (r, c) = matrix_dims(name, shape)?;
    Ok(match fmt {
        WeightFormat::F32 => unreachable!("handled above"),
        WeightFormat::F16 => vec![("w", Dtype::F16, vec![r, c])],
        WeightFormat::Int8 => vec![("q", Dtype::I8, vec![r, c]), ("scales", Dtype::F32, vec![r])],
        WeightFormat::Ternary => vec![("q", Dtype::U32, vec![r, c.div_ceil(16)]), ("scale", Dtype::F32, vec![1])],
        WeightFormat::Int4 { group, sym } => {
            if c % group != 0 {
                return Err(Error::Shape(format!("tensor `{name}`: group {group} does not divide {c} columns")));
            }
            let mut v = vec![("q", Dtype::U32, vec![r, c / 8]), ("scales", Dtype::F16, vec![r, c / group])];
            if !sym {
                v.push(("mins", Dtype::F16, vec![r, c / group]));
            }
            v
        }
    })
}

/// Number of bytes of a segment stored with `dtype` and `shape`, overflow-checked.
fn segment_bytes(dtype: Dtype, shape: &[usize]) -> Option<u64> {
    shape.iter().try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64))
}

fn plain_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\']) && !s.contains('\0')
}

impl Manifest {
    /// Parse and [`validate`](Manifest::validate) a `manifest.json` document.
    pub fn parse(json: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_str(json).map_err(|e| Error::format("manifest.json", e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes")
    }

    /// Check everything that can be checked without the shards: format and version, file
    /// names, hashes, and for each tensor that its segments are the ones its format needs,
    /// with the right lengths, aligned, inside one shard's size.
    pub fn validate(&self) -> Result<()> {
        let err = |msg: String| Error::format("manifest.json", msg);
        if self.format != FORMAT || self.version != VERSION {
            return Err(err(format!(
                "format `{}` version {}; this reader handles `{FORMAT}` version {VERSION}",
                self.format, self.version
            )));
        }
        for f in self.shards.iter().chain(&self.files) {
            if !plain_file_name(&f.file) {
                return Err(err(format!("`{}` is not a plain file name", f.file)));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(err(format!("{}: sha256 `{}` is not 64 lowercase hex digits", f.file, f.sha256)));
            }
        }
        if self.preprocessor.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(err("`preprocessor` is not a JSON object".into()));
        }
        if !self.files.iter().any(|f| f.file == self.tokenizer.file) {
            return Err(err(format!("tokenizer file `{}` is not listed in `files`", self.tokenizer.file)));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tensors {
            if !seen.insert(t.name.as_str()) {
                return Err(err(format!("tensor `{}` listed twice", t.name)));
            }
            self.validate_tensor(t)?;
        }
        Ok(())
    }

    fn validate_tensor(&self, t: &TensorEntry) -> Result<()> {
        let err = |msg: String| Error::format("manifest.json", format!("tensor `{}`: {msg}", t.name));
        let layout = segment_layout(&t.name, t.format, &t.shape)?;
        if layout.len() != t.segments.len() || layout.iter().any(|(s, ..)| !t.segments.contains_key(*s)) {
            let want: Vec<&str> = layout.iter().map(|(s, ..)| *s).collect();
            let got: Vec<&String> = t.segments.keys().collect();
            return Err(err(format!("format {} needs segments {want:?}, has {got:?}", t.format.name())));
        }
        let shard = t.segments.values().next().map(|s| s.shard);
        for (seg, dtype, shape) in &layout {
            let s = &t.segments[*seg];
            let want = segment_bytes(*dtype, shape).ok_or_else(|| err(format!("shape {:?} overflows", t.shape)))?;
            if s.length != want {
                return Err(err(format!("segment `{seg}` is {} bytes, shape {:?} needs {want}", s.length, t.shape)));
            }
            if Some(s.shard) != shard {
                return Err(err("segments span several shards".into()));
            }
            let size = self
                .shards
                .get(s.shard)
                .map(|f| f.size)
                .ok_or_else(|| err(format!("segment `{seg}` names shard {} of {}", s.shard, self.shards.len())))?;
            if !s.offset.is_multiple_of(SEGMENT_ALIGN) {
                return Err(err(format!("segment `{seg}` offset {} is not {SEGMENT_ALIGN}-byte aligned", s.offset)));
            }
            if s.offset.checked_add(s.length).is_none_or(|e| e > size) {
                return Err(err(format!("segment `{seg}` runs past the end of {}", self.shards[s.shard].file)));
            }
        }
        Ok(())
    }

    /// The shard holding tensor `t` (`None` for a tensor with no segments, which
    /// [`validate`](Manifest::validate) never lets through).
    pub fn shard_of(t: &TensorEntry) -> Option<usize> {
        t.segments.values().next().map(|s| s.shard)
    }

    /// The complete tokenizer spec, given the text of its `tokenizer.json`.
    pub fn tokenizer_spec(&self, tokenizer_json: String) -> TokenizerSpec {
        TokenizerSpec { json: tokenizer_json, ..self.tokenizer.spec.clone() }
    }
}

/// Check a shard's bytes against its manifest entry (size, sha256) and parse its header.
pub fn check_shard(entry: &FileEntry, bytes: &[u8]) -> Result<Header> {
    check_shard_with(entry, bytes, true)
}

/// [`check_shard`], the sha256 check only when `hash` (a caller that verified it already).
pub fn check_shard_with(entry: &FileEntry, bytes: &[u8], hash: bool) -> Result<Header> {
    if bytes.len() as u64 != entry.size {
        return Err(Error::format(
            &entry.file,
            format!("{} bytes, the manifest says {} (truncated or wrong file)", bytes.len(), entry.size),
        ));
    }
    if hash {
        check_hash(entry, bytes)?;
    }
    Header::parse(&entry.file, bytes)
}

/// Check bytes against a file entry's sha256.
pub fn check_hash(entry: &FileEntry, bytes: &[u8]) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual != entry.sha256 {
        return Err(Error::Hash { file: entry.file.clone(), expected: entry.sha256.clone(), actual });
    }
    Ok(())
}

/// The segments of tensor `t` in the bytes of its shard (`header` parsed from them), as
/// `(segment, bytes)` in layout order. Every segment must be the shard's tensor
/// `<name>.<segment>`, at the manifest's offset, with the layout's dtype.
pub fn tensor_segments<'a>(t: &TensorEntry, header: &Header, bytes: &'a [u8]) -> Result<Vec<(&'static str, &'a [u8])>> {
    let mut segs = Vec::new();
    for (seg, dtype, shape) in segment_layout(&t.name, t.format, &t.shape)? {
        let loc = t
            .segments
            .get(seg)
            .ok_or_else(|| Error::format("manifest.json", format!("tensor `{}` has no segment `{seg}`", t.name)))?;
        let st_name = format!("{}.{seg}", t.name);
        let info = header.info(&st_name)?;
        let range = header.file_range(&st_name)?;
        if info.dtype != dtype
            || info.shape != shape
            || range.start as u64 != loc.offset
            || range.len() as u64 != loc.length
        {
            return Err(Error::format(
                &header.file,
                format!(
                    "`{st_name}` is {} {:?} at {}..{}, the manifest says {} {shape:?} at {}..{}",
                    info.dtype.name(),
                    info.shape,
                    range.start,
                    range.end,
                    dtype.name(),
                    loc.offset,
                    loc.offset + loc.length
                ),
            ));
        }
        segs.push((seg, header.data(bytes, &st_name)?));
    }
    Ok(segs)
}

/// Decode tensor `t` from the bytes of its shard ([`tensor_segments`]). `f32` tensors become
/// [`TensorData::F32`], the others [`TensorData::Quant`].
pub fn decode_tensor(t: &TensorEntry, header: &Header, bytes: &[u8]) -> Result<Tensor> {
    let segs = tensor_segments(t, header, bytes)?;
    let data = if t.format == WeightFormat::F32 {
        TensorData::F32(pod_vec::<f32>(segs[0].1))
    } else {
        let (r, c) = matrix_dims(&t.name, &t.shape)?;
        TensorData::Quant(QTensor::from_segments(t.format, r, c, &segs)?)
    };
    Ok(Tensor { shape: t.shape.clone(), data })
}

/// The shape-only stand-in the loader keeps for a tensor a [`TensorSink`] took: a
/// [`QTensor::placeholder`] for matrices, empty values otherwise.
pub fn placeholder(t: &TensorEntry) -> Tensor {
    let data = match t.shape[..] {
        [r, c] => TensorData::Quant(QTensor::placeholder(t.format, r, c)),
        _ => TensorData::F32(Vec::new()),
    };
    Tensor { shape: t.shape.clone(), data }
}

/// Takes some tensors as their shard is added (the GPU upload, [`crate::gpu::stream`]); the
/// loader then keeps only their [`placeholder`].
pub trait TensorSink {
    /// Whether this sink takes `t`.
    fn wants(&self, t: &TensorEntry) -> bool;
    /// Take `t`: its `(segment, bytes)` in layout order, borrowed from the shard being added.
    fn take(&mut self, t: &TensorEntry, segments: &[(&str, &[u8])]) -> Result<()>;
}

/// A manifest as a [`WeightSource`] of names and shapes only (planning before any shard).
pub struct ManifestShapes<'a>(pub &'a Manifest);

impl WeightSource for ManifestShapes<'_> {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.tensors.iter().map(|t| t.name.clone()).collect();
        v.sort();
        v
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let t = self.0.tensors.iter().find(|t| t.name == name);
        t.map(|t| t.shape.clone()).ok_or_else(|| Error::MissingTensor(name.into()))
    }
    fn load(&self, name: &str) -> Result<Tensor> {
        Err(Error::Invalid(format!("`{name}`: the manifest alone holds no tensor data")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(preprocessor: Option<serde_json::Value>) -> Manifest {
        let sha = "0".repeat(64);
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            model_type: "llava".into(),
            config: serde_json::json!({}),
            tokenizer: ManifestTokenizer { spec: TokenizerSpec::default(), file: "tokenizer.json".into() },
            preprocessor,
            tensors: vec![],
            shards: vec![],
            files: vec![FileEntry { file: "tokenizer.json".into(), size: 2, sha256: sha }],
        }
    }

    #[test]
    fn preprocessor_round_trips_and_is_optional() {
        let text = minimal(None).to_json();
        assert!(!text.contains("preprocessor"), "text-only manifests carry no `preprocessor` key");
        assert_eq!(Manifest::parse(&text).unwrap().preprocessor, None);
        let pre = serde_json::json!({"crop_size": {"height": 336, "width": 336}, "patch_size": 14});
        let back = Manifest::parse(&minimal(Some(pre.clone())).to_json()).unwrap();
        assert_eq!(back.preprocessor, Some(pre));
        let e = Manifest::parse(&minimal(Some(serde_json::json!([1, 2]))).to_json()).unwrap_err().to_string();
        assert!(e.contains("preprocessor"), "{e}");
    }
}
