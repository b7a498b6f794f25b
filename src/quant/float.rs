//! f16 conversion helpers.
use half::f16;

pub fn to_f16(w: &[f32]) -> Vec<f16> {
    w.iter().map(|&v| f16::from_f32(v)).collect()
}

pub fn to_f32(w: &[f16]) -> Vec<f32> {
    w.iter().map(|v| v.to_f32()).collect()
}
