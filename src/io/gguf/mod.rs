//! GGUF v3 (and v2) reader: header, metadata, tensor infos, dequantization to f32, name mapping
//! onto HF names, and the embedded tokenizer turned into an HF `tokenizer.json`.
//! Follows the GGUF spec in ggml's `docs/gguf.md`; see the submodules for the other
//! references (ggml-quants.c, llama.cpp's llama-vocab.cpp, transformers' GGUF loader).

pub mod config;
pub mod dequant;
pub mod names;
pub mod native;
pub mod reader;
pub mod tokenizer;

use crate::error::{Error, Result};
use crate::io::{Checkpoint, Tensor, TensorData, WeightSource};
use names::{ArchNames, Fix};
use reader::{GgufHeader, TensorInfo};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The bytes of a whole GGUF file: memory-mapped natively, owned in the browser.
pub type Bytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// How [`GgufSource::load`] hands tensors over.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Return Q4_0 / Q4_1 matrices as `TensorData::Quant` in `int4_sym_g32` /
    /// `int4_asym_g32`, which hold the same values bit for bit (see [`native`]).
    /// Off by default: every tensor is dequantized to f32.
    pub native_int4: bool,
}

/// A GGUF file's tensors under HF names, dequantized to f32 on load (or repacked losslessly,
/// see [`OpenOptions`]).
pub struct GgufSource {
    bytes: Bytes,
    what: String,
    /// HF name → (GGUF tensor, row fix).
    map: BTreeMap<String, (TensorInfo, Fix)>,
    n_heads: usize,
    n_kv_heads: usize,
    opts: OpenOptions,
}

impl GgufSource {
    /// Map the header's tensors for `arch`; tensors HF has no name for are left out.
    pub fn new(
        bytes: Bytes,
        header: &GgufHeader,
        arch: &ArchNames,
        cfg: &serde_json::Value,
        what: &str,
        opts: OpenOptions,
    ) -> Result<Self> {
        let get = |k: &str| cfg.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        let n_heads = get("num_attention_heads").unwrap_or(0);
        let n_kv_heads = get("num_key_value_heads").unwrap_or(n_heads);
        let mut map = BTreeMap::new();
        for t in &header.tensors {
            if let Some((hf, fix)) = arch.to_hf(&t.name) {
                if map.insert(hf.clone(), (t.clone(), fix)).is_some() {
                    return Err(Error::format(what, format!("two GGUF tensors map onto `{hf}`")));
                }
            }
        }
        Ok(GgufSource { bytes, what: what.to_string(), map, n_heads, n_kv_heads, opts })
    }

    fn entry(&self, name: &str) -> Result<&(TensorInfo, Fix)> {
        self.map.get(name).ok_or_else(|| Error::MissingTensor(format!("{name} (in {})", self.what)))
    }

    /// The GGUF tensor behind an HF name (type, dims, offset).
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        Ok(&self.entry(name)?.0)
    }
}

impl WeightSource for GgufSource {
    fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.0.hf_shape())
    }

    fn load(&self, name: &str) -> Result<Tensor> {
        let (t, fix) = self.entry(name)?;
        let bytes = (*self.bytes).as_ref();
        // Extents were checked against the file length when the header was parsed.
        let data = &bytes[t.offset as usize..(t.offset + t.nbytes) as usize];
        let shape = t.hf_shape(); // [out, in] for linear weights, [n] for norms / biases
        let rows = shape[0];
        let n_head = match fix {
            Fix::None => None,
            Fix::PermuteQ => Some(self.n_heads),
            Fix::PermuteK => Some(self.n_kv_heads),
        };
        if self.opts.native_int4 && shape.len() == 2 {
            let hd = n_head.map(|n| names::head_dim(rows, n, name)).transpose()?;
            let permuted;
            let raw = match hd {
                Some(hd) => {
                    permuted = native::permute_rows(data, rows, |r| names::gguf_row_of(r, hd));
                    &permuted[..]
                }
                None => data,
            };
            if let Some(q) = native::to_qtensor(t.ty, raw, rows, shape[1]) {
                return Ok(Tensor { shape, data: TensorData::Quant(q) });
            }
        }
        let v = dequant::dequantize(t.ty, data, t.numel() as usize)
            .map_err(|e| Error::format(&self.what, format!("tensor `{}`: {e}", t.name)))?;
        let v = match n_head {
            Some(n) => names::unpermute_rows(&v, rows, n, name)?,
            None => v,
        };
        Ok(Tensor::f32(shape, v))
    }
}

/// Open a whole GGUF file held in memory; `what` names it in errors.
pub fn open_bytes(bytes: Bytes, what: &str, opts: OpenOptions) -> Result<Checkpoint> {
    let header = reader::parse((*bytes).as_ref(), what)?;
    let arch_name = header
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::format(what, "metadata `general.architecture` is missing"))?
        .to_string();
    let arch = names::arch_names(&arch_name)?;
    let config = config::synthesize(&header, &arch_name, what)?;
    let tokenizer = tokenizer::spec(&header, what)?;
    let weights = GgufSource::new(bytes, &header, arch, &config, what, opts)?;
    Ok(Checkpoint { config, tokenizer, weights: Box::new(weights), preprocessor: None })
}

/// Open a `.gguf` file (memory-mapped) as a [`Checkpoint`] with HF tensor names and config;
/// tensors load as f32.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_file(path: &std::path::Path) -> Result<Checkpoint> {
    open_file_with(path, OpenOptions::default())
}

/// [`open_file`] with options (e.g. lossless INT4 for Q4_0 / Q4_1 tensors).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_file_with(path: &std::path::Path, opts: OpenOptions) -> Result<Checkpoint> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; like every mmap reader we rely on the file not being
    // truncated by another process while it is open.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    open_bytes(Arc::new(map), &path.display().to_string(), opts)
}
