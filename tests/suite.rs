//! Every native integration test file, as modules of one test binary: `cargo test --release
//! --test suite` (a filter such as `convert::` picks a file). One binary links the crate once;
//! one per file linked it ~30 times, which was most of CI's time. `tests/kernels.rs` (with
//! `tests/w8a8.rs`) stays a binary of its own because it also runs compiled to wasm.
/// Helpers shared by several files (one copy each).
#[path = "gpu_common/mod.rs"]
mod gpu_common;
#[path = "io_common/mod.rs"]
mod io_common;

#[path = "calib.rs"]
mod calib;
#[path = "calib_llava.rs"]
mod calib_llava;
#[path = "chat.rs"]
mod chat;
#[path = "control_tokens.rs"]
mod control_tokens;
#[path = "convert.rs"]
mod convert;
#[path = "decoder_variants.rs"]
mod decoder_variants;
#[path = "engine.rs"]
mod engine;
#[path = "gguf.rs"]
mod gguf;
#[path = "gpu_context.rs"]
mod gpu_context;
#[path = "gpu_decoder.rs"]
mod gpu_decoder;
#[path = "gpu_fit.rs"]
mod gpu_fit;
#[path = "gpu_linear.rs"]
mod gpu_linear;
#[path = "gpu_ops.rs"]
mod gpu_ops;
#[path = "gpu_resident.rs"]
mod gpu_resident;
#[path = "gpu_sample.rs"]
mod gpu_sample;
#[path = "gpu_stream.rs"]
mod gpu_stream;
#[path = "gpu_vision.rs"]
mod gpu_vision;
#[path = "gpu_w8a8.rs"]
mod gpu_w8a8;
#[path = "llava.rs"]
mod llava;
#[path = "llava_bitnet.rs"]
mod llava_bitnet;
#[path = "manifest.rs"]
mod manifest;
#[path = "quant.rs"]
mod quant;
#[path = "safetensors.rs"]
mod safetensors;
#[path = "sampler.rs"]
mod sampler;
#[path = "smollm2.rs"]
mod smollm2;
#[path = "ternary.rs"]
mod ternary;
#[path = "tiny_llava.rs"]
mod tiny_llava;
#[path = "tokenizer.rs"]
mod tokenizer;
#[path = "vision_preprocess.rs"]
mod vision_preprocess;
#[path = "vision_w8a8.rs"]
mod vision_w8a8;
