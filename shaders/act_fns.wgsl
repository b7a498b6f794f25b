// Shared helper (included, not an op): the activations of src/model/ops.rs and
// src/vision/ops.rs (`Activation::eval`) in f32, with tanh and erf written out so no adapter's
// coarse built-ins (or overflow in sinh/cosh) change the result.

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

fn quick_gelu(x: f32) -> f32 {
    return x / (1.0 + exp(-1.702 * x));
}

// 1 + tanh(z) via t = exp(-2|z|): 2 / (1 + t) for z >= 0, 2t / (1 + t) below (no overflow, and
// no cancellation in the negative tail).
fn one_plus_tanh(z: f32) -> f32 {
    let t = exp(-2.0 * abs(z));
    if (z >= 0.0) {
        return 2.0 / (1.0 + t);
    }
    return 2.0 * t / (1.0 + t);
}

fn gelu_tanh(x: f32) -> f32 {
    return 0.5 * x * one_plus_tanh(0.7978846 * (x + 0.044715 * x * x * x));
}

// erfc(z) for z >= 0 with fractional error < 1.2e-7 everywhere (Numerical Recipes `erfcc`,
// Chebyshev fit), so the tails keep their relative precision.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + p);
}

// Exact GELU 0.5 x (1 + erf(x / sqrt 2)); 1 + erf(-a) = erfc(a) keeps negative x accurate.
fn gelu_erf(x: f32) -> f32 {
    let z = abs(x) * 0.70710678118654752;
    let e = erfc_pos(z);
    var one_plus_erf = e;
    if (x >= 0.0) {
        one_plus_erf = 2.0 - e;
    }
    return 0.5 * x * one_plus_erf;
}

// ACT codes shared by glu.wgsl and act.wgsl: 0 silu, 1 gelu_tanh, 2 gelu (erf), 3 quick_gelu, 4 relu.
fn activate(code: u32, x: f32) -> f32 {
    switch code {
        case 0u: { return silu(x); }
        case 1u: { return gelu_tanh(x); }
        case 2u: { return gelu_erf(x); }
        case 3u: { return quick_gelu(x); }
        default: { return max(x, 0.0); }
    }
}
