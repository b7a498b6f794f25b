//! Vision: image decoding and preprocessing as the HF processors do it, the CLIP vision
//! tower (W8A8 linears in [`w8a8`], SmoothQuant smoothing at convert time in [`smooth`]) and the
//! multimodal projector.

pub mod anyres;
pub mod clip;
pub mod features;
pub mod image;
pub mod ops;
pub mod preprocess;
pub mod projector;
pub mod prompt;
pub mod smooth;
pub mod w8a8;
