//! The GPU backend: wgpu over WebGPU in the browser and Vulkan/Metal/DX12 natively.
//!
//! - [`context`]: adapter and device set-up (limits, `shader-f16`, `subgroups`), buffers,
//!   pipelines (compiled once per shader + entry + override constants), readback.
//! - [`plan`]: recorded dispatches ([`Dispatch`], [`Plan`]) and the per-token [`Step`] uniform.
//! - [`shaders`]: the WGSL files of `shaders/`, one op per file.
//! - [`weights`]: weight matrices uploaded segment by segment, split by rows to fit a binding.
//! - [`linear`]: `y = W x` (GEMV for decode, tiled GEMM for prefill) and the embedding gather;
//!   [`linear_w8a8`]: INT8 weights × per-token int8 activations (`dot4I8Packed`).
//! - [`bench`]: GEMV and copy bandwidth probes.
//! - [`decoder`]: the Llama-family decoder recorded as plans ([`decoder_weights`]: its weights).
//! - [`ops`], [`ops_attn`], [`ops_sample`]: plan builders for the non-matmul ops (norms, RoPE,
//!   KV append, element-wise; attention; greedy and sampled token choice).
//! - [`vision`]: the vision tower and LLaVA projector recorded as one plan per tile
//!   ([`vision_weights`]: its weights; [`ops_vision`]: patch unfold, embeddings, row copy;
//!   [`vision_kernel`]: weight-only INT8 or W8A8 for its linears).
//!
//! Conventions every kernel follows: binding 0 is a uniform of parameter words (u32 or f32
//! bit patterns, a `struct Params` at the top of the shader), bindings 1.. are storage buffers
//! (inputs first, the output last). Quantized weights are the same u32 segments as on disk and
//! in wasm memory (`docs/FORMAT.md`). Every kernel has a CPU reference in `src/kernels` or
//! `src/model/ops.rs`, and `tests/gpu_*.rs` compare the two over random shapes on whatever
//! adapter is present (lavapipe in CI).

pub mod bench;
pub mod context;
pub mod decoder;
pub mod decoder_weights;
pub mod linear;
pub mod linear_w8a8;
pub mod ops;
pub mod ops_attn;
pub mod ops_sample;
pub mod ops_vision;
pub mod plan;
pub mod shaders;
pub mod stream;
pub mod vision;
pub mod vision_kernel;
pub mod vision_weights;
pub mod weights;

pub use context::{webgpu_present, AdapterSummary, GpuContext, GpuOptions};
pub use plan::{grid, Dispatch, Plan, Step};
pub use weights::{GpuMatrix, MatrixPart};
