//! Images in the browser: the encoded bytes JavaScript hands over are decoded here
//! ([`crate::vision::image::decode`], pixel limit checked from the header), and on the WebGPU
//! backend the uncached ones are encoded by the GPU vision tower before the run starts:
//! [`Engine::submit_images`](crate::engine::Engine::submit_images), the readback awaited with
//! the engine *not* borrowed (so `lose_device` and the getters stay callable), then
//! `complete_images`. A GPU failure there moves the engine to the CPU, which encodes the
//! images in `start_with_images`; the answer's `fallback_reason` says why. The tower and
//! projector (and the decoder) lived only on the GPU, so their shards are read again from the
//! shard source first (`reload_weights`, as a failed step does).
//!
//! Reference followed: the wasm-bindgen guide (`js_sys::Uint8Array`, `JsCast`).

use super::{js_err, js_msg, State};
use crate::vision::image::{decode, Image, DEFAULT_MAX_PIXELS};
use js_sys::{Array, ArrayBuffer, Uint8Array};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Decode each element of `images` (a `Uint8Array` or an `ArrayBuffer` of an encoded JPEG,
/// PNG or WebP file) to RGB.
pub(super) fn decode_images(images: &Array) -> Result<Vec<Image>, JsValue> {
    let mut out = Vec::with_capacity(images.length() as usize);
    for (i, v) in images.iter().enumerate() {
        let bytes = if let Some(a) = v.dyn_ref::<Uint8Array>() {
            a.to_vec()
        } else if let Some(b) = v.dyn_ref::<ArrayBuffer>() {
            Uint8Array::new(b).to_vec()
        } else {
            return Err(js_msg(format!("image {}: expected a Uint8Array or ArrayBuffer", i + 1)));
        };
        let img = decode(&bytes, DEFAULT_MAX_PIXELS).map_err(|e| js_msg(format!("image {}: {e}", i + 1)))?;
        out.push(img);
    }
    Ok(out)
}

/// On the WebGPU backend, encode the uncached `images` on the GPU into the engine's feature
/// cache; elsewhere nothing (the CPU encodes them when the run starts). When the GPU failed
/// (now or before) and weights lived only there, they are read again from the shard source so
/// that the CPU can encode the images.
pub(super) async fn encode_on_gpu(state: &Rc<RefCell<State>>, images: &[Image]) -> Result<(), JsValue> {
    if images.is_empty() {
        return Ok(());
    }
    let pending = state.borrow_mut().engine.submit_images(images).map_err(js_err)?;
    if let Some(pending) = pending {
        let read = pending.read().await;
        state.borrow_mut().engine.complete_images(read).map_err(js_err)?;
    }
    let needs = state.borrow().engine.needs_weights();
    if needs {
        let weights = super::reload_weights(state).await?;
        state.borrow_mut().engine.fill_weights(&weights).map_err(js_err)?;
    }
    Ok(())
}
