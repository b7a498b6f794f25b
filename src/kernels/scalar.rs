//! Scalar reference kernels: the definition every SIMD path is tested against.
use crate::quant::QTensor;

pub fn matvec(w: &QTensor, x: &[f32], y: &mut [f32]) {
    let _ = (w, x, y);
    todo!()
}
