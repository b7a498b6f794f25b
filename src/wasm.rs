//! The browser API (wasm-bindgen).
