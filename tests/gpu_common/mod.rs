//! Shared by the GPU test files: one device per test binary, or a skip when asked.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use webvlm::gpu::{GpuContext, GpuOptions};

struct Shared(GpuContext);

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A GPU context for a test (tests of one binary take turns through a lock), or `None` when WEBVLM_SKIP_GPU=1. Any other failure to open a
/// device fails the test: scripts/setup.sh installs lavapipe, so CI always has an adapter.
pub fn gpu() -> Option<GpuGuard> {
    if skipping() {
        return None;
    }
    static CTX: OnceLock<Shared> = OnceLock::new();
    let ctx = CTX.get_or_init(|| Shared(open()));
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    Some(GpuGuard { ctx: &ctx.0, _guard: guard })
}

/// A device of the test's own (for tests that destroy it, or hand an `Arc` to an engine), or
/// `None` when WEBVLM_SKIP_GPU=1.
pub fn fresh_gpu() -> Option<Arc<GpuContext>> {
    fresh_gpu_with(&GpuOptions::default())
}

/// [`fresh_gpu`] asking the device for `opts` (a forced small binding limit, say).
pub fn fresh_gpu_with(opts: &GpuOptions) -> Option<Arc<GpuContext>> {
    if skipping() {
        return None;
    }
    Some(Arc::new(open_with(opts)))
}

fn skipping() -> bool {
    let skip = std::env::var("WEBVLM_SKIP_GPU").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("WEBVLM_SKIP_GPU=1: skipping a GPU test");
    }
    skip
}

/// Open the default adapter (lavapipe on CI); failing to is a test failure, not a skip.
fn open() -> GpuContext {
    open_with(&GpuOptions::default())
}

fn open_with(opts: &GpuOptions) -> GpuContext {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    }
    GpuContext::new_blocking(opts)
        .unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh for lavapipe, or set WEBVLM_SKIP_GPU=1)"))
}

/// A locked reference to the shared context.
pub struct GpuGuard {
    ctx: &'static GpuContext,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for GpuGuard {
    type Target = GpuContext;
    fn deref(&self) -> &GpuContext {
        self.ctx
    }
}

/// Relative error ‖a − b‖ / max(‖b‖, tiny): the normalized bound every kernel test uses.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num.sqrt() / den.sqrt().max(1e-30)) as f32
}

/// Greedy ids of `prompt` (with `images`), destroying `lose`'s device after `after` tokens.
pub fn run_losing_device(
    e: &mut webvlm::engine::Engine,
    prompt: &[u32],
    images: &[webvlm::vision::image::Image],
    n: usize,
    lose: Option<(&GpuContext, usize)>,
) -> Vec<u32> {
    let params = webvlm::engine::GenerateParams { max_new_tokens: n, ..Default::default() };
    e.start_with_images(prompt, images, params).unwrap();
    let mut ids = Vec::new();
    while let Some(ev) = e.step().unwrap() {
        ids.push(ev.id);
        if let Some((ctx, after)) = lose.filter(|(_, a)| *a == ids.len()) {
            println!("destroying the device after {after} tokens");
            ctx.destroy();
        }
    }
    ids
}
