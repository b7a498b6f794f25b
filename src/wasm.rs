//! The browser API (wasm-bindgen): [`WasmEngine`] loads a converted model folder over HTTP
//! (streamed shard downloads with progress, each shard checked by the manifest loader and then
//! dropped) and runs the step-wise [`Engine`] so JavaScript can stream tokens and stop.
//!
//! Re-entrancy (wasm-bindgen's "recursive use of an object detected"): no exported method
//! keeps `&self` borrowed across an `.await`. `generate` clones an `Rc` to the engine state,
//! returns a `Promise`, and borrows the engine only for the synchronous span of one `step()`.
//! Abort lives in JavaScript: `on_token` returns `false` to stop. Between tokens the loop awaits
//! a message posted through a fresh `MessageChannel` (no 4 ms timer clamping), which lets the
//! worker's `onmessage` handler run, so a "stop" request is seen before the next token.
//!
//! Images (LLaVA models): a message carries `images: n`, the number of images shown with it;
//! `chat_prompt` renders one image token per image with the model's template, and
//! `generate_with_images` takes the bytes of every image of the conversation, in order (a
//! `js_sys::Array` of `Uint8Array`/`ArrayBuffer`), decodes them here with
//! [`crate::vision::image::decode`] (pixel limit checked from the header) and expands each
//! image token to the image's features; on WebGPU the vision tower runs on the GPU first,
//! awaited like a decode step (`wasm/images.rs`). Images already encoded come from the engine's
//! feature cache, so sending the whole conversation again each turn costs no re-encode.
//!
//! Backends: `load(url, on_progress, { backend })` (and `WasmLoader.begin`) take `'auto'`
//! (default), `'webgpu'` or `'cpu'`. Unless `'cpu'`, the global's `navigator.gpu` (a window's
//! or a worker's) is checked before any wgpu instance exists (wgpu panics uncatchably without
//! it), then an adapter and a device are requested and the model is checked against the
//! adapter's limits from the manifest; the decoder's matrices then go from each shard straight
//! to GPU buffers ([`crate::engine::stream`]). `'auto'` stays on the CPU, with the reason in
//! `fallback_reason()`, when there is no WebGPU, only a software adapter, or the model does not
//! fit; `'webgpu'` rejects instead. On the GPU a step is split in two: `step_submit` (records
//! and submits it, engine borrowed) and the readback awaited with the engine *not* borrowed,
//! then `step_complete`. When the device is lost or runs out of memory the engine replays the
//! conversation on the CPU and the answer goes on there; the result says so (`backend`,
//! `fallback_reason`). The matrices lived only on the GPU (decoder, embedding, vision tower,
//! projector), so the loop first fetches the shards holding them again, one at a time, from
//! the shard source (`set_shard_source`, or the URL `load` read).
//!
//! Reference followed: the wasm-bindgen guide (`--target web`, `js_sys::Promise`,
//! `wasm_bindgen_futures::future_to_promise`) and the WHATWG Streams spec
//! (`ReadableStreamDefaultReader.read()` resolving to `{ done, value }`).

use crate::engine::{Backend, Engine, GenerateParams, StepPending, StopReason, Timings, TokenEvent};
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::io::manifest::{Manifest, ManifestLoader, MemWeights, SkipSink};
use crate::vision::image::Image;
use crate::vision::prompt::ChatTurn;
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

mod images;
mod loader;
use images::decode_images;
pub use loader::WasmLoader;
use loader::{parse_options, LoadConfig};

#[wasm_bindgen(inline_js = r#"
export function yield_to_event_loop() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });
}
export function now_ms() {
  return globalThis.performance ? globalThis.performance.now() : Date.now();
}
"#)]
extern "C" {
    /// A promise that resolves from a fresh task, after already-queued messages ran.
    fn yield_to_event_loop() -> Promise;
    fn now_ms() -> f64;
}

#[wasm_bindgen(start)]
pub fn wasm_start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

fn js_msg(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

/// The message of a JS error value (an `Error` or anything with a string form).
fn describe(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        let mut msg = String::from(e.message());
        // Node's fetch puts the socket-level reason in `cause`.
        if let Some(cause) = e.cause().dyn_ref::<js_sys::Error>() {
            msg = format!("{msg} ({})", String::from(cause.message()));
        }
        return msg;
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

/// Shared engine state; `busy` makes a second concurrent `generate` a clear error.
struct State {
    engine: Engine,
    busy: bool,
    load_ms: f64,
    /// Why `'auto'` chose the CPU at load (the engine's own reason covers later falls).
    load_fallback: Option<String>,
    /// The manifest the engine was loaded from (to fetch its shards again).
    manifest_json: String,
    /// Where the shards come from again when the weights are needed on the CPU.
    shard_source: ShardSource,
}

/// Where a shard's bytes come from after loading.
#[derive(Clone)]
enum ShardSource {
    None,
    /// `fetch_shard(index) -> Promise<Uint8Array>` (`WasmEngine.set_shard_source`).
    Js(Function),
    /// Fetched again from the folder `WasmEngine.load` read (its base URL).
    Url(String),
}

/// The backend's name as the page shows it.
fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Gpu => "webgpu",
        Backend::Cpu => "cpu",
    }
}

/// The adapter's name, or what kind it is when the browser gives no name (Chromium gives
/// none; its SwiftShader adapter is a fallback adapter, which wgpu reports as a CPU device).
fn adapter_label(ctx: &GpuContext) -> String {
    match (ctx.info.name.is_empty(), ctx.info.device_type.as_str()) {
        (false, _) => ctx.info.name.clone(),
        (true, "Cpu") => "software adapter".to_string(),
        (true, _) => "unnamed adapter".to_string(),
    }
}

#[wasm_bindgen]
pub struct WasmEngine {
    state: Rc<RefCell<State>>,
}

/// Progress reporter: `on_progress({ loaded, total, file })` with overall byte counts
/// (`None`: nobody listens, as when shards are fetched again after a device loss).
struct Progress {
    callback: Option<Function>,
    loaded: f64,
    total: f64,
}

impl Progress {
    fn report(&self, file: &str) -> Result<(), JsValue> {
        let Some(callback) = &self.callback else { return Ok(()) };
        let obj = Object::new();
        Reflect::set(&obj, &"loaded".into(), &self.loaded.into())?;
        Reflect::set(&obj, &"total".into(), &self.total.into())?;
        Reflect::set(&obj, &"file".into(), &file.into())?;
        callback.call1(&JsValue::NULL, &obj)?;
        Ok(())
    }
}

/// `base` joined with `file` (`base` may or may not end with `/`).
fn join_url(base: &str, file: &str) -> String {
    if base.is_empty() || base.ends_with('/') {
        format!("{base}{file}")
    } else {
        format!("{base}/{file}")
    }
}

/// `fetch(url)` from whatever global scope we run in (window, worker, Node), checking the status.
async fn fetch_ok(url: &str) -> Result<web_sys::Response, JsValue> {
    let global = js_sys::global();
    let fetch: Function = Reflect::get(&global, &"fetch".into())?
        .dyn_into()
        .map_err(|_| js_msg("this JavaScript environment has no fetch()"))?;
    // One retry for network-level failures (a keep-alive socket closed under us); HTTP
    // errors are answers and are not retried.
    let mut attempt = 0;
    let resp = loop {
        let call = fetch.call1(&global, &url.into())?.unchecked_into::<Promise>();
        match JsFuture::from(call).await {
            Ok(r) => break r,
            Err(_) if attempt == 0 => attempt += 1,
            Err(e) => return Err(js_msg(format!("{url}: fetch failed: {}", describe(&e)))),
        }
    };
    let resp: web_sys::Response = resp.unchecked_into();
    if !resp.ok() {
        return Err(js_msg(format!("{url}: HTTP {} {}", resp.status(), resp.status_text())));
    }
    Ok(resp)
}

/// Read a whole body as text (used for the small JSON files).
async fn fetch_text(url: &str) -> Result<String, JsValue> {
    let resp = fetch_ok(url).await?;
    let text = JsFuture::from(resp.text()?).await?;
    text.as_string().ok_or_else(|| js_msg(format!("{url}: body is not text")))
}

/// Stream `url` into memory, reporting progress per chunk. `expected` (bytes) presizes the
/// buffer and bounds it: a body longer than promised is an error, not an unbounded allocation.
async fn fetch_bytes(
    url: &str,
    file: &str,
    expected: Option<u64>,
    progress: &mut Progress,
) -> Result<Vec<u8>, JsValue> {
    let resp = fetch_ok(url).await?;
    let body = resp.body().ok_or_else(|| js_msg(format!("{url}: response has no body")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut buf = Vec::with_capacity(expected.unwrap_or(0) as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(false) {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())?.unchecked_into();
        let n = value.length() as usize;
        if let Some(limit) = expected {
            if (buf.len() + n) as u64 > limit {
                return Err(js_msg(format!("{file}: body is larger than the {limit} bytes the manifest promises")));
            }
        }
        let start = buf.len();
        buf.resize(start + n, 0);
        value.copy_to(&mut buf[start..]);
        progress.loaded += n as f64;
        progress.report(file)?;
    }
    Ok(buf)
}

async fn load_impl(base_url: String, on_progress: Function, cfg: LoadConfig) -> Result<WasmEngine, JsValue> {
    let manifest_json = fetch_text(&join_url(&base_url, "manifest.json")).await?;
    let manifest = crate::io::manifest::Manifest::parse(&manifest_json).map_err(js_err)?;
    let tok_file = manifest.tokenizer.file.clone();
    let tok_size = manifest.files.iter().find(|f| f.file == tok_file).map(|f| f.size);
    let total = manifest.shards.iter().map(|s| s.size).sum::<u64>() + tok_size.unwrap_or(0);
    let mut progress = Progress { callback: Some(on_progress), loaded: 0.0, total: total as f64 };
    progress.report("manifest.json")?;
    let tok_bytes = fetch_bytes(&join_url(&base_url, &tok_file), &tok_file, tok_size, &mut progress).await?;
    let tokenizer_json = String::from_utf8(tok_bytes).map_err(|e| js_msg(format!("{tok_file}: not UTF-8: {e}")))?;
    let mut loader = WasmLoader::start(&manifest_json, tokenizer_json, &cfg).await?;
    for (index, shard) in manifest.shards.iter().enumerate() {
        let bytes =
            fetch_bytes(&join_url(&base_url, &shard.file), &shard.file, Some(shard.size), &mut progress).await?;
        loader.add_shard(index as u32, &bytes)?;
        // `bytes` is dropped here: the loader keeps none of them.
    }
    let engine = loader.build()?;
    engine.state.borrow_mut().shard_source = ShardSource::Url(base_url);
    if engine.state.borrow().engine.needs_weights() {
        let w = reload_weights(&engine.state).await?;
        engine.state.borrow_mut().engine.fill_weights(&w).map_err(js_err)?;
    }
    Ok(engine)
}

/// What `generate` resolves to (as a JSON string).
#[derive(Serialize)]
struct GenerateResult {
    text: String,
    ids: Vec<u32>,
    /// `eos`, `stop_string`, `max_new_tokens`, `context_full`, or `aborted` (on_token false).
    finish_reason: String,
    /// The engine's timings (`load_ms`: building the model from downloaded tensors).
    timings: Timings,
    /// Download, checks and build, from `load` to a ready engine.
    load_total_ms: f64,
    /// Positions the run's images took in the prompt (0 without images).
    image_tokens: usize,
    /// Where the run ended: `webgpu` or `cpu`.
    backend: &'static str,
    /// Set when this run moved from WebGPU to the CPU (device lost, out of memory): why.
    fallback_reason: Option<String>,
    /// Dispatches one decode token took on the GPU (absent on the CPU).
    dispatches_per_token: Option<usize>,
}

/// A chat message from JavaScript: `{ role, content, images? }`, `images` being how many
/// images the message shows (they come before its text, as transformers' processors order them).
#[derive(Deserialize)]
struct WireMessage {
    role: String,
    content: String,
    #[serde(default)]
    images: usize,
}

/// Clears `busy` however the generation loop exits.
struct BusyGuard(Rc<RefCell<State>>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.try_borrow_mut() {
            s.busy = false;
        }
    }
}

async fn generate_impl(
    state: Rc<RefCell<State>>,
    prompt_ids: Vec<u32>,
    images: Vec<Image>,
    params: GenerateParams,
    on_token: Function,
) -> Result<JsValue, JsValue> {
    {
        let mut s = state.borrow_mut();
        if s.busy {
            return Err(js_msg("a generation is already running on this engine"));
        }
        s.busy = true;
    }
    let _guard = BusyGuard(state.clone());
    let started_on = state.borrow().engine.backend();
    images::encode_on_gpu(&state, &images).await?;
    state.borrow_mut().engine.start_with_images(&prompt_ids, &images, params).map_err(js_err)?;
    let mut text = String::new();
    let mut aborted = false;
    loop {
        let Some(event) = next_event(&state).await? else { break };
        text.push_str(&event.text);
        let keep_going = on_token.call2(&JsValue::NULL, &event.text.as_str().into(), &event.id.into())?;
        if event.done {
            break;
        }
        if keep_going.as_bool() == Some(false) {
            aborted = true;
            break;
        }
        JsFuture::from(yield_to_event_loop()).await?;
    }
    let s = state.borrow();
    let finish_reason = if aborted { "aborted".to_string() } else { reason_name(s.engine.stop_reason_of_run()) };
    let backend = s.engine.backend();
    let fell = started_on == Backend::Gpu && backend == Backend::Cpu;
    let result = GenerateResult {
        text,
        ids: s.engine.generated_ids().to_vec(),
        finish_reason,
        timings: s.engine.timings().clone(),
        load_total_ms: s.load_ms,
        image_tokens: s.engine.image_tokens(),
        backend: backend_name(backend),
        fallback_reason: if fell { s.engine.fallback_reason().map(str::to_string) } else { None },
        dispatches_per_token: s.engine.gpu_decoder().and_then(|d| d.dispatches_per_token()),
    };
    let json = serde_json::to_string(&result).map_err(|e| js_err(e.into()))?;
    Ok(JsValue::from_str(&json))
}

/// One step. The engine is borrowed only for the synchronous halves: a GPU step's readback
/// is awaited with the borrow released, so `stop`, `lose_device` and the getters stay callable.
async fn next_event(state: &Rc<RefCell<State>>) -> Result<Option<TokenEvent>, JsValue> {
    let submitted = state.borrow_mut().engine.step_submit().map_err(js_err)?;
    let pending = match submitted {
        StepPending::Gpu(step) => {
            let ctx = step.context();
            let out = step.pending.read(&ctx).await;
            state.borrow_mut().engine.step_complete(out).map_err(js_err)?
        }
        other => other,
    };
    match pending {
        StepPending::Done(event) => Ok(event),
        StepPending::NeedWeights => {
            let weights = match reload_weights(state).await {
                Ok(w) => w,
                Err(e) => {
                    state.borrow_mut().engine.reset();
                    return Err(e);
                }
            };
            state.borrow_mut().engine.resume_on_cpu(&weights).map_err(js_err)
        }
        StepPending::Gpu(_) => Err(js_msg("a GPU step completed into another GPU step")),
    }
}

/// The weights that lived only on the GPU, after a GPU failure ([`Engine::gpu_only_tensors`]:
/// decoder, embedding, vision tower, projector): each shard holding some of them, one at a time, from the shard source (checked
/// against the manifest like at load); only those tensors are decoded and kept.
async fn reload_weights(state: &Rc<RefCell<State>>) -> Result<MemWeights, JsValue> {
    let (source, manifest_json, keep) = {
        let s = state.borrow();
        let keep: BTreeSet<String> = s.engine.gpu_only_tensors().keys().cloned().collect();
        (s.shard_source.clone(), s.manifest_json.clone(), keep)
    };
    if matches!(source, ShardSource::None) {
        return Err(js_err(state.borrow_mut().engine.no_weight_source()));
    }
    let mut loader = ManifestLoader::new(&manifest_json).map_err(js_err)?;
    let m = loader.manifest().clone();
    let mut shards: Vec<usize> =
        m.tensors.iter().filter(|t| keep.contains(&t.name)).filter_map(Manifest::shard_of).collect();
    shards.dedup();
    shards.sort_unstable();
    shards.dedup();
    for index in shards {
        let entry = &m.shards[index];
        let bytes = fetch_shard(&source, index, &entry.file, entry.size).await?;
        let keep = |n: &str| keep.contains(n);
        let mut skip = SkipSink { keep: &keep };
        loader.add_shard_into(index, &bytes, Some(&mut skip)).map_err(js_err)?;
    }
    Ok(loader.into_weights())
}

/// Shard `index` (`file`, `size` bytes) from `source`.
async fn fetch_shard(source: &ShardSource, index: usize, file: &str, size: u64) -> Result<Vec<u8>, JsValue> {
    match source {
        ShardSource::None => Err(js_msg("no shard source")),
        ShardSource::Js(f) => {
            let p = f.call1(&JsValue::NULL, &(index as u32).into())?;
            let v = JsFuture::from(Promise::resolve(&p))
                .await
                .map_err(|e| js_msg(format!("the shard source failed for {file}: {}", describe(&e))))?;
            if let Some(a) = v.dyn_ref::<Uint8Array>() {
                Ok(a.to_vec())
            } else if let Some(b) = v.dyn_ref::<ArrayBuffer>() {
                Ok(Uint8Array::new(b).to_vec())
            } else {
                Err(js_msg(format!("the shard source gave {file} as neither a Uint8Array nor an ArrayBuffer")))
            }
        }
        ShardSource::Url(base) => {
            let mut quiet = Progress { callback: None, loaded: 0.0, total: size as f64 };
            fetch_bytes(&join_url(base, file), file, Some(size), &mut quiet).await
        }
    }
}

/// The snake_case name of a stop reason (`eos`, `max_new_tokens`, ...).
fn reason_name(reason: Option<StopReason>) -> String {
    match reason.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::String(s))) => s,
        _ => "none".to_string(),
    }
}

#[wasm_bindgen]
impl WasmEngine {
    /// Fetch `base_url/manifest.json`, `tokenizer.json` and every shard (streamed, checked by
    /// size and sha256), then build the engine. `on_progress({ loaded, total, file })` is
    /// called as bytes arrive. `options` (optional): `{ backend: 'auto' | 'webgpu' | 'cpu',
    /// gpu_budget_mib }`; see the module doc. Resolves to a `WasmEngine`.
    pub fn load(base_url: String, on_progress: Function, options: JsValue) -> Promise {
        let cfg = match parse_options(&options) {
            Ok(c) => c,
            Err(e) => return Promise::reject(&e),
        };
        future_to_promise(async move { load_impl(base_url, on_progress, cfg).await.map(JsValue::from) })
    }

    /// Where the engine gets a shard again when it needs the weights on the CPU after they
    /// lived only on the GPU (a lost device, a failed image encode): `fetch_shard(index)` resolves to the shard's
    /// bytes (`Uint8Array`), checked against the manifest like at load. `WasmEngine.load`
    /// sets one that fetches from its URL; without any, such a device loss is an error.
    pub fn set_shard_source(&self, fetch_shard: Function) -> Result<(), JsValue> {
        let mut s = self.state.try_borrow_mut().map_err(|_| js_msg("engine is busy"))?;
        s.shard_source = ShardSource::Js(fetch_shard);
        Ok(())
    }

    /// Token ids of `messages_json` (`[{ role, content, images? }, ...]`) rendered with the
    /// model's chat template, assistant header appended. `images` (default 0) is how many
    /// images the message shows: one image token each, before the text, to be expanded by
    /// `generate_with_images`. A text-only model refuses messages with images.
    pub fn chat_prompt(&self, messages_json: &str) -> Result<Vec<u32>, JsValue> {
        let messages: Vec<WireMessage> =
            serde_json::from_str(messages_json).map_err(|e| js_msg(format!("messages: {e}")))?;
        let turns: Vec<ChatTurn> =
            messages.into_iter().map(|m| ChatTurn { role: m.role, text: m.content, images: m.images }).collect();
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        s.engine.chat_prompt_ids_with_images(&turns).map_err(js_err)
    }

    /// Whether the model takes images (a LLaVA-family checkpoint).
    pub fn supports_images(&self) -> Result<bool, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        Ok(s.engine.llava().is_some())
    }

    /// Token ids of raw `text` (BOS as the tokenizer's policy says).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        s.engine.tokenizer().encode(text, true).map_err(js_err)
    }

    /// Generate from `prompt_ids` with `params_json` (a `GenerateParams` object; missing
    /// fields take defaults). `on_token(text, id)` is called per token; returning `false`
    /// stops. Resolves to a JSON string `{ text, ids, finish_reason, timings }`.
    pub fn generate(&self, prompt_ids: Vec<u32>, params_json: &str, on_token: Function) -> Promise {
        let params: GenerateParams = match serde_json::from_str(if params_json.is_empty() { "{}" } else { params_json })
        {
            Ok(p) => p,
            Err(e) => return Promise::reject(&js_msg(format!("generate params: {e}"))),
        };
        let state = self.state.clone();
        future_to_promise(generate_impl(state, prompt_ids, Vec::new(), params, on_token))
    }

    /// [`WasmEngine::generate`] with images: `images` holds the encoded bytes (`Uint8Array`
    /// or `ArrayBuffer`; JPEG, PNG or WebP) of every image the conversation shows, in the
    /// order of the image tokens in `prompt_ids` (from `chat_prompt`). Bad or oversized
    /// images reject with an `Error` naming the image. `timings.image_encode_ms` reports the
    /// vision tower's time (0 when every image came from the feature cache).
    pub fn generate_with_images(
        &self,
        prompt_ids: Vec<u32>,
        images: Array,
        params_json: &str,
        on_token: Function,
    ) -> Promise {
        let params: GenerateParams = match serde_json::from_str(if params_json.is_empty() { "{}" } else { params_json })
        {
            Ok(p) => p,
            Err(e) => return Promise::reject(&js_msg(format!("generate params: {e}"))),
        };
        let images = match decode_images(&images) {
            Ok(v) => v,
            Err(e) => return Promise::reject(&e),
        };
        let state = self.state.clone();
        future_to_promise(generate_impl(state, prompt_ids, images, params, on_token))
    }

    /// Timings of the last generation as a JSON string (the engine's, plus `load_total_ms`:
    /// download, checks and build).
    pub fn timings(&self) -> Result<String, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        let mut v = serde_json::to_value(s.engine.timings()).map_err(|e| js_err(e.into()))?;
        v["load_total_ms"] = s.load_ms.into();
        Ok(v.to_string())
    }

    /// Forget the KV cache (a new conversation).
    pub fn reset(&self) -> Result<(), JsValue> {
        let mut s = self.state.try_borrow_mut().map_err(|_| js_msg("engine is busy"))?;
        if s.busy {
            return Err(js_msg("cannot reset while generating"));
        }
        s.engine.reset();
        Ok(())
    }

    /// The compute backend in use now: `webgpu` or `cpu`.
    pub fn backend(&self) -> Result<String, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        Ok(backend_name(s.engine.backend()).to_string())
    }

    /// Why the engine runs on the CPU although WebGPU was allowed: `'auto'` found no usable
    /// adapter at load, or the device was lost (or ran out of memory) later. `undefined` when
    /// it runs where it was asked to.
    pub fn fallback_reason(&self) -> Result<Option<String>, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        Ok(s.engine.fallback_reason().map(str::to_string).or_else(|| s.load_fallback.clone()))
    }

    /// The WebGPU adapter as a JSON string (`{ name, shader_f16, subgroups, subgroup_min_size,
    /// max_storage_binding, ... }`), `undefined` on the CPU.
    pub fn adapter_info(&self) -> Result<Option<String>, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        let Some(dec) = s.engine.gpu_decoder() else { return Ok(None) };
        let mut info = dec.context().info.clone();
        info.name = adapter_label(dec.context());
        serde_json::to_string(&info).map(Some).map_err(|e| js_err(e.into()))
    }

    /// Dispatches one decode token takes on the GPU (known after the first decode step).
    pub fn dispatches_per_token(&self) -> Result<Option<usize>, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        Ok(s.engine.gpu_decoder().and_then(|d| d.dispatches_per_token()))
    }

    /// Testing and diagnostic hook: destroy the WebGPU device, as a driver reset or a lost GPU
    /// process would. Callable mid-answer (the generation loop does not hold the engine while
    /// it awaits the GPU): the step in flight fails, the engine replays the conversation on
    /// the CPU and the answer goes on there. Returns whether there was a device to destroy.
    pub fn lose_device(&self) -> Result<bool, JsValue> {
        let s = self.state.try_borrow().map_err(|_| js_msg("engine is busy"))?;
        let Some(dec) = s.engine.gpu_decoder() else { return Ok(false) };
        dec.context().destroy();
        Ok(true)
    }
}
