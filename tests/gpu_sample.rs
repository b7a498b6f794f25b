//! GPU token choice (src/gpu/ops_sample.rs, shaders/argmax.wgsl, shaders/sample.wgsl) against
//! src/sampler.rs `sample`: the same logits, config, history and random draw give the same id.
//! Plans are built once and replayed with a new `Step.seed` per draw; with a repetition
//! penalty the GPU marks each chosen id itself, and the CPU's history grows by the same ids.

use crate::gpu_common;

use gpu_common::gpu;
use webvlm::gpu::ops_sample::{seen_bits, token_plan, CAP};
use webvlm::gpu::{GpuContext, Step};
use webvlm::rng::Rng;
use webvlm::sampler::{candidates, sample, SamplerConfig};

/// Draw `draws` tokens on both sides; returns (mismatches, mismatches whose CPU token ranks
/// past CAP, i.e. out of the GPU's reach).
fn compare(ctx: &GpuContext, logits: &[f32], cfg: &SamplerConfig, history: &[u32], draws: usize) -> (usize, usize) {
    let vocab = logits.len() as u32;
    let lb = ctx.upload_f32("logits", logits);
    let seen = ctx.upload("seen", bytemuck::cast_slice(&seen_bits(vocab, history)));
    let step = ctx.uniform("step", bytemuck::cast_slice(&[Step::default()]));
    let tp = token_plan(ctx, &step, &lb, vocab, cfg, Some(&seen)).unwrap();
    let mut rng = Rng::new(cfg.seed);
    let mut hist = history.to_vec();
    let (mut bad, mut tail) = (0, 0);
    for _ in 0..draws {
        let seed = rng.clone().next_u32();
        ctx.queue.write_buffer(&step, 0, bytemuck::bytes_of(&Step { pos0: 0, n: 1, kv_len: 1, seed }));
        tp.plan.submit(ctx);
        let got = bytemuck::cast_slice::<u8, u32>(&ctx.read(&tp.out, 4).unwrap())[0];
        let want = sample(logits, cfg, &hist, &mut rng);
        if got != want {
            bad += 1;
            let mut l = logits.to_vec();
            webvlm::sampler::apply_repetition_penalty(&mut l, &hist, cfg.repetition_penalty);
            let all = candidates(&l, &SamplerConfig { top_p: 1.0, top_k: 0, ..cfg.clone() });
            let rank = all.iter().position(|e| e.0 == want).unwrap();
            tail += (rank >= CAP as usize) as usize;
            println!("  mismatch: gpu {got} cpu {want} (cpu rank {rank})");
        }
        hist.push(want);
    }
    (bad, tail)
}

fn cfg(temperature: f32, top_k: usize, top_p: f32, repetition_penalty: f32, seed: u64) -> SamplerConfig {
    SamplerConfig { temperature, top_k, top_p, repetition_penalty, seed }
}

#[test]
fn greedy_matches_cpu_with_ties_and_penalty() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    for vocab in [1usize, 7, 4097, 256_000] {
        // quantized logits: many exact ties, the lowest index must win
        let logits: Vec<f32> = rng.normals(vocab, 0.0).iter().map(|v| (v * 4.0).round()).collect();
        let history: Vec<u32> = (0..20).map(|_| rng.below(vocab) as u32).collect();
        for penalty in [1.0, 1.3] {
            let (bad, _) = compare(&ctx, &logits, &cfg(0.0, 0, 1.0, penalty, 1), &history, 4);
            println!("greedy vocab {vocab} penalty {penalty}: {bad} mismatches");
            assert_eq!(bad, 0);
        }
    }
}

#[test]
fn top_k_sampling_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(12);
    let mut total = 0;
    for (vocab, draws) in [(50usize, 30usize), (1000, 30), (32_000, 12), (256_000, 4)] {
        let logits = rng.normals(vocab, 0.0).iter().map(|v| v * 2.5).collect::<Vec<f32>>();
        let history: Vec<u32> = (0..30).map(|_| rng.below(vocab) as u32).collect();
        for (t, k, p, pen) in
            [(1.0, 40, 1.0, 1.0), (0.7, 5, 1.0, 1.3), (1.3, 1024, 0.9, 1.0), (1.0, 50, 0.5, 1.2), (0.9, 2, 1.0, 1.0)]
        {
            let c = cfg(t, k, p, pen, total as u64);
            let (bad, _) = compare(&ctx, &logits, &c, &history, draws);
            println!("vocab {vocab} t {t} top_k {k} top_p {p} penalty {pen}: {bad}/{draws} mismatches");
            assert_eq!(bad, 0);
            total += 1;
        }
    }
}

#[test]
fn full_vocabulary_sampling_matches_cpu_within_reach() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(13);
    // small vocabularies: every id is a candidate, so the GPU is exact
    let logits: Vec<f32> = rng.normals(700, 0.0);
    for p in [1.0, 0.8] {
        let (bad, _) = compare(&ctx, &logits, &cfg(1.0, 0, p, 1.0, 5), &[], 40);
        println!("vocab 700 top_p {p}: {bad} mismatches");
        assert_eq!(bad, 0);
    }
    // a peaked 256k distribution: the nucleus lies in the top CAP; with top_p = 1 a draw can
    // land past CAP (mass ~1%), where the GPU picks its last candidate instead
    let mut logits: Vec<f32> = rng.normals(256_000, 0.0);
    for _ in 0..30 {
        let i = rng.below(logits.len());
        logits[i] += 14.0;
    }
    for (p, draws) in [(0.9, 12), (1.0, 12)] {
        let (bad, tail) = compare(&ctx, &logits, &cfg(1.0, 0, p, 1.1, 9), &[], draws);
        println!("vocab 256000 top_p {p}: {bad} mismatches, {tail} of them past CAP");
        assert_eq!(bad, tail, "every mismatch must be a tail draw the GPU cannot reach");
        assert!(tail <= 2);
    }
}
