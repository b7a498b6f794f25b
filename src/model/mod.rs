//! Models. One Llama-family decoder for every weight format.
//!
//! Follows HF transformers' `modeling_llama.py` / `modeling_mistral.py` /
//! `modeling_gemma.py` / `modeling_olmo.py` (and OLMo's own `olmo/model.py` with BitNet b1.58
//! linears): the same weights, names and arithmetic (norms in f32, rotate-half RoPE, GQA,
//! gated MLP). Every linear layer is a [`Linear`] over a [`crate::quant::QTensor`], so f32,
//! f16, INT8, INT4 and ternary checkpoints all run through this single implementation; the
//! family differences are data ([`config::Arch`]).

pub mod attention;
pub mod config;
pub mod kv;
pub mod linear;
pub mod llama;
pub mod llava;
pub mod llava_slots;
mod load;
pub mod olmo_config;
pub mod ops;
pub mod rope;
pub mod slots;
#[cfg(test)]
mod tests;

pub use config::{Arch, LlamaConfig};
pub use kv::KvCache;
pub use linear::Linear;
pub use llama::Llama;
pub use llama::Norm;

use crate::quant::WeightFormat;

/// How a checkpoint's weights become runtime weights.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadOptions {
    /// `None`: keep weights as stored (converted checkpoints keep their formats, dense
    /// sources stay f32). `Some(fmt)`: RTN-quantize every 2-D linear weight (and the
    /// embedding) to `fmt` on load.
    pub weights: Option<WeightFormat>,
    /// Cap on the context window (KV-cache positions); `None` uses the model's
    /// `max_position_embeddings`. Lets small devices bound the cache's memory.
    pub context_len: Option<usize>,
}
