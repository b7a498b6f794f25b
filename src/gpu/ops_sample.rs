//! Token choice on the GPU, so a decode step reads back one `u32`: greedy
//! (`shaders/argmax.wgsl`) and temperature / top-k / top-p (`shaders/sample.wgsl`), both with
//! the repetition penalty over a bitset of seen ids kept on the GPU (the pick marks its own
//! token). CPU reference: `src/sampler.rs` `sample`; the draw is the same
//! `Rng::next_u32` the CPU sampler would take, passed as `Step.seed`.
//!
//! Exactness: greedy and top-k (k ≤ [`CAP`]) choose the CPU's token except when the draw
//! lies within float rounding (~1e-6) of a cumulative boundary. With `top_k` 0 or above
//! [`CAP`] only the top [`CAP`] tokens are candidates (normalized over the whole vocabulary):
//! same token whenever the nucleus / the draw falls inside them (see the shader header).

use super::ops::{fw, Launch};
use super::{GpuContext, Plan};
use crate::error::{Error, Result};
use crate::sampler::SamplerConfig;

/// Most candidates the sampling kernel sorts (top-k beyond this is approximated).
pub const CAP: u32 = 1024;
/// Logits per workgroup of the vocabulary passes.
const CHUNK: u32 = 4096;
/// Ids must fit the kernels' 24-bit id keys.
const MAX_VOCAB: u32 = 1 << 24;

/// The repetition-penalty bitset for `history` over a vocabulary of `vocab` ids
/// (`[ceil(vocab / 32)]` words; upload it as the plan's `seen` buffer).
pub fn seen_bits(vocab: u32, history: &[u32]) -> Vec<u32> {
    let mut w = vec![0u32; vocab.div_ceil(32) as usize];
    for &id in history.iter().filter(|&&id| id < vocab) {
        w[(id / 32) as usize] |= 1 << (id % 32);
    }
    w
}

/// A token-choice plan and where its answer lands.
pub struct TokenPlan {
    pub plan: Plan,
    /// `[1]` u32: the chosen id after the plan runs.
    pub out: wgpu::Buffer,
}

/// Choose the next token from `logits: [vocab]` as `cfg` says. `seen` (from [`seen_bits`])
/// is required when `cfg.repetition_penalty != 1`; the plan sets the chosen id's bit in it.
/// `step` supplies the draw (`Step.seed`) for non-greedy configs.
pub fn token_plan(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    vocab: u32,
    cfg: &SamplerConfig,
    seen: Option<&wgpu::Buffer>,
) -> Result<TokenPlan> {
    if vocab == 0 || vocab > MAX_VOCAB {
        return Err(Error::Gpu(format!("sampling over a vocabulary of {vocab}")));
    }
    let penalty = cfg.repetition_penalty != 1.0;
    if penalty && seen.is_none() {
        return Err(Error::Gpu("a repetition penalty needs the seen-ids buffer".into()));
    }
    let placeholder = ctx.zeros("seen (unused)", 4);
    let seen = seen.unwrap_or(&placeholder);
    let out = ctx.zeros("token", 4);
    let mut plan = if cfg.temperature <= 0.0 || cfg.top_k == 1 {
        argmax_plan(ctx, logits, vocab, cfg.repetition_penalty, penalty, seen, &out)?
    } else {
        sample_plan(ctx, step, logits, vocab, cfg, seen, &out)?
    };
    plan.keep.push(placeholder);
    Ok(TokenPlan { plan, out })
}

fn argmax_plan(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    vocab: u32,
    penalty: f32,
    use_penalty: bool,
    seen: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let n_part = vocab.div_ceil(CHUNK);
    let part = ctx.zeros("argmax partials", 8 * n_part as u64);
    let params = [vocab, n_part, fw(penalty), use_penalty as u32];
    let finish_bufs = [(2, seen), (3, &part), (4, out)];
    let mut launch = Launch {
        label: "argmax_partial",
        shader: "argmax",
        entry: "partial",
        overrides: &[],
        params: &params,
        buffers: &[(1, logits), (2, seen), (3, &part)],
        groups: [n_part, 1, 1],
    };
    launch.push(ctx, &mut plan)?;
    launch.label = "argmax_finish";
    launch.entry = "finish";
    launch.buffers = &finish_bufs;
    launch.groups = [1, 1, 1];
    launch.push(ctx, &mut plan)?;
    plan.keep.push(part);
    Ok(plan)
}

/// Candidate count and whether probabilities are normalized over the whole vocabulary.
fn candidate_count(vocab: u32, top_k: usize) -> (u32, bool) {
    let k = if top_k == 0 { vocab as usize } else { top_k.min(vocab as usize) };
    if k <= CAP as usize {
        (k as u32, false)
    } else {
        (CAP, true)
    }
}

fn sample_plan(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    vocab: u32,
    cfg: &SamplerConfig,
    seen: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let n_part = vocab.div_ceil(CHUNK);
    let (k, full_mass) = candidate_count(vocab, cfg.top_k);
    let state = ctx.zeros("sample state", 32);
    let hist = ctx.zeros("sample histogram", 4 * 256);
    let cand = ctx.zeros("sample candidates", 8 * CAP as u64);
    let mass = ctx.zeros("sample mass", 8 * n_part as u64);
    let use_penalty = cfg.repetition_penalty != 1.0;
    let params = [
        vocab,
        k,
        fw(cfg.temperature.max(1e-6)),
        fw(cfg.top_p),
        fw(cfg.repetition_penalty),
        use_penalty as u32,
        full_mass as u32,
        n_part,
    ];
    let pass = |entry: &'static str, buffers: &[(u32, &wgpu::Buffer)], groups: u32, plan: &mut Plan| {
        Launch {
            label: entry,
            shader: "sample",
            entry,
            overrides: &[],
            params: &params,
            buffers,
            groups: [groups, 1, 1],
        }
        .push(ctx, plan)
    };
    let vocab_bufs = [(2, logits), (3, seen), (4, &state)];
    pass("init", &[(4, &state), (5, &hist)], 1, &mut plan)?;
    for _ in 0..7 {
        pass("hist_pass", &[vocab_bufs[0], vocab_bufs[1], vocab_bufs[2], (5, &hist)], n_part, &mut plan)?;
        pass("select_digit", &[(4, &state), (5, &hist)], 1, &mut plan)?;
    }
    pass("gather", &[vocab_bufs[0], vocab_bufs[1], vocab_bufs[2], (6, &cand)], n_part, &mut plan)?;
    if full_mass {
        pass("mass_pass", &[(2, logits), (3, seen), (7, &mass)], n_part, &mut plan)?;
    }
    pass("pick", &[(1, step), (3, seen), (6, &cand), (7, &mass), (8, out)], 1, &mut plan)?;
    plan.keep.extend([state, hist, cand, mass]);
    Ok(plan)
}
