//! Recorded GPU work: a [`Dispatch`] is one pipeline with its bind group and grid, built once
//! (at load for the decode step) and replayed into a compute pass every token; a [`Plan`] is a
//! sequence of them plus the scratch buffers they own.
//!
//! Values that change every token (the position, the cache length) are not baked into
//! per-dispatch parameters: kernels that need them bind the [`Step`] uniform, which the
//! decoder rewrites with `queue.write_buffer` before submitting the token's command buffer.

use std::sync::Arc;

/// One compute dispatch, ready to record.
pub struct Dispatch {
    pub label: &'static str,
    pub pipe: Arc<wgpu::ComputePipeline>,
    pub bind: wgpu::BindGroup,
    /// Workgroups in x, y, z (each ≤ 65535: fold large grids into y).
    pub groups: [u32; 3],
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipe);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Dispatches in order, and the buffers (parameters, scratch) they need kept alive.
#[derive(Default)]
pub struct Plan {
    pub dispatches: Vec<Dispatch>,
    pub keep: Vec<wgpu::Buffer>,
}

impl Plan {
    pub fn push(&mut self, d: Dispatch) {
        self.dispatches.push(d);
    }
    pub fn extend(&mut self, other: Plan) {
        self.dispatches.extend(other.dispatches);
        self.keep.extend(other.keep);
    }
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.dispatches.iter().for_each(|d| d.record(pass));
    }
    /// Record into a fresh encoder, submit, and return (no wait).
    pub fn submit(&self, ctx: &super::GpuContext) {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.record(&mut pass);
        }
        ctx.queue.submit([enc.finish()]);
    }
}

/// The per-token uniform (binding it is how a kernel sees the current position).
/// WGSL: `struct Step { pos0: u32, n: u32, kv_len: u32, seed: u32 }`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    /// Position of the first new token (= cache length before this step).
    pub pos0: u32,
    /// New tokens in this step (1 when decoding).
    pub n: u32,
    /// Cache length after this step (`pos0 + n`).
    pub kv_len: u32,
    /// Sampling random bits for this step (the sampler's PRNG output).
    pub seed: u32,
}

/// Split `total` workgroups into an `[x, y, 1]` grid with x ≤ 65535; kernels rebuild the
/// linear index as `wg.y * num_workgroups.x + wg.x` and skip indices ≥ total.
pub fn grid(total: u32) -> [u32; 3] {
    if total <= 65535 {
        [total.max(1), 1, 1]
    } else {
        let y = total.div_ceil(65535);
        [total.div_ceil(y), y, 1]
    }
}
