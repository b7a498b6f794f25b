//! Calibration-aware post-training quantization for `webvlm convert` (issue 7).
//!
//! Methods are pure functions over a weight `W: [rows, cols]` and its calibration inputs
//! (`X: [n, cols]` or `H = XᵀX`), and they produce the runtime's existing formats (INT4 sym /
//! asym g32/64/128, INT8 per row; [`grid`]), so kernels and the file format are unchanged:
//! - RTN: [`crate::quant::QTensor::quantize`] (= [`grid::rtn`]);
//! - GPTQ (Frantar et al. 2022, IST-DASLab/gptq `gptq.py`): [`gptq`];
//! - AWQ (Lin et al. 2023, mit-han-lab/llm-awq `auto_scale.py`): [`awq`], with the scales folded
//!   into the preceding RMSNorm / linear ([`pipeline`]);
//! - mixed INT4/INT8 by measured sensitivity with NNCF's ratio semantics: [`mixed`];
//! - entropy-guided INT4/INT8 allocation by blocks of layers (Q-VLM's entropy proxy): [`entropy`].
//!
//! [`stats`] gathers per-linear input statistics from a CPU forward of the f32 model over
//! calibration text ([`data`]) or, for LLaVA ([`vlm`]), images with prompts ([`images`],
//! [`sample`]); [`eval`] measures KL / top-1 / perplexity against the f32
//! model; [`plot`] draws `quality.svg`; [`run`] ties them to a checkpoint (`webvlm convert --method`, `webvlm eval`).
//! `docs/QUANTIZATION.md` describes the options, costs and measured results.

pub mod awq;
pub mod data;
pub mod entropy;
pub mod eval;
pub mod gptq;
pub mod grid;
pub mod images;
pub mod linalg;
pub mod mixed;
pub mod pipeline;
pub mod plot;
pub mod run;
pub mod sample;
pub mod stats;
pub mod vlm;

pub use data::TextSpec;
pub use eval::Quality;
pub use gptq::GptqOptions;
pub use pipeline::{CalibOptions, LinearReport, Method};
pub use run::{CalibConfig, Calibrated};
