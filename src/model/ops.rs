//! Element-wise and row-wise ops of the decoder, as HF transformers computes them in f32
//! (`LlamaRMSNorm`, `OlmoLayerNorm` / `F.layer_norm`, `ACT2FN["silu"]`,
//! `ACT2FN["gelu_pytorch_tanh"]`, `ACT2FN["gelu"]`, `softmax`).

/// RMSNorm of each row: `y = w * x / sqrt(mean(x²) + eps)`.
/// `x`, `y`: `[n, d]`, `w`: `[d]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let d = w.len();
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for ((o, v), g) in yr.iter_mut().zip(xr).zip(w) {
            *o = g * (v * inv);
        }
    }
}

/// LayerNorm of each row: `y = (x - mean) / sqrt(var + eps)` (biased variance), then `* w`
/// and `+ b` when given. `x`, `y`: `[n, d]`.
pub fn layer_norm(x: &[f32], d: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f32, y: &mut [f32]) {
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, (o, v)) in yr.iter_mut().zip(xr).enumerate() {
            let z = (v - mean) * inv;
            *o = z * w.map_or(1.0, |w| w[i]) + b.map_or(0.0, |b| b[i]);
        }
    }
}

/// Weightless RMSNorm of each row in place (OLMo `RMSLayerNorm(elementwise_affine=False)`).
pub fn rms_norm_plain(x: &mut [f32], d: usize, eps: f32) {
    for r in x.chunks_exact_mut(d) {
        let inv = 1.0 / (r.iter().map(|v| v * v).sum::<f32>() / d as f32 + eps).sqrt();
        r.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `gelu_pytorch_tanh(x) = 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

/// Exact GELU `0.5 x (1 + erf(x / sqrt 2))`, erf computed in f64 ([`erf`]).
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32
}

/// `erf(x)`: Maclaurin series for |x| < 2.5, the continued fraction of erfc beyond (both far
/// below f32 precision there).
fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        let (mut term, mut sum, x2) = (a, a, a * a);
        for n in 1..60 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // continued fraction for erfc(a) = exp(-a²)/sqrt(π) · 1/(a + 1/2/(a + 1/(a + 3/2/(a + …))))
        let mut f = a;
        for k in (1..40).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

/// `silu(x) = x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SwiGLU gate in place: `gate[i] = silu(gate[i]) * up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// Gated MLP in place: `gate[i] = act(gate[i]) * up[i]` (SwiGLU / GeGLU).
pub fn glu(act: super::config::Act, gate: &mut [f32], up: &[f32]) {
    use super::config::Act;
    match act {
        Act::Silu => swiglu(gate, up),
        Act::GeluTanh => gate.iter_mut().zip(up).for_each(|(g, u)| *g = gelu_tanh(*g) * u),
        Act::Gelu => gate.iter_mut().zip(up).for_each(|(g, u)| *g = gelu_erf(*g) * u),
    }
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    let inv = 1.0 / s;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `acc += x`.
pub fn add_inplace(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_rms() {
        let x = [3.0, -4.0, 0.0, 5.0, 1.0, 1.0, 1.0, 1.0];
        let w = [1.0, 2.0, 1.0, 1.0];
        let mut y = [0.0; 8];
        rms_norm(&x, &w, 0.0, &mut y);
        // row 0: mean square = 50/4 = 12.5
        let r = 12.5f32.sqrt();
        assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] + 8.0 / r).abs() < 1e-6);
        assert!((y[4] - 1.0).abs() < 1e-6 && (y[5] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let mut x = [1.0, 2.0, 3.0, 10.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] > 0.99 && x[0] > 0.0 && x[0] < x[1] && x[1] < x[2]);
    }

    #[test]
    fn gelu_values() {
        // torch: F.gelu(t, approximate="tanh") and F.gelu(t) at 1.0, -0.5, 3.0
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu_erf(-0.5) + 0.154_268_5).abs() < 1e-6);
        assert!((gelu_erf(3.0) - 2.995_950_5).abs() < 1e-6);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-12);
        assert!((erf(3.0) - 0.999_977_909_503_001_4).abs() < 1e-12);
    }

    #[test]
    fn layer_norm_centers_and_scales() {
        let mut y = [0.0; 4];
        layer_norm(&[1.0, 2.0, 3.0, 4.0], 4, None, None, 0.0, &mut y);
        let s = 1.25f32.sqrt();
        assert!((y[0] + 1.5 / s).abs() < 1e-6 && (y[3] - 1.5 / s).abs() < 1e-6);
        let mut x = [3.0, 4.0];
        rms_norm_plain(&mut x, 2, 0.0);
        assert!((x[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.7310586).abs() < 1e-6);
        assert!(silu(-20.0).abs() < 1e-6);
    }
}
