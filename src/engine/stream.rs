//! Building an engine from a converted model one shard at a time (`docs/ARCHITECTURE.md`,
//! "Loading"), shared by the browser ([`crate::wasm`]'s `WasmLoader`) and the CLI: with a GPU
//! the decoder's matrices (embedding included) and a LLaVA model's vision-tower and projector
//! matrices go from each shard straight to GPU buffers ([`GpuUpload`]) and the CPU model keeps
//! placeholders for them; after a GPU failure the engine asks for them again
//! ([`StepPending::NeedWeights`](super::StepPending::NeedWeights), [`Engine::resume_on_cpu`]).

use super::Engine;
use crate::error::{Error, Result};
use crate::gpu::stream::GpuUpload;
use crate::gpu::GpuContext;
use crate::io::manifest::{Manifest, ManifestLoader, TensorSink};
use crate::model::llava::VisionLoadOptions;
use crate::model::slots::Slot;
use crate::model::LoadOptions;
use std::sync::Arc;

/// A load in progress: the manifest is in, shards arrive in any order.
pub struct StreamLoader {
    loader: ManifestLoader,
    gpu: Option<GpuUpload>,
    opts: LoadOptions,
    /// Backend `auto`: a GPU failure at [`StreamLoader::finish`] leaves the engine on the CPU.
    cpu_fallback: bool,
}

impl StreamLoader {
    /// Parse `manifest_json`; with `gpu` (a device and an optional byte budget) plan the
    /// upload and check the model fits, before any allocation: `Err` when it does not.
    /// Load options that convert weights (`opts.weights`) keep every tensor in memory.
    pub fn new(manifest_json: &str, opts: LoadOptions, gpu: Option<(Arc<GpuContext>, Option<u64>)>) -> Result<Self> {
        let loader = ManifestLoader::new(manifest_json)?;
        let gpu = match gpu {
            Some((ctx, budget)) => {
                let mut up = GpuUpload::plan(ctx, loader.manifest(), budget, opts.context_len)?;
                if opts.weights.is_some() {
                    up.slots.clear();
                }
                Some(up)
            }
            None => None,
        };
        Ok(StreamLoader { loader, gpu, opts, cpu_fallback: false })
    }

    pub fn manifest(&self) -> &Manifest {
        self.loader.manifest()
    }

    /// The manifest loader (hash checking, the tokenizer check).
    pub fn loader_mut(&mut self) -> &mut ManifestLoader {
        &mut self.loader
    }

    /// Whether the model goes to the GPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Before any shard: a vision tower converted on load (`vopts.tower`) is built in memory
    /// and uploaded from there, so its matrices do not stream to the GPU. Pass the same
    /// `vopts` to [`StreamLoader::finish`].
    pub fn set_vision_options(&mut self, vopts: &VisionLoadOptions) {
        if let (Some(_), Some(up)) = (vopts.tower, self.gpu.as_mut()) {
            up.slots.retain(|_, s| !matches!(s, Slot::Vision(..)));
        }
    }

    /// Check shard `index` and take its tensors: the planned matrices to the GPU, the rest
    /// decoded into memory. None of `bytes` is kept.
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        let sink = self.gpu.as_mut().map(|g| g as &mut dyn TensorSink);
        self.loader.add_shard_into(index, bytes, sink)
    }

    /// Backend `auto` (`true`): when the GPU fails as [`StreamLoader::finish`] builds the
    /// decoder there (device lost, out of memory, a validation error), the engine is built on
    /// the CPU instead, [`Engine::fallback_reason`] says why, and the decoder's matrices that
    /// went to the GPU only must be read again ([`Engine::needs_weights`],
    /// [`Engine::fill_weights`]; the browser reads them from its shard source). `false`
    /// (the default, backend `gpu`): that failure is `finish`'s error.
    pub fn set_cpu_fallback(&mut self, on: bool) {
        self.cpu_fallback = on;
    }

    /// Build the engine (an error names the shards not added), on the GPU when planned so.
    pub fn finish(self, tokenizer_json: String, vopts: &VisionLoadOptions) -> Result<Engine> {
        let streamed_tower = self.gpu.as_ref().is_some_and(|g| g.slots.values().any(|s| matches!(s, Slot::Vision(..))));
        if vopts.tower.is_some() && streamed_tower {
            return Err(Error::Invalid(
                "the vision tower streamed to the GPU as stored: set_vision_options before the shards to convert it"
                    .into(),
            ));
        }
        let ckpt = self.loader.finish(tokenizer_json)?;
        let mut engine = Engine::new_with_vision(ckpt, &self.opts, vopts)?;
        if let Some(up) = self.gpu {
            match engine.use_gpu_streamed(up) {
                Err(e @ Error::Gpu(_)) if self.cpu_fallback => engine.leave_gpu(&e),
                r => r?,
            }
        }
        Ok(engine)
    }
}

/// Load the converted folder `dir` reading one shard at a time, the matrices [`GpuUpload`]
/// plans going straight to `gpu`; after a GPU failure the engine maps the folder again for them.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(
    dir: &std::path::Path,
    opts: LoadOptions,
    vopts: &VisionLoadOptions,
    gpu: Option<(Arc<GpuContext>, Option<u64>)>,
) -> Result<Engine> {
    load_dir_with(dir, opts, vopts, gpu, false)
}

/// [`load_dir`]; with `cpu_fallback` (backend `auto`) a GPU failure when the load finishes
/// builds the engine on the CPU, reading the decoder's matrices from the folder again
/// ([`StreamLoader::set_cpu_fallback`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir_with(
    dir: &std::path::Path,
    opts: LoadOptions,
    vopts: &VisionLoadOptions,
    gpu: Option<(Arc<GpuContext>, Option<u64>)>,
    cpu_fallback: bool,
) -> Result<Engine> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| Error::io(dir.join(name), e));
    let manifest_json =
        String::from_utf8(read("manifest.json")?).map_err(|e| Error::format("manifest.json", e.to_string()))?;
    let mut loader = StreamLoader::new(&manifest_json, opts, gpu)?;
    loader.set_cpu_fallback(cpu_fallback);
    loader.set_vision_options(vopts);
    let tok_file = loader.manifest().tokenizer.file.clone();
    let tokenizer = String::from_utf8(read(&tok_file)?).map_err(|e| Error::format(&tok_file, e.to_string()))?;
    let files: Vec<String> = loader.manifest().shards.iter().map(|s| s.file.clone()).collect();
    for (i, file) in files.iter().enumerate() {
        loader.add_shard(i, &read(file)?)?;
    }
    let mut engine = loader.finish(tokenizer, vopts)?;
    if engine.needs_weights() {
        engine.fill_weights(crate::io::open(dir)?.weights.as_ref())?;
    }
    let dir = dir.to_path_buf();
    engine.set_weight_reload(Box::new(move || Ok(crate::io::open(&dir)?.weights)));
    Ok(engine)
}
