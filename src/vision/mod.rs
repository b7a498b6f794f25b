//! Vision: image decoding and preprocessing as the HF processors do it, the CLIP vision
//! tower and the multimodal projector.

pub mod anyres;
pub mod clip;
pub mod features;
pub mod image;
pub mod ops;
pub mod preprocess;
pub mod projector;
pub mod prompt;
