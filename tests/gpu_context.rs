//! The GPU device itself: an adapter opens (lavapipe in CI, installed by scripts/setup.sh),
//! the shader preprocessing step, and the copy kernel moves bytes exactly.
//! Set WEBVLM_SKIP_GPU=1 to skip GPU tests on a machine without any Vulkan driver.

use crate::gpu_common;

use gpu_common::gpu;
use webvlm::rng::Rng;

#[test]
fn adapter_opens_and_reports_limits() {
    let Some(ctx) = gpu() else { return };
    let i = &ctx.info;
    println!("adapter: {i:?}");
    assert!(i.max_storage_binding >= 128 << 20, "binding limit {}", i.max_storage_binding);
    assert!(i.max_workgroup_invocations >= 256);
}

#[test]
fn copy_kernel_moves_every_byte() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(7);
    for n_vec4 in [1usize, 3, 255, 256, 257, 100_003] {
        let words: Vec<u32> = (0..4 * n_vec4).map(|_| rng.next_u32()).collect();
        let src = ctx.upload("src", bytemuck::cast_slice(&words));
        let dst = ctx.zeros("dst", 16 * n_vec4 as u64);
        let pipe = ctx.pipeline("copy", "main", &[]).unwrap();
        let params = ctx.uniform("params", &[n_vec4 as u32]);
        let bg = ctx.bind(&pipe, &[&params, &src, &dst]);
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups((n_vec4 as u32).div_ceil(256).min(1024), 1, 1);
        }
        ctx.queue.submit([enc.finish()]);
        let back = ctx.read(&dst, 16 * n_vec4 as u64).unwrap();
        assert_eq!(bytemuck::cast_slice::<u8, u32>(&back), &words[..], "n_vec4 {n_vec4}");
    }
}

#[test]
fn shader_preprocessing() {
    let Some(ctx) = gpu() else { return };
    // every shader in the table compiles its includes and directives for this adapter
    for (name, _) in webvlm::gpu::shaders::SHADERS {
        match webvlm::gpu::shaders::source(name, &ctx.info) {
            Ok(s) => assert!(!s.contains("enable subgroups;"), "{name}: naga rejects `enable subgroups;`"),
            Err(e) => assert!(e.to_string().contains("lacks"), "{name}: {e}"),
        }
    }
    assert!(webvlm::gpu::shaders::raw("no-such-shader").is_err());
}
