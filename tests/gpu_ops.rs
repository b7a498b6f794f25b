//! The decoder's non-matmul GPU ops (src/gpu/ops*.rs, shaders/*.wgsl) against their CPU
//! references over random shapes: odd row lengths, GQA ratios 1/2/4, head_dim 32/64/80/128,
//! 1/5/37 rows, caches of 1..300 positions, sliding windows. Floats: normalized L2 error
//! (`rel_err`), printed; token ids: exact. Set WEBVLM_SKIP_GPU=1 to skip.

use crate::gpu_common;

use gpu_common::{gpu, rel_err};
use webvlm::gpu::ops_attn::{attention_decode, attention_full, attention_prefill, decode_splits, AttnDims};
use webvlm::gpu::{ops, GpuContext, Plan, Step};
use webvlm::model::attention::{attend, AttnShape};
use webvlm::model::config::{Act, LlamaConfig};
use webvlm::model::rope::Rope;
use webvlm::rng::Rng;
use webvlm::vision::ops::Activation;

fn run(ctx: &GpuContext, plan: &Plan, out: &wgpu::Buffer, n: usize) -> Vec<f32> {
    plan.submit(ctx);
    ctx.read_f32(out, n).unwrap()
}

fn step_buf(ctx: &GpuContext, s: Step) -> wgpu::Buffer {
    ctx.uniform("step", bytemuck::cast_slice(&[s]))
}

fn set_step(ctx: &GpuContext, buf: &wgpu::Buffer, s: Step) {
    ctx.queue.write_buffer(buf, 0, bytemuck::bytes_of(&s));
}

#[test]
fn norms_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(1);
    for (n, d) in [(1usize, 1usize), (5, 7), (37, 257), (3, 1000), (2, 4099)] {
        let x = rng.normals(n * d, 0.3);
        let w = rng.normals(d, 1.0);
        let b = rng.normals(d, 0.0);
        let (xb, wb, bb) = (ctx.upload_f32("x", &x), ctx.upload_f32("w", &w), ctx.upload_f32("b", &b));
        let yb = ctx.zeros("y", 4 * (n * d) as u64);
        let (nu, du) = (n as u32, d as u32);
        let mut want = vec![0f32; n * d];
        webvlm::model::ops::rms_norm(&x, &w, 1e-5, &mut want);
        let got = run(&ctx, &ops::rms_norm(&ctx, &xb, Some(&wb), &yb, nu, du, 1e-5).unwrap(), &yb, n * d);
        let e1 = rel_err(&got, &want);
        let mut plain = x.clone();
        webvlm::model::ops::rms_norm_plain(&mut plain, d, 1e-6);
        let got = run(&ctx, &ops::rms_norm(&ctx, &xb, None, &yb, nu, du, 1e-6).unwrap(), &yb, n * d);
        let e2 = rel_err(&got, &plain);
        let ib = ctx.upload_f32("x in place", &x);
        let got = run(&ctx, &ops::rms_norm_inplace(&ctx, &ib, nu, du, 1e-6).unwrap(), &ib, n * d);
        let e3 = rel_err(&got, &plain);
        let mut e4 = 0f32;
        for (wo, bo) in [(None, None), (Some(&wb), None), (None, Some(&bb)), (Some(&wb), Some(&bb))] {
            webvlm::model::ops::layer_norm(&x, d, wo.map(|_| &w[..]), bo.map(|_| &b[..]), 1e-5, &mut want);
            let got = run(&ctx, &ops::layer_norm(&ctx, &xb, wo, bo, &yb, nu, du, 1e-5).unwrap(), &yb, n * d);
            e4 = e4.max(rel_err(&got, &want));
        }
        println!("norms [{n}, {d}]: rms {e1:.2e} plain {e2:.2e} in-place {e3:.2e} layer {e4:.2e}");
        assert!(e1.max(e2).max(e3).max(e4) < 2e-6);
    }
}

fn rope_cfg(head_dim: usize, scaling: Option<serde_json::Value>) -> LlamaConfig {
    let mut v = serde_json::json!({
        "vocab_size": 10, "hidden_size": 2 * head_dim, "intermediate_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "rope_theta": 10000.0, "max_position_embeddings": 4096
    });
    if let Some(s) = scaling {
        v["rope_scaling"] = s;
    }
    LlamaConfig::from_value(&v).unwrap()
}

#[test]
fn rope_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(2);
    let yarn = serde_json::json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024});
    for (hd, scaling) in [(32, None), (64, Some(yarn)), (80, None), (128, None)] {
        let rope = Rope::new(&rope_cfg(hd, scaling)).unwrap();
        let inv = rope.frequencies(1, &mut 0);
        let fb = ctx.upload_f32("inv_freq", &inv);
        for (n, heads, pos0) in [(1usize, 1usize, 0usize), (5, 3, 7), (37, 8, 1000), (1, 4, 30000)] {
            let x = rng.normals(n * heads * hd, 0.0);
            let xb = ctx.upload_f32("x", &x);
            let step = step_buf(&ctx, Step { pos0: pos0 as u32, n: n as u32, kv_len: (pos0 + n) as u32, seed: 0 });
            let plan =
                ops::rope(&ctx, &step, &fb, &xb, n as u32, heads as u32, hd as u32, rope.attention_factor()).unwrap();
            let got = run(&ctx, &plan, &xb, x.len());
            let mut want = x.clone();
            rope.apply(&mut want, heads, pos0, &inv);
            let e = rel_err(&got, &want);
            println!("rope hd {hd} [{n}, {heads}] pos0 {pos0} factor {}: {e:.2e}", rope.attention_factor());
            assert!(e < 2e-6);
        }
    }
}

#[test]
fn kv_append_writes_rows_at_step_position() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(3);
    let (cap, row) = (40usize, 2 * 80);
    let kc0 = rng.normals(cap * row, 0.0);
    let vc0 = rng.normals(cap * row, 0.0);
    let (kc, vc) = (ctx.upload_f32("kc", &kc0), ctx.upload_f32("vc", &vc0));
    let step = step_buf(&ctx, Step::default());
    let (mut kw, mut vw) = (kc0.clone(), vc0.clone());
    let mut pos = 0usize;
    for n in [5usize, 1, 1, 13] {
        let k = rng.normals(n * row, 0.0);
        let v = rng.normals(n * row, 0.0);
        let (kb, vb) = (ctx.upload_f32("k", &k), ctx.upload_f32("v", &v));
        set_step(&ctx, &step, Step { pos0: pos as u32, n: n as u32, kv_len: (pos + n) as u32, seed: 0 });
        ops::kv_append(&ctx, &step, (&kb, &vb), (&kc, &vc), n as u32, row as u32).unwrap().submit(&ctx);
        kw[pos * row..(pos + n) * row].copy_from_slice(&k);
        vw[pos * row..(pos + n) * row].copy_from_slice(&v);
        pos += n;
    }
    assert_eq!(ctx.read_f32(&kc, cap * row).unwrap(), kw);
    assert_eq!(ctx.read_f32(&vc, cap * row).unwrap(), vw);
}

/// (heads, kv_heads, head_dim) cases: GQA ratios 1, 2, 4.
const HEADS: [(usize, usize, usize); 5] = [(2, 2, 32), (4, 2, 64), (8, 2, 80), (4, 1, 128), (3, 3, 256)];

#[test]
fn attention_decode_matches_cpu_and_replays() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(4);
    let cap = 300usize;
    for (heads, kvh, hd) in HEADS {
        for window in [None, Some(1usize), Some(7), Some(64)] {
            let k = rng.normals(cap * kvh * hd, 0.0);
            let v = rng.normals(cap * kvh * hd, 0.0);
            let (kb, vb) = (ctx.upload_f32("k", &k), ctx.upload_f32("v", &v));
            let q = rng.normals(heads * hd, 0.0);
            let qb = ctx.upload_f32("q", &q);
            let ob = ctx.zeros("out", 4 * (heads * hd) as u64);
            let step = step_buf(&ctx, Step::default());
            let dims = AttnDims::new(heads as u32, kvh as u32, hd as u32, window.map(|w| w as u32));
            for splits in [decode_splits(cap as u32), 1, 3] {
                let plan = attention_decode(&ctx, &step, &qb, (&kb, &vb), &ob, dims, splits).unwrap();
                let mut worst = 0f32;
                for len in [1usize, 2, 9, 64, 65, 200, 300] {
                    set_step(&ctx, &step, Step { pos0: (len - 1) as u32, n: 1, kv_len: len as u32, seed: 0 });
                    let got = run(&ctx, &plan, &ob, heads * hd);
                    let shape = AttnShape { heads, kv_heads: kvh, head_dim: hd, pos0: len - 1, window };
                    let mut want = vec![0f32; heads * hd];
                    attend(&q, &k[..len * kvh * hd], &v[..len * kvh * hd], shape, &mut want);
                    worst = worst.max(rel_err(&got, &want));
                }
                println!("decode heads {heads}/{kvh} hd {hd} window {window:?} splits {splits}: {worst:.2e}");
                assert!(worst < 2e-6);
            }
        }
    }
}

#[test]
fn attention_prefill_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(5);
    for (heads, kvh, hd) in HEADS {
        for (n, pos0, window) in
            [(1usize, 0usize, None), (5, 0, None), (37, 0, Some(7usize)), (37, 13, None), (5, 100, Some(16))]
        {
            let len = pos0 + n;
            let cap = len + 3;
            let k = rng.normals(cap * kvh * hd, 0.0);
            let v = rng.normals(cap * kvh * hd, 0.0);
            let q = rng.normals(n * heads * hd, 0.0);
            let (kb, vb, qb) = (ctx.upload_f32("k", &k), ctx.upload_f32("v", &v), ctx.upload_f32("q", &q));
            let ob = ctx.zeros("out", 4 * (n * heads * hd) as u64);
            let step = step_buf(&ctx, Step { pos0: pos0 as u32, n: n as u32, kv_len: len as u32, seed: 0 });
            let dims = AttnDims::new(heads as u32, kvh as u32, hd as u32, window.map(|w| w as u32));
            let plan = attention_prefill(&ctx, &step, &qb, (&kb, &vb), &ob, n as u32, dims).unwrap();
            let got = run(&ctx, &plan, &ob, n * heads * hd);
            let shape = AttnShape { heads, kv_heads: kvh, head_dim: hd, pos0, window };
            let mut want = vec![0f32; n * heads * hd];
            attend(&q, &k[..len * kvh * hd], &v[..len * kvh * hd], shape, &mut want);
            let e = rel_err(&got, &want);
            println!("prefill heads {heads}/{kvh} hd {hd} n {n} pos0 {pos0} window {window:?}: {e:.2e}");
            assert!(e < 2e-6);
        }
    }
}

#[test]
fn attention_full_matches_vision_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(6);
    for (n, heads, hd) in [(1usize, 1usize, 32usize), (5, 4, 64), (37, 2, 80), (50, 3, 64)] {
        let d = heads * hd;
        let (q, k, v) = (rng.normals(n * d, 0.0), rng.normals(n * d, 0.0), rng.normals(n * d, 0.0));
        let (qb, kb, vb) = (ctx.upload_f32("q", &q), ctx.upload_f32("k", &k), ctx.upload_f32("v", &v));
        let ob = ctx.zeros("out", 4 * (n * d) as u64);
        let plan = attention_full(&ctx, &qb, (&kb, &vb), &ob, n as u32, heads as u32, hd as u32).unwrap();
        let got = run(&ctx, &plan, &ob, n * d);
        let want = webvlm::vision::ops::full_attention(&q, &k, &v, n, heads, hd);
        let e = rel_err(&got, &want);
        println!("full attention n {n} heads {heads} hd {hd}: {e:.2e}");
        assert!(e < 2e-6);
    }
}

/// Values over the activations' interesting range, tails included.
fn act_inputs(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = rng.normals(n, 0.0).iter().map(|v| v * 3.0).collect();
    x.extend([0.0, -0.0, 1e-6, -1e-6, 6.0, -6.0, 12.0, -12.0, 30.0, -30.0, 100.0, -100.0]);
    x
}

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    got.iter().zip(want).map(|(g, w)| (g - w).abs() / (1.0 + w.abs())).fold(0.0, f32::max)
}

#[test]
fn elementwise_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(7);
    let x = act_inputs(&mut rng, 70_001);
    let y = rng.normals(x.len(), 0.5);
    let len = x.len() as u32;
    let yb = ctx.upload_f32("y", &y);
    let check = |name: &str, got: Vec<f32>, want: Vec<f32>, bound: f32| {
        let (e, m) = (rel_err(&got, &want), max_rel(&got, &want));
        println!("{name}: rel_err {e:.2e}, max elementwise {m:.2e}");
        assert!(e < bound && m < 10.0 * bound, "{name}");
    };
    let xb = ctx.upload_f32("x", &x);
    let got = run(&ctx, &ops::add(&ctx, &xb, &yb, len).unwrap(), &xb, x.len());
    check("add", got, x.iter().zip(&y).map(|(a, b)| a + b).collect(), 1e-7);
    let xb = ctx.upload_f32("x", &x);
    let got = run(&ctx, &ops::scale(&ctx, &xb, 0.125, len).unwrap(), &xb, x.len());
    check("scale", got, x.iter().map(|a| a * 0.125).collect(), 1e-7);
    let xb = ctx.upload_f32("x", &x);
    let got = run(&ctx, &ops::clamp(&ctx, &xb, 2.5, len).unwrap(), &xb, x.len());
    check("clamp", got, x.iter().map(|a| a.clamp(-2.5, 2.5)).collect(), 1e-7);
    for act in [Act::Silu, Act::GeluTanh, Act::Gelu] {
        let gb = ctx.upload_f32("gate", &x);
        let got = run(&ctx, &ops::glu(&ctx, act, &gb, &yb, len).unwrap(), &gb, x.len());
        let mut want = x.clone();
        webvlm::model::ops::glu(act, &mut want, &y);
        check(&format!("glu {act:?}"), got, want, 1e-6);
    }
    for act in [Activation::QuickGelu, Activation::Gelu, Activation::GeluTanh, Activation::Relu, Activation::Silu] {
        let xb = ctx.upload_f32("x", &x);
        let got = run(&ctx, &ops::act(&ctx, act, &xb, len).unwrap(), &xb, x.len());
        check(&format!("act {act:?}"), got, x.iter().map(|&v| act.eval(v)).collect(), 1e-6);
    }
}
