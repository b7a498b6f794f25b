//! Models. One Llama-family decoder for every weight format.
pub mod config;
