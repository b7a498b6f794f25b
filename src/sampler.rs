//! Token sampling: greedy, temperature, top-k, top-p, repetition penalty; a seeded RNG so
//! every run with the same seed picks the same tokens.
//!
//! The order of the logits processors follows transformers' `generate`: repetition
//! penalty, then temperature, top-k, top-p (`RepetitionPenaltyLogitsProcessor`,
//! `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`), then a draw from the
//! softmax. The RNG is PCG32 (O'Neill, pcg-random.org), integer-only, so the same seed gives
//! the same stream natively and in wasm (`crate::rng`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    /// 1.0 means no nucleus cut.
    pub top_p: f32,
    /// 1.0 means none (CTRL-style: divide positive logits, multiply negative ones).
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 0 }
    }
}

impl SamplerConfig {
    /// The one rule for every option, which the CLI, the wasm API and the JS API all reach
    /// through [`crate::engine::Engine::start`]: `temperature` finite in 0..=100 (0: greedy),
    /// `top_p` finite in (0, 1], `repetition_penalty` finite in (0, 100] (1: none); `top_k` and
    /// `seed` take any value. The error names the option and the value.
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |name: &str, v: f32, rule: &str| {
            Err(crate::error::Error::Invalid(format!("sampling option `{name}` is {v}; it must be {rule}")))
        };
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return bad("temperature", self.temperature, "a number from 0 (greedy) to 100");
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "a number above 0 and at most 1");
        }
        let rp = self.repetition_penalty;
        if !(rp.is_finite() && rp > 0.0 && rp <= 100.0) {
            return bad("repetition_penalty", rp, "a number above 0 and at most 100 (1: none)");
        }
        Ok(())
    }
}

pub use crate::rng::Rng;

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// CTRL repetition penalty on every id in `history` (each id once): positive logits are
/// divided by `penalty`, negative ones multiplied, so `penalty > 1` discourages repeats.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for &id in history {
        let i = id as usize;
        if i < logits.len() && seen.insert(id) {
            let l = logits[i];
            logits[i] = if l > 0.0 { l / penalty } else { l * penalty };
        }
    }
}

/// Candidates surviving temperature, top-k and top-p: `(id, probability)` sorted by
/// decreasing probability, probabilities renormalized to sum to 1.
pub fn candidates(logits: &[f32], cfg: &SamplerConfig) -> Vec<(u32, f32)> {
    let t = cfg.temperature.max(1e-6);
    let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / t)).collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if cfg.top_k > 0 && cfg.top_k < c.len() {
        // Partition first: sorting a 50k vocabulary every token is the slow part.
        c.select_nth_unstable_by(cfg.top_k - 1, order);
        c.truncate(cfg.top_k);
    }
    c.sort_by(order);
    let m = c[0].1;
    let mut sum = 0.0f64;
    for e in c.iter_mut() {
        e.1 = (e.1 - m).exp();
        sum += e.1 as f64;
    }
    for e in c.iter_mut() {
        e.1 = (e.1 as f64 / sum) as f32;
    }
    if cfg.top_p < 1.0 {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut cum = 0.0f32;
        let mut keep = 0;
        for e in &c {
            keep += 1;
            cum += e.1;
            if cum >= cfg.top_p {
                break;
            }
        }
        c.truncate(keep);
        let s: f32 = c.iter().map(|e| e.1).sum();
        for e in c.iter_mut() {
            e.1 /= s;
        }
    }
    c
}

/// Pick the next token. `history` (prompt and generated ids) feeds the repetition penalty.
/// An empty `logits` slice is a caller bug and picks id 0.
pub fn sample(logits: &[f32], cfg: &SamplerConfig, history: &[u32], rng: &mut Rng) -> u32 {
    pick(logits, cfg, history, || rng.next_f32())
}

/// [`sample`] with the uniform draw supplied by `draw` (called only when the config samples).
pub fn pick(logits: &[f32], cfg: &SamplerConfig, history: &[u32], draw: impl FnOnce() -> f32) -> u32 {
    if logits.is_empty() {
        return 0;
    }
    let mut l = logits.to_vec();
    apply_repetition_penalty(&mut l, history, cfg.repetition_penalty);
    if cfg.temperature <= 0.0 || cfg.top_k == 1 {
        return argmax(&l);
    }
    let c = candidates(&l, cfg);
    let u = draw();
    let mut cum = 0.0;
    for &(id, p) in &c {
        cum += p;
        if u < cum {
            return id;
        }
    }
    c.last().map_or(0, |e| e.0)
}

/// A sampler with its own RNG stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    pub cfg: SamplerConfig,
    rng: Rng,
    /// A word taken by [`Sampler::next_draw`] for a pick made elsewhere (the GPU) and not yet
    /// confirmed: if that pick fails, the next [`Sampler::sample`] uses it, so the stream of
    /// draws is the same as if every pick had been made here.
    held: Option<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = Rng::new(cfg.seed);
        Sampler { cfg, rng, held: None }
    }
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let (held, rng) = (&mut self.held, &mut self.rng);
        pick(logits, &self.cfg, history, || word_to_unit(held.take().unwrap_or_else(|| rng.next_u32())))
    }
    /// Whether a pick consumes a random draw (anything but greedy).
    pub fn draws(&self) -> bool {
        !(self.cfg.temperature <= 0.0 || self.cfg.top_k == 1)
    }
    /// The RNG word the next pick would consume, for a pick made on the GPU (0 for greedy).
    /// Held until [`Sampler::confirm_draw`].
    pub fn next_draw(&mut self) -> u32 {
        if !self.draws() {
            return 0;
        }
        let w = self.held.take().unwrap_or_else(|| self.rng.next_u32());
        self.held = Some(w);
        w
    }
    /// The pick that used [`Sampler::next_draw`]'s word was made.
    pub fn confirm_draw(&mut self) {
        self.held = None;
    }
}

/// A 32-bit RNG word as a uniform in [0, 1) with 24 bits, as [`Rng::next_f32`].
pub fn word_to_unit(w: u32) -> f32 {
    (w >> 8) as f32 / (1u32 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(t: f32, k: usize, p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig { temperature: t, top_k: k, top_p: p, repetition_penalty: 1.0, seed }
    }

    #[test]
    fn greedy_is_argmax() {
        let l = [0.1, 2.5, -1.0, 2.4];
        assert_eq!(argmax(&l), 1);
        let mut rng = Rng::new(1);
        assert_eq!(sample(&l, &SamplerConfig::default(), &[], &mut rng), 1);
        // top-k = 1 at any temperature is greedy too.
        for s in 0..20 {
            assert_eq!(sample(&l, &hot(5.0, 1, 1.0, s), &[], &mut Rng::new(s)), 1);
        }
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let l: Vec<f32> = (0..50).map(|i| ((i * 7919) % 13) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(hot(1.0, 0, 1.0, seed));
            (0..40).map(|_| s.sample(&l, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        // The PCG reference demo (`pcg32-demo`, seed 42, stream 54) prints these.
        let mut r = Rng::with_stream(42, 54);
        let first: Vec<u32> = (0..3).map(|_| r.next_u32()).collect();
        assert_eq!(first, [0xa15c02b7, 0x7b47f409, 0xba1d3330]);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probs ∝ exp(ln p): 0.5, 0.3, 0.15, 0.05.
        let l: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let ids = |p| candidates(&l, &hot(1.0, 0, p, 0)).iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(ids(0.5), vec![0]);
        assert_eq!(ids(0.75), vec![0, 1]);
        assert_eq!(ids(0.9), vec![0, 1, 2]);
        assert_eq!(ids(0.99), vec![0, 1, 2, 3]);
        let c = candidates(&l, &hot(1.0, 0, 0.75, 0));
        assert!((c[0].1 - 0.625).abs() < 1e-5 && (c[1].1 - 0.375).abs() < 1e-5);
        // Sampling never leaves the nucleus.
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            assert!(sample(&l, &hot(1.0, 0, 0.75, 0), &[], &mut rng) < 2);
        }
    }

    #[test]
    fn top_k_cuts_and_temperature_sharpens() {
        let l = [3.0, 2.0, 1.0, 0.0];
        assert_eq!(candidates(&l, &hot(1.0, 2, 1.0, 0)).len(), 2);
        let cold = candidates(&l, &hot(0.1, 0, 1.0, 0));
        let warm = candidates(&l, &hot(2.0, 0, 1.0, 0));
        assert!(cold[0].1 > 0.99 && warm[0].1 < 0.6);
    }

    #[test]
    fn repetition_penalty_direction() {
        let mut l = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
        // It can flip the greedy choice away from a repeated token.
        let l = [2.0, 1.5];
        let cfg = SamplerConfig { repetition_penalty: 1.5, ..Default::default() };
        assert_eq!(sample(&l, &cfg, &[0], &mut Rng::new(0)), 1);
    }

    #[test]
    fn sample_follows_probabilities() {
        let l: Vec<f32> = [0.7f32, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(hot(1.0, 0, 1.0, 3));
        let mut counts = [0usize; 3];
        for _ in 0..5000 {
            counts[s.sample(&l, &[]) as usize] += 1;
        }
        assert!((counts[0] as f32 / 5000.0 - 0.7).abs() < 0.03, "{counts:?}");
        assert!((counts[2] as f32 / 5000.0 - 0.1).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn invalid_options_are_refused_by_name() {
        assert!(SamplerConfig::default().validate().is_ok());
        let ok = SamplerConfig { temperature: 0.7, top_k: 40, top_p: 0.9, repetition_penalty: 1.1, seed: 3 };
        assert!(ok.validate().is_ok());
        let cases = [
            (SamplerConfig { temperature: f32::NAN, ..ok.clone() }, "temperature"),
            (SamplerConfig { temperature: f32::INFINITY, ..ok.clone() }, "temperature"),
            (SamplerConfig { temperature: -1.0, ..ok.clone() }, "temperature"),
            (SamplerConfig { top_p: 2.0, ..ok.clone() }, "top_p"),
            (SamplerConfig { top_p: 0.0, ..ok.clone() }, "top_p"),
            (SamplerConfig { top_p: f32::NAN, ..ok.clone() }, "top_p"),
            (SamplerConfig { repetition_penalty: 0.0, ..ok.clone() }, "repetition_penalty"),
            (SamplerConfig { repetition_penalty: f32::NEG_INFINITY, ..ok.clone() }, "repetition_penalty"),
        ];
        for (c, name) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("`{name}`")), "{c:?}: {e}");
        }
    }
}
