//! webvlm: quantized LLaVA-family vision-language models in the browser.
//!
//! Map of the crate (see `docs/ARCHITECTURE.md`):
//! - [`io`]: checkpoint readers (HF safetensors, GGUF, converted shards) behind one
//!   [`io::WeightSource`] trait with HF tensor names.
//! - [`quant`]: the weight formats (f32, f16, INT8, INT4) and RTN quantization.
//! - [`par`]: the CPU kernels' thread pool (the caller works too; short spin before sleeping).
//! - [`kernels`]: CPU matrix-vector / matrix-matrix kernels, scalar reference + SIMD.
//! - [`model`]: the Llama-family decoder, written once for every weight format.
//! - [`tokenizer`], [`chat`], [`sampler`]: text in, text out.
//! - [`gpu`]: the wgpu backend (WGSL kernels in `shaders/`).
//! - [`engine`]: the generation loop (prefill, decode, KV cache, stop), step by step.
//! - `calib` (native): calibrated quantization (GPTQ, AWQ, mixed INT4/INT8 by sensitivity or
//!   entropy-guided blocks, LLaVA with images) and its evaluation.
//! - `convert`, `bench` (native) and `wasm` (browser) are the entry points.

pub mod chat;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod io;
pub mod kernels;
pub mod model;
pub mod par;
pub mod quant;
pub mod rng;
pub mod sampler;
pub mod tokenizer;
pub mod vision;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench_gpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench_gpu_vision;
pub mod bench_vision;
#[cfg(not(target_arch = "wasm32"))]
pub mod calib;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
#[cfg(target_arch = "wasm32")]
pub mod wasm_bench;
#[cfg(target_arch = "wasm32")]
pub mod wasm_threads;

pub use error::{Error, Result};
