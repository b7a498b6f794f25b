//! Running the vision tower's INT8 linears as W8A8 ([`crate::kernels::w8a8`]: per-token int8
//! activations, one i32 sum per output) instead of weight-only INT8 (block-of-32 activations,
//! [`crate::kernels::act`]), and the choice between them.
//!
//! W8A8 is considered only for a tower the converter smoothed (SmoothQuant, [`super::smooth`];
//! `config.webvlm_vision_smoothing` in the manifest, see docs/FORMAT.md), whose q/k/v and fc1
//! inputs then have tamed outlier channels; every INT8 linear of the tower (q, k, v, o, fc1,
//! fc2) then runs W8A8. It is used only when it is faster here: at load [`choose`] times one
//! fc1 matmul of the first layer on [`PROBE_TOKENS`] random tokens both ways (best of
//! [`PROBE_RUNS`]) and keeps the faster; the figures stay in [`TowerKernel::probe`].

use super::clip::VisionTower;
use crate::model::linear::Linear;
use crate::quant::QData;
use serde::Serialize;

/// The key under `config` recording the converter's smoothing (`{"alpha": .., "images": ..}`).
pub const SMOOTHING_KEY: &str = "webvlm_vision_smoothing";
/// Tokens of the load-time probe (a 336-pixel CLIP-L tile has 577).
pub const PROBE_TOKENS: usize = 64;
/// Timed runs per kernel in the probe (the best counts).
pub const PROBE_RUNS: usize = 2;

/// The load-time measurement behind the choice.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Probe {
    pub tokens: usize,
    /// One fc1 matmul with weight-only INT8 (ms).
    pub int8_ms: f64,
    /// The same with W8A8 (ms).
    pub w8a8_ms: f64,
}

/// How the tower's INT8 linears run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TowerKernel {
    /// Run INT8 linears as W8A8.
    pub w8a8: bool,
    /// The load-time timing, when one was taken.
    pub probe: Option<Probe>,
}

impl TowerKernel {
    /// `x: [n, in]` → `[n, out]` through `l`, W8A8 for INT8 weights when chosen.
    pub fn apply(&self, l: &Linear, x: &[f32], n: usize) -> Vec<f32> {
        if !(self.w8a8 && matches!(l.w.data, QData::Int8 { .. })) {
            return l.apply(x, n);
        }
        let mut y = vec![0f32; n * l.w.rows]; // [n, out]
        if let Err(e) = crate::kernels::w8a8::matmul(&l.w, x, n, &mut y) {
            panic!("W8A8 linear: {e}");
        }
        if let Some(b) = &l.bias {
            y.chunks_exact_mut(l.w.rows).for_each(|row| crate::model::ops::add_inplace(row, b));
        }
        y
    }

    /// One line for logs and engine info.
    pub fn describe(&self) -> String {
        let kind = if self.w8a8 { "W8A8 (int8 activations per token)" } else { "weight-only INT8" };
        match self.probe {
            Some(p) => format!(
                "{kind}; load probe fc1 x {} tokens: INT8 {:.2} ms, W8A8 {:.2} ms",
                p.tokens, p.int8_ms, p.w8a8_ms
            ),
            None => kind.to_string(),
        }
    }
}

/// Whether `config` records the converter's smoothing of the vision tower.
pub fn smoothed(config: &serde_json::Value) -> bool {
    config.get(SMOOTHING_KEY).is_some_and(|v| v.is_object())
}

/// Time both kernels on the first layer's fc1 and set `tower.kernel` (W8A8 only if faster).
/// Does nothing unless the tower has INT8 linears in memory (not GPU-only placeholders).
pub fn choose(tower: &mut VisionTower) {
    let Some(fc1) = tower.layers.first().map(|l| &l.fc1) else { return };
    if !matches!(fc1.w.data, QData::Int8 { .. }) || fc1.w.is_placeholder() {
        return;
    }
    let n = PROBE_TOKENS.min(tower.dims.num_positions()).max(1);
    let x = crate::rng::Rng::new(7).normals(n * fc1.w.cols, 0.0); // [n, in]
    let time = |k: TowerKernel| {
        (0..PROBE_RUNS)
            .map(|_| {
                let t0 = crate::engine::now_ms();
                std::hint::black_box(k.apply(fc1, &x, n));
                crate::engine::now_ms() - t0
            })
            .fold(f64::INFINITY, f64::min)
    };
    let int8_ms = time(TowerKernel { w8a8: false, probe: None });
    let w8a8_ms = time(TowerKernel { w8a8: true, probe: None });
    tower.kernel = TowerKernel { w8a8: w8a8_ms < int8_ms, probe: Some(Probe { tokens: n, int8_ms, w8a8_ms }) };
}
