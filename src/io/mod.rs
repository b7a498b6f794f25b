//! Reading checkpoints: HF safetensors folders, GGUF files and converted webvlm folders all
//! become one [`Checkpoint`]: an HF-style config, a tokenizer and a [`WeightSource`] whose
//! tensor names are the HF names (`model.layers.0.self_attn.q_proj.weight`). Model code only
//! ever sees HF names; `gguf::names` maps GGUF names onto them.

pub mod gguf;
pub mod hf;
pub mod manifest;
pub mod safetensors;

use crate::error::Result;
use crate::quant::QTensor;

/// A tensor as a source hands it over.
#[derive(Clone, Debug)]
pub enum TensorData {
    /// Dense values, row-major.
    F32(Vec<f32>),
    /// Already in a runtime weight format (converted checkpoints). Always 2-D.
    Quant(QTensor),
}

#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor { shape, data: TensorData::F32(data) }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Dense values whatever the storage (dequantizes quantized tensors).
    pub fn into_f32(self) -> Vec<f32> {
        match self.data {
            TensorData::F32(v) => v,
            TensorData::Quant(q) => q.dequantize(),
        }
    }
}

/// Where weights come from. Names are HF names.
pub trait WeightSource: Send + Sync {
    /// Every tensor name, sorted.
    fn names(&self) -> Vec<String>;
    /// Shape of `name`, outermost first (`[out, in]` for linear weights).
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// Read (and dequantize where the source format is not a runtime format) one tensor.
    fn load(&self, name: &str) -> Result<Tensor>;
    fn contains(&self, name: &str) -> bool {
        self.shape(name).is_ok()
    }
}

/// Dense tensors in a map (tests, benchmarks): `load` hands out a copy, so a tensor may be
/// loaded more than once.
impl WeightSource for std::collections::BTreeMap<String, Tensor> {
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.get(name).map(|t| t.shape.clone()).ok_or_else(|| crate::Error::MissingTensor(name.into()))
    }
    fn load(&self, name: &str) -> Result<Tensor> {
        self.get(name).cloned().ok_or_else(|| crate::Error::MissingTensor(name.into()))
    }
}

/// What the tokenizer needs beyond its `tokenizer.json`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TokenizerSpec {
    /// A complete HF `tokenizer.json` document.
    #[serde(skip)]
    pub json: String,
    /// Prepend BOS when encoding raw text (`add_bos_token` / `tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    pub bos_id: Option<u32>,
    pub bos_token: Option<String>,
    /// Generation stops on any of these.
    pub eos_ids: Vec<u32>,
    pub eos_token: Option<String>,
    /// Jinja chat template, as shipped with the model.
    pub chat_template: Option<String>,
}

/// A model checkpoint opened from any supported source.
pub struct Checkpoint {
    /// HF-style `config.json` (for GGUF, synthesized from its metadata).
    pub config: serde_json::Value,
    pub tokenizer: TokenizerSpec,
    pub weights: Box<dyn WeightSource>,
    /// The image processor's settings, for vision models: `preprocessor_config.json` merged
    /// with `processor_config.json` (see [`hf::merge_preprocessor`]); `None` for text-only models.
    pub preprocessor: Option<serde_json::Value>,
}

/// Open `path`: a GGUF file, a converted folder (`manifest.json`) or an HF folder (`config.json`).
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<Checkpoint> {
    use crate::error::Error;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        if path.join("manifest.json").exists() {
            manifest::open_dir(path)
        } else if path.join("config.json").exists() {
            hf::open_dir(path)
        } else {
            Err(Error::format(
                path.display().to_string(),
                "folder has neither manifest.json (converted) nor config.json (HF checkpoint)",
            ))
        }
    } else {
        gguf::open_file(path)
    }
}
