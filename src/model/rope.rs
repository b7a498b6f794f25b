//! Rotary position embeddings, HF `rotate_half` convention (the GGUF loader un-permutes
//! Q/K to it): for a head vector `x` of size `d` and pair `i < d/2`,
//! `x'[i] = x[i]·cos − x[i+d/2]·sin`, `x'[i+d/2] = x[i+d/2]·cos + x[i]·sin`, angle
//! `pos · inv_freq[i]`.
//!
//! The frequencies follow transformers' `ROPE_INIT_FUNCTIONS`
//! (`modeling_rope_utils.py`): `default`, `linear`, `dynamic` (NTK, recomputed when the
//! sequence outgrows the original context), `llama3` and `yarn`.

use super::config::{LlamaConfig, RopeScaling};
use crate::error::{Error, Result};
use std::f64::consts::PI;

#[derive(Clone, Debug)]
pub struct Rope {
    head_dim: usize,
    base: f64,
    /// `[head_dim / 2]`, for every variant but `dynamic` past the original context.
    inv_freq: Vec<f32>,
    /// Multiplies cos and sin (YaRN's attention factor; 1 elsewhere).
    attention_factor: f32,
    /// `Some((factor, original_max_positions))` for dynamic NTK scaling.
    dynamic: Option<(f64, usize)>,
}

/// `1 / base^(2i/d)` for `i < d/2`, in f64.
fn default_inv_freq(base: f64, d: usize) -> Vec<f64> {
    (0..d / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64)).collect()
}

impl Rope {
    pub fn new(cfg: &LlamaConfig) -> Result<Rope> {
        let d = cfg.head_dim();
        if !d.is_multiple_of(2) {
            return Err(Error::Unsupported(format!("RoPE over an odd head_dim {d}")));
        }
        let base = cfg.rope_theta;
        let mut rope = Rope { head_dim: d, base, inv_freq: Vec::new(), attention_factor: 1.0, dynamic: None };
        let inv: Vec<f64> = match &cfg.rope_scaling {
            None => default_inv_freq(base, d),
            Some(s) => match s.rope_type.as_str() {
                "default" => default_inv_freq(base, d),
                "linear" => default_inv_freq(base, d).iter().map(|f| f / s.factor).collect(),
                "dynamic" => {
                    let orig = s.original_max_position_embeddings.unwrap_or(cfg.max_position_embeddings);
                    rope.dynamic = Some((s.factor, orig));
                    default_inv_freq(base, d)
                }
                "llama3" => llama3_inv_freq(base, d, s, cfg.max_position_embeddings)?,
                "yarn" => {
                    let (inv, att) = yarn_inv_freq(base, d, s, cfg.max_position_embeddings);
                    rope.attention_factor = att as f32;
                    inv
                }
                other => return Err(Error::Unsupported(format!("rope_scaling type `{other}`"))),
            },
        };
        rope.inv_freq = inv.iter().map(|&f| f as f32).collect();
        Ok(rope)
    }

    /// The factor multiplying cos and sin (YaRN's attention factor; 1 for other variants).
    pub fn attention_factor(&self) -> f32 {
        self.attention_factor
    }

    /// The frequencies to use for a call whose last position is `seq_len - 1`, updating
    /// `max_seq` (transformers' `dynamic_rope_update`: grow past the original context,
    /// reset when back inside it). `max_seq` 0 means "the original context".
    pub fn frequencies(&self, seq_len: usize, max_seq: &mut usize) -> Vec<f32> {
        let Some((factor, orig)) = self.dynamic else {
            return self.inv_freq.clone();
        };
        let mut m = (*max_seq).max(orig);
        if seq_len > m {
            m = seq_len;
        }
        if seq_len < orig && m > orig {
            m = orig;
        }
        *max_seq = m;
        let d = self.head_dim as f64;
        let base = self.base * ((factor * m as f64 / orig as f64) - (factor - 1.0)).powf(d / (d - 2.0));
        default_inv_freq(base, self.head_dim).iter().map(|&f| f as f32).collect()
    }

    /// Rotate `x: [n, heads, head_dim]` in place; row `i` sits at position `pos0 + i`.
    pub fn apply(&self, x: &mut [f32], heads: usize, pos0: usize, inv_freq: &[f32]) {
        let d = self.head_dim;
        let h = d / 2;
        let mut cos = vec![0f32; h];
        let mut sin = vec![0f32; h];
        for (i, row) in x.chunks_exact_mut(heads * d).enumerate() {
            let p = (pos0 + i) as f32;
            for j in 0..h {
                // The angle is an f32 product, as transformers computes it.
                let a = (p * inv_freq[j]) as f64;
                cos[j] = (a.cos() as f32) * self.attention_factor;
                sin[j] = (a.sin() as f32) * self.attention_factor;
            }
            for head in row.chunks_exact_mut(d) {
                let (lo, hi) = head.split_at_mut(h);
                for j in 0..h {
                    let (a, b) = (lo[j], hi[j]);
                    lo[j] = a * cos[j] - b * sin[j];
                    hi[j] = b * cos[j] + a * sin[j];
                }
            }
        }
    }
}

/// Llama 3.1's frequency-dependent interpolation (`_compute_llama3_parameters`).
fn llama3_inv_freq(base: f64, d: usize, s: &RopeScaling, max_pos: usize) -> Result<Vec<f64>> {
    let missing = |f: &str| Error::format("config.json", format!("llama3 rope_scaling needs `{f}`"));
    let low = s.low_freq_factor.ok_or_else(|| missing("low_freq_factor"))?;
    let high = s.high_freq_factor.ok_or_else(|| missing("high_freq_factor"))?;
    let old = s.original_max_position_embeddings.unwrap_or(max_pos) as f64;
    let (low_wl, high_wl) = (old / low, old / high);
    Ok(default_inv_freq(base, d)
        .into_iter()
        .map(|f| {
            let wl = 2.0 * PI / f;
            let scaled = if wl > low_wl { f / s.factor } else { f };
            let smooth = (old / wl - low) / (high - low);
            // transformers: `~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)`.
            let medium = (high_wl..=low_wl).contains(&wl);
            if medium {
                (1.0 - smooth) * scaled / s.factor + smooth * scaled
            } else {
                scaled
            }
        })
        .collect())
}

/// YaRN (`_compute_yarn_parameters`): blend of interpolated and extrapolated frequencies
/// with a linear ramp between the correction dimensions; returns `(inv_freq, attention_factor)`.
fn yarn_inv_freq(base: f64, d: usize, s: &RopeScaling, max_pos: usize) -> (Vec<f64>, f64) {
    let orig = s.original_max_position_embeddings.unwrap_or(max_pos) as f64;
    let factor = s.factor;
    let att = s.attention_factor.unwrap_or(if factor <= 1.0 { 1.0 } else { 0.1 * factor.ln() + 1.0 });
    let (beta_fast, beta_slow) = (s.beta_fast.unwrap_or(32.0), s.beta_slow.unwrap_or(1.0));
    let dimf = d as f64;
    let corr = |rot: f64| dimf * (orig / (rot * 2.0 * PI)).ln() / (2.0 * base.ln());
    let low = corr(beta_fast).floor().max(0.0);
    let mut high = corr(beta_slow).ceil().min(dimf - 1.0);
    if low == high {
        high += 0.001;
    }
    let inv = default_inv_freq(base, d)
        .into_iter()
        .enumerate()
        .map(|(i, extra)| {
            let inter = extra / factor;
            let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            let extra_factor = 1.0 - ramp;
            inter * (1.0 - extra_factor) + extra * extra_factor
        })
        .collect();
    (inv, att)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scaling: Option<serde_json::Value>) -> LlamaConfig {
        let mut v = serde_json::json!({
            "vocab_size": 10, "hidden_size": 32, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "rope_theta": 10000.0, "max_position_embeddings": 64
        });
        if let Some(s) = scaling {
            v["rope_scaling"] = s;
        }
        LlamaConfig::from_value(&v).unwrap()
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn rotation_is_relative() {
        // <R(m) q, R(n) k> depends only on m - n, and rotation keeps the norm.
        let r = Rope::new(&cfg(None)).unwrap();
        let f = r.frequencies(10, &mut 0);
        let q: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
        let k: Vec<f32> = (0..16).map(|i| (i as f32 * 0.91).cos()).collect();
        let rot = |x: &[f32], p| {
            let mut y = x.to_vec();
            r.apply(&mut y, 1, p, &f);
            y
        };
        let a = dot(&rot(&q, 7), &rot(&k, 3));
        let b = dot(&rot(&q, 20), &rot(&k, 16));
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        assert!((dot(&rot(&q, 5), &rot(&q, 5)) - dot(&q, &q)).abs() < 1e-4);
        assert_eq!(rot(&q, 0), q);
    }

    #[test]
    fn rotate_half_pairs() {
        let r = Rope::new(&cfg(None)).unwrap();
        let f = r.frequencies(2, &mut 0);
        // x = e_0: at position 1, pair (0, 8) turns by angle inv_freq[0] = 1 rad.
        let mut x = vec![0f32; 16];
        x[0] = 1.0;
        r.apply(&mut x, 1, 1, &f);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[8] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn scaling_variants() {
        let d = default_inv_freq(10000.0, 16);
        let lin = Rope::new(&cfg(Some(serde_json::json!({"type": "linear", "factor": 4.0})))).unwrap();
        assert!((lin.inv_freq[3] as f64 - d[3] / 4.0).abs() < 1e-9);
        let l3 = Rope::new(&cfg(Some(serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}))))
        .unwrap();
        // Highest frequency untouched, lowest divided by the factor.
        assert!((l3.inv_freq[0] as f64 - d[0]).abs() < 1e-7);
        assert!((l3.inv_freq[7] as f64 - d[7] / 8.0).abs() < 1e-9);
        let dy = Rope::new(&cfg(Some(serde_json::json!({"type": "dynamic", "factor": 2.0})))).unwrap();
        let mut m = 0;
        assert_eq!(dy.frequencies(10, &mut m), dy.inv_freq);
        let grown = dy.frequencies(128, &mut m);
        assert_eq!(m, 128);
        assert!(grown[7] < dy.inv_freq[7]);
        assert_eq!(dy.frequencies(10, &mut m), dy.inv_freq);
        let y = Rope::new(&cfg(Some(serde_json::json!({"type": "yarn", "factor": 4.0})))).unwrap();
        assert!((y.attention_factor - (0.1 * 4f32.ln() + 1.0)).abs() < 1e-6);
        assert!((y.inv_freq[0] as f64 - d[0]).abs() < 1e-7);
        assert!((y.inv_freq[7] as f64 - d[7] / 4.0).abs() < 1e-9);
    }
}
