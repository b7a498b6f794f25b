//! Row-wise ops of the vision tower and the projector as HF transformers computes them in
//! f32: `nn.LayerNorm`, the activations of `transformers.activations.ACT2FN` that vision
//! configs name, and bidirectional multi-head attention (`CLIPAttention` / `SiglipAttention`
//! with the eager softmax, no mask).

use crate::error::{Error, Result};
use crate::kernels;
use crate::model::ops::softmax;
use crate::quant::{QData, QTensor};

/// `nn.LayerNorm` over each row of `x: [n, d]` in place: `(x - mean) / sqrt(var + eps) * w + b`
/// with the biased variance.
pub fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let d = w.len();
    for row in x.chunks_exact_mut(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for ((v, g), bb) in row.iter_mut().zip(w).zip(b) {
            *v = (((*v as f64 - mean) * inv) as f32) * g + bb;
        }
    }
}

/// An activation named by an HF config (`hidden_act`, `projector_hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (`quick_gelu`, CLIP).
    QuickGelu,
    /// Exact `0.5 x (1 + erf(x / sqrt 2))` (`gelu`).
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))` (`gelu_pytorch_tanh`, `gelu_new`, SigLIP).
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Activation> {
        Ok(match name {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return Err(Error::Unsupported(format!("activation `{name}`"))),
        })
    }

    #[inline]
    pub fn eval(self, x: f32) -> f32 {
        match self {
            Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
            Activation::Gelu => (0.5 * x as f64 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2))) as f32,
            Activation::GeluTanh => {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Relu => x.max(0.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
        }
    }

    pub fn apply(self, x: &mut [f32]) {
        for v in x {
            *v = self.eval(*v);
        }
    }
}

/// Full (unmasked) multi-head attention. `q`, `k`, `v`: `[n, heads*hd]`; returns
/// `[n, heads*hd]` = per head `softmax(q kᵀ · hd^-0.5) v`. The products run through the f32
/// matrix kernels (keys and transposed values of one head as the "weight").
pub fn full_attention(q: &[f32], k: &[f32], v: &[f32], n: usize, heads: usize, hd: usize) -> Vec<f32> {
    let d = heads * hd;
    let scale = (hd as f32).powf(-0.5);
    let mut out = vec![0f32; n * d]; // [n, heads*hd]
    let mut qh = vec![0f32; n * hd]; // [n, hd]
    let mut kh = vec![0f32; n * hd]; // [n, hd]
    let mut vt = vec![0f32; hd * n]; // [hd, n]
    let mut scores = vec![0f32; n * n]; // [n, n]
    let mut oh = vec![0f32; n * hd]; // [n, hd]
    for h in 0..heads {
        for t in 0..n {
            let src = t * d + h * hd;
            for (i, &x) in q[src..src + hd].iter().enumerate() {
                qh[t * hd + i] = x * scale;
            }
            kh[t * hd..(t + 1) * hd].copy_from_slice(&k[src..src + hd]);
            for (i, &x) in v[src..src + hd].iter().enumerate() {
                vt[i * n + t] = x;
            }
        }
        let kmat = QTensor { rows: n, cols: hd, data: QData::F32(std::mem::take(&mut kh)) };
        kernels::matmul(&kmat, &qh, n, &mut scores);
        kh = match kmat.data {
            QData::F32(v) => v,
            _ => unreachable!("built as f32 above"),
        };
        for row in scores.chunks_exact_mut(n) {
            softmax(row);
        }
        let vmat = QTensor { rows: hd, cols: n, data: QData::F32(std::mem::take(&mut vt)) };
        kernels::matmul(&vmat, &scores, n, &mut oh);
        vt = match vmat.data {
            QData::F32(v) => v,
            _ => unreachable!("built as f32 above"),
        };
        for t in 0..n {
            out[t * d + h * hd..t * d + (h + 1) * hd].copy_from_slice(&oh[t * hd..(t + 1) * hd]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_zero_mean_unit_var() {
        let mut x = [1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], &[0.5; 4], 0.0);
        let m: f32 = x.iter().sum::<f32>() / 4.0;
        assert!((m - 0.5).abs() < 1e-6);
        // (1 - 2.5) / sqrt(1.25)
        assert!((x[0] - (0.5 - 1.5 / 1.25f32.sqrt())).abs() < 1e-6);
    }

    #[test]
    fn activation_values() {
        // torch.nn.functional.gelu(torch.tensor([1.0, -0.5]))
        assert!((Activation::Gelu.eval(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((Activation::Gelu.eval(-0.5) + 0.154_268_5).abs() < 1e-6);
        // gelu(approximate="tanh")(1.0)
        assert!((Activation::GeluTanh.eval(1.0) - 0.841_192).abs() < 1e-5);
        // 1 * sigmoid(1.702)
        assert!((Activation::QuickGelu.eval(1.0) - 0.845_795_8).abs() < 1e-6);
        assert!(Activation::parse("tanh").is_err());
    }

    #[test]
    fn attention_matches_naive() {
        let (n, heads, hd) = (5, 2, 3);
        let f = |i: usize| ((i * 37 % 11) as f32 - 5.0) / 4.0;
        let q: Vec<f32> = (0..n * heads * hd).map(f).collect();
        let k: Vec<f32> = (0..n * heads * hd).map(|i| f(i + 3)).collect();
        let v: Vec<f32> = (0..n * heads * hd).map(|i| f(i + 7)).collect();
        let out = full_attention(&q, &k, &v, n, heads, hd);
        let d = heads * hd;
        for h in 0..heads {
            for i in 0..n {
                let mut s: Vec<f32> = (0..n)
                    .map(|j| (0..hd).map(|c| q[i * d + h * hd + c] * k[j * d + h * hd + c]).sum::<f32>())
                    .map(|x| x / (hd as f32).sqrt())
                    .collect();
                softmax(&mut s);
                for c in 0..hd {
                    let want: f32 = (0..n).map(|j| s[j] * v[j * d + h * hd + c]).sum();
                    assert!((out[i * d + h * hd + c] - want).abs() < 1e-5);
                }
            }
        }
    }
}
