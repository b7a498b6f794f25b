//! Which kernel runs the GPU vision tower's INT8 linears: the weight-only GEMM
//! (`gemm_dequant.wgsl`, f32 activations) or W8A8 ([`super::linear_w8a8`]: per-token int8
//! activations, `dot4I8Packed`), decided as the CPU tower decides ([`crate::vision::w8a8`]).
//!
//! W8A8 is a candidate only for a tower whose INT8 linears the CPU side would run W8A8: one the
//! converter smoothed (the CPU loader then timed it, `VisionTower::kernel.probe` is set) or one
//! forced to W8A8 (`kernel.w8a8`). Natively the GPU then times one fc1 of the first layer both
//! ways at load on [`PROBE_TOKENS`] tokens (after a warm-up, best of [`PROBE_RUNS`]) and keeps
//! the faster; the figures stay in [`GpuVision::kernel`](super::vision::GpuVision::kernel). In
//! wasm the load cannot wait for the GPU, so there the weight-only kernel runs unless W8A8 is
//! asked for ([`VisionKernelMode::W8A8`]).

use super::vision::GpuVision;
use super::{GpuContext, Plan};
use crate::error::{Error, Result};
use crate::quant::QData;
use crate::vision::clip::VisionTower;
use crate::vision::w8a8::{Probe, TowerKernel};

/// Tokens of the load-time probe (at most the tower's).
pub const PROBE_TOKENS: usize = 256;
/// Timed runs per kernel in the probe (the best counts).
pub const PROBE_RUNS: usize = 2;

/// What [`GpuVision::new_with`] is asked to run the INT8 linears with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VisionKernelMode {
    /// W8A8 when the tower is a candidate and the probe finds it faster.
    #[default]
    Auto,
    /// Always the weight-only GEMM.
    WeightOnly,
    /// Always W8A8 (an error unless the tower's linears are INT8).
    W8A8,
}

/// Whether the tower's encoder linears are INT8 (what W8A8 needs).
pub fn int8_linears(tower: &VisionTower) -> bool {
    tower.layers.first().is_some_and(|l| matches!(l.fc1.w.data, QData::Int8 { .. }))
}

/// Whether the tower may run W8A8: INT8 linears smoothed at convert time (whether or not the
/// CPU side timed its own kernels: a tower streamed to the GPU has no CPU weights to time).
pub fn candidate(tower: &VisionTower) -> bool {
    int8_linears(tower) && (tower.smoothed || tower.kernel.w8a8 || tower.kernel.probe.is_some())
}

/// The kernel for `tower` under `mode`; `v` has its weights and activations (and, unless the
/// mode is weight-only, its int8 scratch) but no plan yet.
pub(super) fn choose(v: &GpuVision, tower: &VisionTower, mode: VisionKernelMode) -> Result<TowerKernel> {
    match mode {
        VisionKernelMode::WeightOnly => Ok(TowerKernel::default()),
        VisionKernelMode::W8A8 if int8_linears(tower) => Ok(TowerKernel { w8a8: true, probe: None }),
        VisionKernelMode::W8A8 => Err(Error::Unsupported("W8A8 on the GPU needs INT8 vision linears".into())),
        VisionKernelMode::Auto if !candidate(tower) || cfg!(target_arch = "wasm32") => Ok(TowerKernel::default()),
        VisionKernelMode::Auto => probe(v),
    }
}

/// Time fc1 of the first layer with each kernel and keep the faster.
fn probe(v: &GpuVision) -> Result<TowerKernel> {
    let p = measure(v, PROBE_TOKENS)?;
    Ok(TowerKernel { w8a8: p.w8a8_ms < p.int8_ms, probe: Some(p) })
}

/// fc1 of the first layer on at most `tokens` tokens, weight-only and W8A8 (quantization
/// included), each timed as one submit + wait after a warm-up, best of [`PROBE_RUNS`]. Needs a
/// tower built for W8A8 (its int8 scratch); meaningful natively only (in wasm nothing waits).
pub fn measure(v: &GpuVision, tokens: usize) -> Result<Probe> {
    let (int8, w8a8, tokens) = v.fc1_plans(tokens)?;
    let ctx = v.context();
    let int8_ms = time_plan(ctx, &int8)?;
    let w8a8_ms = time_plan(ctx, &w8a8)?;
    Ok(Probe { tokens, int8_ms, w8a8_ms })
}

/// Best milliseconds of one submit + wait of `plan` over [`PROBE_RUNS`], after a warm-up.
fn time_plan(ctx: &GpuContext, plan: &Plan) -> Result<f64> {
    let run = || -> Result<f64> {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            plan.record(&mut pass);
        }
        let t0 = crate::engine::now_ms();
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok(crate::engine::now_ms() - t0)
    };
    run()?;
    (0..PROBE_RUNS).try_fold(f64::INFINITY, |best, _| Ok(best.min(run()?)))
}
