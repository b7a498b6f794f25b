//! The GPU device: adapter selection, limits and optional features, buffers, readback.
//!
//! Creation is async (WebGPU's `requestAdapter` / `requestDevice`); natively
//! [`GpuContext::new_blocking`] drives the same future with `pollster`. In wasm the global's
//! `navigator.gpu` is checked *before* any wgpu instance exists: wgpu panics uncatchably when
//! it creates a WebGPU instance where there is none (Node, browsers without WebGPU).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::shaders;
use crate::error::{Error, Result};

/// What to ask of the adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Use `shader-f16` when the adapter has it (f16 weights are read as packed u32 pairs
    /// either way; this only changes arithmetic precision choices).
    pub disable_f16: bool,
    /// Use subgroup operations when the adapter has them.
    pub disable_subgroups: bool,
    /// Ask the device for a `maxStorageBufferBindingSize` of at most this many bytes (the
    /// adapter's own when `None`): tests force the splitting and fit checks of a small
    /// phone-sized limit with it, and the device enforces it.
    pub max_storage_binding: Option<u64>,
}

/// What was found, for logs, the CLI's `--json` and the page.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub max_storage_binding: u64,
    pub max_buffer_size: u64,
    pub max_workgroup_invocations: u32,
    pub max_workgroup_storage: u32,
}

/// One device and queue with the pipelines compiled for it.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: AdapterSummary,
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    /// The first uncaptured error or the device-loss reason, reported by [`GpuContext::take_error`].
    failure: Arc<Mutex<Option<String>>>,
}

/// True when this JS global (window or worker) has `navigator.gpu`. Natively: always true
/// (adapter discovery itself answers).
pub fn webgpu_present() -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsValue;
        let global = js_sys::global();
        let nav = js_sys::Reflect::get(&global, &JsValue::from_str("navigator")).unwrap_or(JsValue::UNDEFINED);
        if nav.is_undefined() || nav.is_null() {
            return false;
        }
        let gpu = js_sys::Reflect::get(&nav, &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
        !(gpu.is_undefined() || gpu.is_null())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        true
    }
}

impl GpuContext {
    /// Find an adapter and open a device with the adapter's own limits and, when present,
    /// `shader-f16` and `subgroups`.
    pub async fn new(opts: &GpuOptions) -> Result<GpuContext> {
        if !webgpu_present() {
            return Err(Error::Gpu("WebGPU is not available here (no navigator.gpu)".into()));
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter: {e}")))?;
        let have = adapter.features();
        let mut features = wgpu::Features::empty();
        if have.contains(wgpu::Features::SHADER_F16) && !opts.disable_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if have.contains(wgpu::Features::SUBGROUP) && !opts.disable_subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let mut limits = adapter.limits();
        if let Some(cap) = opts.max_storage_binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap.max(4) / 4 * 4);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webvlm"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("the adapter refused a device: {e}")))?;
        let ai = adapter.get_info();
        let info = AdapterSummary {
            name: ai.name.clone(),
            backend: format!("{:?}", ai.backend),
            device_type: format!("{:?}", ai.device_type),
            driver: format!("{} {}", ai.driver, ai.driver_info).trim().to_string(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: ai.subgroup_min_size,
            subgroup_max_size: ai.subgroup_max_size,
            max_storage_binding: limits.max_storage_buffer_binding_size as u64,
            max_buffer_size: limits.max_buffer_size,
            max_workgroup_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        };
        let failure = Arc::new(Mutex::new(None::<String>));
        let f = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            f.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| format!("{e}"));
        }));
        let f = failure.clone();
        device.set_device_lost_callback(move |reason, msg| {
            f.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
        });
        Ok(GpuContext { device, queue, info, limits, pipelines: Mutex::new(HashMap::new()), failure })
    }

    /// [`GpuContext::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<GpuContext> {
        pollster::block_on(Self::new(opts))
    }

    /// `Err` once the device was lost or raised an error nobody captured (out of memory,
    /// validation); the device is unusable from then on.
    pub fn take_error(&self) -> Result<()> {
        match self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Destroy the device (tests of the CPU fallback; what a driver reset looks like).
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// A mappable buffer of `bytes` to copy results into.
    pub fn staging(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (bytes.div_ceil(4) * 4).max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Map a [`GpuContext::staging`] buffer whose copy was submitted and return its first `bytes`.
    pub async fn map_read(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let (tx, rx) = futures_oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        let mapped = rx.recv().await;
        self.take_error()?;
        mapped.map_err(|e| {
            Error::Gpu(format!("reading a buffer back failed (the device was lost or ran out of memory): {e}"))
        })?;
        let out = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(out[..bytes as usize].to_vec())
    }

    /// Largest byte size one storage binding may have on this device.
    pub fn max_binding(&self) -> u64 {
        self.info.max_storage_binding.min(self.info.max_buffer_size)
    }

    /// A compute pipeline for `entry` of the shader file `shader` (a name under `shaders/`,
    /// without `.wgsl`) with `overrides` for its `override` constants; compiled once and kept.
    pub fn pipeline(&self, shader: &str, entry: &str, overrides: &[(&str, f64)]) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = format!("{shader}:{entry}:{overrides:?}");
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let source = shaders::source(shader, &self.info)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipe = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: overrides, ..Default::default() },
            cache: None,
        });
        if let Some(e) = block_on_error(scope.pop()) {
            return Err(Error::Gpu(format!("shader `{shader}` entry `{entry}`: {e}")));
        }
        let pipe = Arc::new(pipe);
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pipe.clone());
        Ok(pipe)
    }

    /// A storage buffer holding `bytes` (padded to 4 bytes), readable and writable by kernels
    /// and a copy source/destination; written through the queue in bounded pieces
    /// ([`super::weights::write_chunked`]), never mapped (a mapped range is a whole copy in
    /// wasm memory, and panics on a lost device).
    pub fn upload(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let buf = self.zeros(label, bytes.len() as u64);
        super::weights::write_chunked(self, &buf, bytes, super::weights::WRITE_CHUNK);
        buf
    }

    /// [`GpuContext::upload`] for f32 values.
    pub fn upload_f32(&self, label: &str, v: &[f32]) -> wgpu::Buffer {
        self.upload(label, bytemuck::cast_slice(v))
    }

    /// A zero-filled storage buffer of `bytes` (rounded up to 4).
    pub fn zeros(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.div_ceil(4) * 4).max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of parameter words (u32 or f32 bit patterns), padded to 16 bytes.
    /// Written through the queue rather than mapped at creation: on a lost device wgpu's
    /// mapped range panics, a queued write only reports an error.
    pub fn uniform(&self, label: &str, words: &[u32]) -> wgpu::Buffer {
        let mut v = words.to_vec();
        v.resize(words.len().div_ceil(4).max(1) * 4, 0);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 4 * v.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(&v));
        buf
    }

    /// A bind group for `pipe`'s group 0 with `buffers` at bindings 0, 1, 2, ….
    pub fn bind(&self, pipe: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Copy `bytes` bytes of `src` back to the host (waits for the queue; native and async-web
    /// both go through [`GpuContext::read_async`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_async(src, bytes))
    }

    /// [`GpuContext::read`] as f32 values.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
        let b = self.read(src, 4 * n as u64)?;
        Ok(bytemuck::cast_slice(&b).to_vec())
    }

    /// Copy the first `bytes` of `src` into a staging buffer, map it and return its bytes.
    pub async fn read_async(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4) * 4;
        let staging = self.staging(size);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.map_read(&staging, bytes).await
    }

    /// Wait until everything submitted so far has run (native; a no-op on the web, where
    /// a readback is the synchronization point).
    pub fn wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        Ok(())
    }
}

/// Natively error scopes resolve at once; on the web the validation error surfaces later
/// through the device's uncaptured-error path, so it is not waited for here.
fn block_on_error(f: impl std::future::Future<Output = Option<wgpu::Error>>) -> Option<wgpu::Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        None
    }
}

/// A one-shot channel from a wgpu callback to an async reader (no extra crates).
fn futures_oneshot<T>() -> (OneshotTx<T>, OneshotRx<T>) {
    let slot = Arc::new(std::sync::Mutex::new(OneshotState { value: None, waker: None }));
    (OneshotTx(slot.clone()), OneshotRx(slot))
}

struct OneshotState<T> {
    value: Option<T>,
    waker: Option<std::task::Waker>,
}
struct OneshotTx<T>(Arc<std::sync::Mutex<OneshotState<T>>>);
struct OneshotRx<T>(Arc<std::sync::Mutex<OneshotState<T>>>);

impl<T> OneshotTx<T> {
    fn send(self, v: T) {
        let mut s = self.0.lock().unwrap();
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> OneshotRx<T> {
    async fn recv(self) -> T {
        std::future::poll_fn(|cx| {
            let mut s = self.0.lock().unwrap();
            match s.value.take() {
                Some(v) => std::task::Poll::Ready(v),
                None => {
                    s.waker = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }
        })
        .await
    }
}
