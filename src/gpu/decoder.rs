//! The Llama-family decoder on the GPU: the layer sequence of [`crate::model::llama`]
//! (`Llama::forward_embeds` / `layer_forward`, every `Arch` variant: Gemma's embedding scale,
//! OLMo's LayerNorm and `clip_qkv`, BitNet's BitLinear input norms) recorded as GPU plans.
//!
//! - Weights come from the CPU model's tensors, byte for byte ([`GpuWeights`]).
//! - The KV cache is one buffer per layer for K and V, `[capacity, kv_heads, head_dim]`,
//!   grown by doubling (contents copied) up to what one binding holds.
//! - The decode step (one token) is recorded once: its pipelines, bind groups and buffers
//!   are built on first use and replayed every token; only the [`Step`] uniform (position,
//!   cache length) and the token id are written before each submit. A prefill is planned per
//!   call, in chunks whose activations fit a binding.
//! - A step is split in two phases so no borrow is held across an await in the browser:
//!   [`GpuDecoder::submit`] records and submits and returns a [`Pending`] readback;
//!   [`Pending::read`] (async) maps it.

use std::sync::Arc;

use super::decoder_weights::{footprint, Footprint, GpuLinear, GpuNeed, GpuNorm, GpuWeights, Streamed};
use super::linear::{plan_gather, plan_linear};
use super::ops;
use super::ops_attn::{attention_decode, attention_prefill, decode_splits, AttnDims};
use super::ops_sample::{seen_bits, token_plan, TokenPlan};
use super::ops_vision::llava_merge;
use super::{GpuContext, Plan, Step};
use crate::error::{Error, Result};
use crate::model::config::NormKind;
use crate::model::rope::Rope;
use crate::model::{Llama, LlamaConfig};
use crate::sampler::SamplerConfig;

/// Epsilon of BitLinear158's inner RMSNorm (as `model::llama`).
const BITLINEAR_EPS: f32 = 1e-5;
/// First KV-cache capacity; doubled as the conversation grows.
const INITIAL_CAPACITY: usize = 256;

/// What a step feeds the decoder.
pub enum GpuInput<'a> {
    /// Token ids, embedded on the GPU.
    Tokens(&'a [u32]),
    /// Input embeddings `[n, hidden]`.
    Embeds(&'a [f32]),
    /// Token ids embedded on the GPU, then the LLaVA merge: each row whose `rows` entry is
    /// `Some(features)` (`[hidden]`, an image token's) takes those values instead
    /// (`shaders/llava_merge.wgsl`). `ids` and `rows` have one entry per row.
    Merged { ids: &'a [u32], rows: &'a [Option<&'a [f32]>] },
}

/// Activation buffers for `n` rows.
struct Acts {
    n: u32,
    ids: wgpu::Buffer,    // [n] u32
    map: wgpu::Buffer,    // [n] u32 feature row of each row (u32::MAX: none), the LLaVA merge
    x: wgpu::Buffer,      // [n, hidden] residual stream
    h: wgpu::Buffer,      // [n, hidden] (the merge's feature rows before the first layer)
    q: wgpu::Buffer,      // [n, heads, head_dim]
    k: wgpu::Buffer,      // [n, kv_heads, head_dim]
    v: wgpu::Buffer,      // [n, kv_heads, head_dim]
    att: wgpu::Buffer,    // [n, heads, head_dim]
    tmp: wgpu::Buffer,    // [n, hidden]
    gate: wgpu::Buffer,   // [n, ffn]
    up: wgpu::Buffer,     // [n, ffn]
    last: wgpu::Buffer,   // [hidden] the last row of x
    last_h: wgpu::Buffer, // [hidden] normed
    logits: wgpu::Buffer, // [vocab]
}

impl Acts {
    fn new(ctx: &GpuContext, c: &LlamaConfig, n: usize) -> Acts {
        let f = |label: &str, elems: usize| ctx.zeros(label, 4 * elems as u64);
        let (d, qd, kd) = (c.hidden_size, c.n_heads() * c.head_dim(), c.n_kv_heads() * c.head_dim());
        Acts {
            n: n as u32,
            ids: f("ids", n),
            map: f("map", n),
            x: f("x", n * d),
            h: f("h", n * d),
            q: f("q", n * qd),
            k: f("k", n * kd),
            v: f("v", n * kd),
            att: f("att", n * qd),
            tmp: f("tmp", n * d),
            gate: f("gate", n * c.intermediate_size),
            up: f("up", n * c.intermediate_size),
            last: f("last", d),
            last_h: f("last_h", d),
            logits: f("logits", c.vocab_size),
        }
    }
}

/// A recorded step: the body (embedding → layers), the head (last row → logits) and, for
/// the decode step with GPU sampling on, the token choice.
struct Recorded {
    acts: Acts,
    body: Plan,
    head: Plan,
    token: Option<TokenPlan>,
}

/// What a step reads back.
#[derive(Clone, Debug)]
pub enum GpuOutput {
    /// The last position's logits `[vocab]` (prefill, or decode without GPU sampling).
    Logits(Vec<f32>),
    /// The token the GPU chose (decode with [`GpuDecoder::set_sampling`]): 4 bytes read back.
    Token(u32),
}

/// The result of a submitted step, on its way back.
pub struct Pending {
    staging: wgpu::Buffer,
    /// `Some(vocab)`: logits; `None`: one token id.
    vocab: Option<usize>,
}

impl Pending {
    /// Wait for the step and read its result.
    pub async fn read(self, ctx: &GpuContext) -> Result<GpuOutput> {
        match self.vocab {
            Some(v) => {
                let bytes = ctx.map_read(&self.staging, 4 * v as u64).await?;
                Ok(GpuOutput::Logits(bytemuck::cast_slice(&bytes).to_vec()))
            }
            None => {
                let b = ctx.map_read(&self.staging, 4).await?;
                Ok(GpuOutput::Token(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
        }
    }
}

pub struct GpuDecoder {
    ctx: Arc<GpuContext>,
    cfg: LlamaConfig,
    rope: Rope,
    rope_max_seq: usize,
    inv_freq: wgpu::Buffer, // [head_dim / 2]
    inv_freq_now: Vec<f32>,
    w: GpuWeights,
    k_cache: Vec<wgpu::Buffer>, // per layer [capacity, kv_heads, head_dim]
    v_cache: Vec<wgpu::Buffer>,
    capacity: usize,
    max_positions: usize,
    prefill_chunk: usize,
    len: usize,
    step: wgpu::Buffer, // Step uniform
    decode: Option<Recorded>,
    /// GPU token choice for decode steps (`None`: logits are read back).
    sampling: Option<SamplerConfig>,
    seen: Option<wgpu::Buffer>, // [ceil(vocab / 32)] u32 bitset of ids seen (repetition penalty)
    seed: u32,
}

impl GpuDecoder {
    /// Upload `lm`'s weights after checking they fit the adapter (`budget`: optional byte cap).
    /// `context` caps the cache (positions).
    pub fn new(ctx: Arc<GpuContext>, lm: &Llama, context: usize, budget: Option<u64>) -> Result<GpuDecoder> {
        Self::with_streamed(ctx, lm, context, budget, Streamed::new())
    }

    /// [`GpuDecoder::new`] taking the matrices already uploaded as their shards arrived
    /// (`lm` holds placeholders for them) and uploading the rest from `lm`.
    pub fn with_streamed(
        ctx: Arc<GpuContext>,
        lm: &Llama,
        context: usize,
        budget: Option<u64>,
        mut streamed: Streamed,
    ) -> Result<GpuDecoder> {
        let on_gpu: u64 = streamed.values().map(|m| m.nbytes()).sum();
        let Footprint { max_positions, prefill_chunk } = footprint(
            &ctx,
            &lm.cfg,
            GpuNeed { decoder: lm.weight_bytes() as u64 + on_gpu, vision: 0, context },
            budget,
        )?;
        let cfg = lm.cfg.clone();
        let w = GpuWeights::upload(&ctx, lm, &mut streamed)?;
        let rope = lm.rope.clone();
        let mut rope_max_seq = 0;
        let inv = rope.frequencies(1, &mut rope_max_seq);
        let step = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: std::mem::size_of::<Step>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut dec = GpuDecoder {
            inv_freq: ctx.upload_f32("inv_freq", &inv),
            inv_freq_now: inv,
            rope,
            rope_max_seq,
            w,
            k_cache: Vec::new(),
            v_cache: Vec::new(),
            capacity: 0,
            max_positions: max_positions.min(context.max(1)),
            prefill_chunk,
            len: 0,
            step,
            decode: None,
            sampling: None,
            seen: None,
            seed: 0,
            cfg,
            ctx,
        };
        dec.grow(INITIAL_CAPACITY.min(dec.max_positions))?;
        dec.ctx.take_error()?;
        Ok(dec)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    /// Positions held in the KV cache.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Forget positions from `len` on (the next prompt shares only a prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// Most positions this decoder can hold (binding limit and context cap).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }
    /// Dispatches one decode token records (after the first decode step).
    pub fn dispatches_per_token(&self) -> Option<usize> {
        let r = self.decode.as_ref()?;
        Some(
            r.body.dispatches.len() + r.head.dispatches.len() + r.token.as_ref().map_or(0, |t| t.plan.dispatches.len()),
        )
    }
    pub fn weight_bytes(&self) -> u64 {
        self.w.nbytes()
    }

    /// Choose decode tokens on the GPU with `cfg` (`None`: read logits back instead).
    /// `history`: the ids so far, for the repetition penalty (the GPU adds each pick itself).
    pub fn set_sampling(&mut self, cfg: Option<&SamplerConfig>, history: &[u32]) -> Result<()> {
        if self.sampling.as_ref() != cfg {
            self.sampling = cfg.cloned();
            if let Some(r) = self.decode.as_mut() {
                r.token = None;
            }
        }
        if cfg.is_some_and(|c| c.repetition_penalty != 1.0) {
            let bits = seen_bits(self.cfg.vocab_size as u32, history);
            let seen = self.seen.get_or_insert_with(|| self.ctx.zeros("seen", 4 * bits.len() as u64));
            self.ctx.queue.write_buffer(seen, 0, bytemuck::cast_slice(&bits));
            if let Some(r) = self.decode.as_mut() {
                r.token = None;
            }
        }
        Ok(())
    }

    /// The sampler's RNG word for the next GPU pick (`Step.seed`).
    pub fn set_seed(&mut self, seed: u32) {
        self.seed = seed;
    }

    /// Run `input` after the cached positions and start reading back the last row's logits.
    pub fn submit(&mut self, input: GpuInput<'_>) -> Result<Pending> {
        let d = self.cfg.hidden_size;
        let n = match input {
            GpuInput::Tokens(t) => t.len(),
            GpuInput::Embeds(x) if x.len() % d == 0 => x.len() / d,
            GpuInput::Embeds(x) => return Err(Error::Shape(format!("{} embedding values for rows of {d}", x.len()))),
            GpuInput::Merged { ids, rows }
                if ids.len() == rows.len() && rows.iter().flatten().all(|r| r.len() == d) =>
            {
                ids.len()
            }
            GpuInput::Merged { .. } => return Err(Error::Shape(format!("merged rows: one id and rows of {d} each"))),
        };
        if n == 0 {
            return Err(Error::Invalid("forward called with no tokens".into()));
        }
        if let GpuInput::Tokens(t) | GpuInput::Merged { ids: t, .. } = input {
            if let Some(&bad) = t.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
                return Err(Error::Invalid(format!(
                    "token id {bad} is outside the vocabulary of {} tokens",
                    self.cfg.vocab_size
                )));
            }
        }
        let need = self.len + n;
        if need > self.max_positions {
            return Err(Error::ContextOverflow { tokens: need, limit: self.max_positions });
        }
        if need > self.capacity {
            self.grow(need.next_power_of_two().min(self.max_positions))?;
        }
        self.ctx.take_error()?;
        let mut pending = None;
        let mut start = 0;
        while start < n {
            let m = (n - start).min(self.prefill_chunk);
            let chunk = match input {
                GpuInput::Tokens(t) => GpuInput::Tokens(&t[start..start + m]),
                GpuInput::Embeds(x) => GpuInput::Embeds(&x[start * d..(start + m) * d]),
                GpuInput::Merged { ids, rows } => {
                    GpuInput::Merged { ids: &ids[start..start + m], rows: &rows[start..start + m] }
                }
            };
            pending = Some(self.run_chunk(chunk, m, start + m == n)?);
            start += m;
        }
        Ok(pending.expect("n > 0").expect("the last chunk reads back"))
    }

    /// One chunk of `m` rows at position `self.len`; the last chunk also runs the head.
    fn run_chunk(&mut self, input: GpuInput<'_>, m: usize, last: bool) -> Result<Option<Pending>> {
        let pos0 = self.len;
        self.write_step(pos0, m);
        let fresh;
        let decode = m == 1 && matches!(input, GpuInput::Tokens(_));
        let rec = if decode {
            if self.decode.is_none() {
                self.decode = Some(self.record(1, true, false)?);
            }
            if let (Some(cfg), Some(r)) = (&self.sampling, &self.decode) {
                if r.token.is_none() {
                    let logits = &r.acts.logits;
                    let tp =
                        token_plan(&self.ctx, &self.step, logits, self.cfg.vocab_size as u32, cfg, self.seen.as_ref())?;
                    self.decode.as_mut().expect("built").token = Some(tp);
                }
            }
            self.decode.as_ref().expect("just built")
        } else {
            let merge = matches!(input, GpuInput::Merged { .. });
            fresh = self.record(m, merge || matches!(input, GpuInput::Tokens(_)), merge)?;
            &fresh
        };
        self.write_input(&rec.acts, input);
        let d = self.cfg.hidden_size as u64;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            rec.body.record(&mut pass);
        }
        let token = rec.token.as_ref().filter(|_| decode);
        let staging = last.then(|| {
            enc.copy_buffer_to_buffer(&rec.acts.x, 4 * d * (m as u64 - 1), &rec.acts.last, 0, 4 * d);
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                rec.head.record(&mut pass);
                if let Some(t) = token {
                    t.plan.record(&mut pass);
                }
            }
            let (src, bytes) = match token {
                Some(t) => (&t.out, 4),
                None => (&rec.acts.logits, 4 * self.cfg.vocab_size as u64),
            };
            let staging = self.ctx.staging(bytes);
            enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
            staging
        });
        let vocab = token.is_none().then_some(self.cfg.vocab_size);
        self.ctx.queue.submit([enc.finish()]);
        self.len += m;
        Ok(staging.map(|staging| Pending { staging, vocab }))
    }

    /// Write a chunk's input into its activations: ids, embeddings, or ids with the merge's
    /// map and feature rows (packed in order into `h`).
    fn write_input(&self, a: &Acts, input: GpuInput<'_>) {
        let q = &self.ctx.queue;
        match input {
            GpuInput::Tokens(t) => q.write_buffer(&a.ids, 0, bytemuck::cast_slice(t)),
            GpuInput::Embeds(x) => q.write_buffer(&a.x, 0, bytemuck::cast_slice(x)),
            GpuInput::Merged { ids, rows } => {
                q.write_buffer(&a.ids, 0, bytemuck::cast_slice(ids));
                let (mut feats, mut k) = (Vec::new(), 0u32); // [k, hidden]
                let map: Vec<u32> = rows
                    .iter()
                    .map(|r| match r {
                        Some(f) => {
                            feats.extend_from_slice(f);
                            k += 1;
                            k - 1
                        }
                        None => u32::MAX,
                    })
                    .collect();
                q.write_buffer(&a.map, 0, bytemuck::cast_slice(&map));
                if !feats.is_empty() {
                    q.write_buffer(&a.h, 0, bytemuck::cast_slice(&feats));
                }
            }
        }
    }

    /// Write the Step uniform (and, for dynamic NTK RoPE, new frequencies) for `m` rows at `pos0`.
    fn write_step(&mut self, pos0: usize, m: usize) {
        let step = Step { pos0: pos0 as u32, n: m as u32, kv_len: (pos0 + m) as u32, seed: self.seed };
        self.ctx.queue.write_buffer(&self.step, 0, bytemuck::bytes_of(&step));
        let inv = self.rope.frequencies(pos0 + m, &mut self.rope_max_seq);
        if inv != self.inv_freq_now {
            self.ctx.queue.write_buffer(&self.inv_freq, 0, bytemuck::cast_slice(&inv));
            self.inv_freq_now = inv;
        }
    }

    /// Reallocate the caches for `capacity` positions, keeping what they hold.
    fn grow(&mut self, capacity: usize) -> Result<()> {
        let c = &self.cfg;
        let row = (c.n_kv_heads() * c.head_dim() * 4) as u64;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        let mut fresh = |old: &[wgpu::Buffer], label: &str| -> Vec<wgpu::Buffer> {
            (0..c.num_hidden_layers)
                .map(|l| {
                    let b = self.ctx.zeros(label, row * capacity as u64);
                    if let Some(o) = old.get(l) {
                        enc.copy_buffer_to_buffer(o, 0, &b, 0, row * self.len as u64);
                    }
                    b
                })
                .collect()
        };
        let k = fresh(&self.k_cache, "k_cache");
        let v = fresh(&self.v_cache, "v_cache");
        self.ctx.queue.submit([enc.finish()]);
        self.k_cache = k;
        self.v_cache = v;
        self.capacity = capacity;
        self.decode = None; // its bind groups point at the old caches
        self.ctx.take_error()
    }

    /// Plan `n` rows: embedding (from ids when `tokens`, then the LLaVA merge when `merge`),
    /// every layer, and the head.
    fn record(&self, n: usize, tokens: bool, merge: bool) -> Result<Recorded> {
        let (ctx, c) = (&*self.ctx, &self.cfg);
        let acts = Acts::new(ctx, c, n);
        let (nu, d) = (n as u32, c.hidden_size as u32);
        let mut body = Plan::default();
        if tokens {
            body.extend(plan_gather(ctx, &self.w.embed, &acts.ids, &acts.x, nu)?);
        }
        if merge {
            body.extend(llava_merge(ctx, &acts.h, &acts.map, &acts.x, nu, d)?);
        }
        if c.arch.embed_scale {
            body.extend(ops::scale(ctx, &acts.x, (c.hidden_size as f64).sqrt() as f32, nu * d)?);
        }
        for l in 0..c.num_hidden_layers {
            self.record_layer(&mut body, &acts, l)?;
        }
        let mut head = Plan::default();
        head.extend(self.norm(&self.w.norm, &acts.last, &acts.last_h, 1)?);
        head.extend(plan_linear(ctx, self.w.head(), None, &acts.last_h, &acts.logits, 1)?);
        if c.arch.scale_logits {
            head.extend(ops::scale(ctx, &acts.logits, 1.0 / (c.hidden_size as f32).sqrt(), c.vocab_size as u32)?);
        }
        Ok(Recorded { acts, body, head, token: None })
    }

    /// One decoder layer on `acts.x` (as `Llama::layer_forward`).
    fn record_layer(&self, p: &mut Plan, a: &Acts, l: usize) -> Result<()> {
        let (ctx, c, w) = (&*self.ctx, &self.cfg, &self.w.layers[l]);
        let n = a.n;
        let (d, heads, kvh, hd) =
            (c.hidden_size as u32, c.n_heads() as u32, c.n_kv_heads() as u32, c.head_dim() as u32);
        let ffn = c.intermediate_size as u32;
        p.extend(self.norm(&w.input_norm, &a.x, &a.h, n)?);
        self.bitlinear_input(p, &a.h, n, d)?;
        p.extend(linear(ctx, &w.q, &a.h, &a.q, n)?);
        p.extend(linear(ctx, &w.k, &a.h, &a.k, n)?);
        p.extend(linear(ctx, &w.v, &a.h, &a.v, n)?);
        if let Some(clip) = c.clip_qkv {
            for (t, width) in [(&a.q, heads * hd), (&a.k, kvh * hd), (&a.v, kvh * hd)] {
                p.extend(ops::clamp(ctx, t, clip as f32, n * width)?);
            }
        }
        let af = self.rope.attention_factor();
        p.extend(ops::rope(ctx, &self.step, &self.inv_freq, &a.q, n, heads, hd, af)?);
        p.extend(ops::rope(ctx, &self.step, &self.inv_freq, &a.k, n, kvh, hd, af)?);
        let cache = (&self.k_cache[l], &self.v_cache[l]);
        p.extend(ops::kv_append(ctx, &self.step, (&a.k, &a.v), cache, n, kvh * hd)?);
        let dims = AttnDims::new(heads, kvh, hd, c.sliding_window.map(|w| w as u32));
        if n == 1 {
            p.extend(attention_decode(
                ctx,
                &self.step,
                &a.q,
                cache,
                &a.att,
                dims,
                decode_splits(self.capacity as u32),
            )?);
        } else {
            p.extend(attention_prefill(ctx, &self.step, &a.q, cache, &a.att, n, dims)?);
        }
        self.bitlinear_input(p, &a.att, n, heads * hd)?;
        p.extend(linear(ctx, &w.o, &a.att, &a.tmp, n)?);
        p.extend(ops::add(ctx, &a.x, &a.tmp, n * d)?);
        p.extend(self.norm(&w.post_norm, &a.x, &a.h, n)?);
        self.bitlinear_input(p, &a.h, n, d)?;
        p.extend(linear(ctx, &w.gate, &a.h, &a.gate, n)?);
        p.extend(linear(ctx, &w.up, &a.h, &a.up, n)?);
        p.extend(ops::glu(ctx, c.arch.act, &a.gate, &a.up, n * ffn)?);
        self.bitlinear_input(p, &a.gate, n, ffn)?;
        p.extend(linear(ctx, &w.down, &a.gate, &a.tmp, n)?);
        p.extend(ops::add(ctx, &a.x, &a.tmp, n * d)?);
        Ok(())
    }

    /// The config's norm of `x` into `y`, `n` rows of `hidden` (as `Norm::apply`).
    fn norm(&self, norm: &GpuNorm, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32) -> Result<Plan> {
        let (c, d) = (&self.cfg, self.cfg.hidden_size as u32);
        match c.arch.norm {
            NormKind::Layer => ops::layer_norm(&self.ctx, x, norm.w.as_ref(), norm.b.as_ref(), y, n, d, c.norm_eps()),
            _ => ops::rms_norm(&self.ctx, x, norm.w.as_ref(), y, n, d, c.norm_eps()),
        }
    }

    /// BitLinear158's weightless RMSNorm of its input, for models trained that way.
    fn bitlinear_input(&self, p: &mut Plan, x: &wgpu::Buffer, n: u32, width: u32) -> Result<()> {
        if self.cfg.arch.bitlinear_norm {
            p.extend(ops::rms_norm_inplace(&self.ctx, x, n, width, BITLINEAR_EPS)?);
        }
        Ok(())
    }
}

fn linear(ctx: &GpuContext, l: &GpuLinear, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32) -> Result<Plan> {
    plan_linear(ctx, &l.m, l.bias.as_ref(), x, y, n)
}
