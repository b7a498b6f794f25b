//! Incremental loading for JavaScript (`docs/ARCHITECTURE.md`, "Loading"): [`WasmLoader`]
//! takes `manifest.json` and the tokenizer at `begin`, then the shards one at a time in any
//! order (`add_shard` checks size, sha256 unless the caller verified it, and the safetensors
//! header, and keeps none of the bytes; on the GPU the decoder's matrices, the embedding and a
//! LLaVA model's vision-tower and projector matrices go straight from those bytes to GPU
//! buffers, [`StreamLoader`]), and `finish` builds the [`WasmEngine`]. Whether
//! the model fits the adapter is checked at `begin`, from the manifest. JavaScript
//! owns downloading and caching; `WasmEngine.load` is a convenience over the same steps that
//! fetches in Rust.
//!
//! Reference followed: the wasm-bindgen guide (exported structs with static constructors,
//! `js_sys::Promise`, `wasm_bindgen_futures::future_to_promise`).

use super::{js_err, js_msg, now_ms, ShardSource, State, WasmEngine};
use crate::engine::stream::StreamLoader;
use crate::gpu::{GpuContext, GpuOptions};
use crate::model::LoadOptions;
use js_sys::Promise;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The options object of `WasmLoader.begin` and `WasmEngine.load` (every field optional).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LoadConfig {
    /// `auto` (default), `webgpu` or `cpu`.
    pub backend: Option<String>,
    /// Cap on GPU memory for weights and caches, in MiB.
    pub gpu_budget_mib: Option<u64>,
    /// The caller checked every file's sha256 already: check sizes only.
    pub verified: bool,
}

/// Parse an options object (`undefined` / `null`: defaults).
pub(super) fn parse_options(options: &JsValue) -> Result<LoadConfig, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(LoadConfig::default());
    }
    let json = js_sys::JSON::stringify(options).map(String::from).unwrap_or_default();
    serde_json::from_str(&json).map_err(|e| js_msg(format!("load options: {e}")))
}

/// The device `backend` asks for, opened before any shard arrives so that `webgpu` fails fast.
/// `Err(reason)`: `auto` stays on the CPU for that reason (`webgpu` rejects instead).
async fn open_gpu(backend: &str) -> Result<Result<Arc<GpuContext>, String>, JsValue> {
    let auto = match backend {
        "cpu" => return Ok(Err("the CPU backend was asked for".into())),
        "auto" | "" => true,
        "webgpu" | "gpu" => false,
        other => return Err(js_msg(format!("backend must be 'auto', 'webgpu' or 'cpu', got {other:?}"))),
    };
    // `GpuContext::new` checks `navigator.gpu` before creating any wgpu instance.
    let ctx = match GpuContext::new(&GpuOptions::default()).await {
        // WebGPU handles are not Send in wasm; the engine shares the context with `Arc` for
        // native threads, and here everything stays on the worker's one thread.
        #[allow(clippy::arc_with_non_send_sync)]
        Ok(c) => Arc::new(c),
        Err(e) if auto => return Ok(Err(e.to_string())),
        Err(e) => return Err(js_msg(format!("the WebGPU backend is unavailable: {e}"))),
    };
    if auto && ctx.info.device_type == "Cpu" {
        return Ok(Err(format!("only a software WebGPU adapter ({}) was found", super::adapter_label(&ctx))));
    }
    Ok(Ok(ctx))
}

/// One shard as `shards()` lists it.
#[derive(Serialize)]
struct ShardInfo<'a> {
    index: usize,
    file: &'a str,
    size: u64,
    sha256: &'a str,
}

/// A model being loaded: the manifest and tokenizer are in, shards arrive one at a time.
#[wasm_bindgen]
pub struct WasmLoader {
    loader: StreamLoader,
    tokenizer_json: String,
    /// Why the weights go to the CPU although WebGPU was allowed (`auto`).
    load_fallback: Option<String>,
    t0: f64,
}

impl WasmLoader {
    /// Parse the manifest, check the tokenizer against it, open the device `cfg` asks for and
    /// check that the model fits it, before any shard or GPU buffer.
    pub(super) async fn start(manifest_json: &str, tokenizer_json: String, cfg: &LoadConfig) -> Result<Self, JsValue> {
        let t0 = now_ms();
        let asked = cfg.backend.clone().unwrap_or_else(|| "auto".into());
        let budget = cfg.gpu_budget_mib.map(|m| m << 20);
        let opts = LoadOptions::default();
        let (loader, load_fallback) = match open_gpu(&asked).await? {
            Err(_) if asked == "cpu" => (StreamLoader::new(manifest_json, opts, None), None),
            Err(reason) => (StreamLoader::new(manifest_json, opts, None), Some(reason)),
            Ok(ctx) => match StreamLoader::new(manifest_json, opts, Some((ctx, budget))) {
                Err(e @ crate::Error::Gpu(_)) if asked == "auto" => {
                    (StreamLoader::new(manifest_json, opts, None), Some(e.to_string()))
                }
                Err(e @ crate::Error::Gpu(_)) => return Err(js_msg(format!("the model cannot run on WebGPU: {e}"))),
                r => (r, None),
            },
        };
        let mut loader = loader.map_err(js_err)?;
        // `auto`: a GPU failure at `finish` keeps the engine on the CPU; the matrices that
        // went to the GPU only then come from the shard source (at the first step or image,
        // or at once in `load`).
        loader.set_cpu_fallback(asked == "auto");
        loader.loader_mut().set_check_hashes(!cfg.verified);
        loader.loader_mut().check_tokenizer(&tokenizer_json).map_err(js_err)?;
        Ok(WasmLoader { loader, tokenizer_json, load_fallback, t0 })
    }

    /// Build the engine from the shards added (consumes the loader).
    pub(super) fn build(self) -> Result<WasmEngine, JsValue> {
        let manifest_json = self.loader.manifest().to_json();
        let on_gpu = self.loader.on_gpu();
        let engine = self.loader.finish(self.tokenizer_json, &Default::default()).map_err(|e| {
            if on_gpu {
                js_msg(format!("the model cannot run on WebGPU: {e}"))
            } else {
                js_err(e)
            }
        })?;
        let state = State {
            engine,
            busy: false,
            load_ms: now_ms() - self.t0,
            load_fallback: self.load_fallback,
            manifest_json,
            shard_source: ShardSource::None,
        };
        Ok(WasmEngine { state: Rc::new(RefCell::new(state)) })
    }
}

#[wasm_bindgen]
impl WasmLoader {
    /// Start loading: `manifest_json` is the text of `manifest.json`, `tokenizer_json` that of
    /// the manifest's tokenizer file (checked here). `options` (optional): `{ backend: 'auto' |
    /// 'webgpu' | 'cpu', gpu_budget_mib, verified }`. Resolves to a `WasmLoader`.
    pub fn begin(manifest_json: String, tokenizer_json: String, options: JsValue) -> Promise {
        let cfg = match parse_options(&options) {
            Ok(c) => c,
            Err(e) => return Promise::reject(&e),
        };
        future_to_promise(async move { Self::start(&manifest_json, tokenizer_json, &cfg).await.map(JsValue::from) })
    }

    /// The shards to add, as a JSON array `[{ index, file, size, sha256 }]` in manifest order.
    pub fn shards(&self) -> String {
        let list: Vec<ShardInfo> = (self.loader.manifest().shards.iter().enumerate())
            .map(|(index, s)| ShardInfo { index, file: &s.file, size: s.size, sha256: &s.sha256 })
            .collect();
        serde_json::to_string(&list).expect("shard list serializes")
    }

    /// Where the weights are going: `webgpu` or `cpu`.
    pub fn backend(&self) -> String {
        if self.loader.on_gpu() { "webgpu" } else { "cpu" }.to_string()
    }

    /// Check shard `index` (size, sha256 unless `verified`, header) and take its tensors; the
    /// bytes are not kept. On an error the loader stays usable: add that shard again.
    pub fn add_shard(&mut self, index: u32, bytes: &[u8]) -> Result<(), JsValue> {
        self.loader.add_shard(index as usize, bytes).map_err(js_err)
    }

    /// Build the engine; rejects naming the shards not added yet. Resolves to a `WasmEngine`.
    pub fn finish(self) -> Promise {
        future_to_promise(async move { self.build().map(JsValue::from) })
    }
}
