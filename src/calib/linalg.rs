//! The dense linear algebra GPTQ needs, in f64 on row-major `[n, n]` matrices: Cholesky
//! factorization and the upper Cholesky factor of the inverse (`torch.linalg.cholesky`,
//! `cholesky_inverse`, `cholesky(upper=True)` in the reference `gptq.py`).

use crate::error::{Error, Result};

/// Lower Cholesky factor `L` of a symmetric positive-definite `a: [n, n]` (`a = L·Lᵀ`); only
/// the lower triangle of `a` is read. Errors when a pivot is not positive.
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let (li, lj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let s = a[i * n + j] - li.iter().zip(lj).map(|(x, y)| x * y).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return Err(Error::Invalid(format!("matrix is not positive definite (pivot {i}: {s:e})")));
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular `l: [n, n]` (lower-triangular), row by row.
fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0f64; n * n];
    for i in 0..n {
        let mut row = vec![0f64; i + 1];
        row[i] = 1.0;
        for k in 0..i {
            let a = l[i * n + k];
            if a != 0.0 {
                for (r, v) in row[..=k].iter_mut().zip(&inv[k * n..k * n + k + 1]) {
                    *r -= a * v;
                }
            }
        }
        let d = 1.0 / l[i * n + i];
        for (o, r) in inv[i * n..i * n + i + 1].iter_mut().zip(&row) {
            *o = r * d;
        }
    }
    inv
}

/// `H⁻¹` of a symmetric positive-definite `h: [n, n]` through its Cholesky factor.
pub fn spd_inverse(h: &[f64], n: usize) -> Result<Vec<f64>> {
    let linv = lower_inverse(&cholesky(h, n)?, n);
    // H⁻¹ = L⁻ᵀ·L⁻¹ = Σ_k (row k of L⁻¹)ᵀ (row k of L⁻¹), lower triangle then mirrored.
    let mut out = vec![0f64; n * n];
    for k in 0..n {
        let rk = &linv[k * n..k * n + k + 1];
        for i in 0..=k {
            let a = rk[i];
            if a != 0.0 {
                for (o, v) in out[i * n..i * n + i + 1].iter_mut().zip(&rk[..=i]) {
                    *o += a * v;
                }
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            out[j * n + i] = out[i * n + j];
        }
    }
    Ok(out)
}

/// Upper `U` with `Uᵀ·U = H⁻¹`: the factor GPTQ's error feedback reads row by row.
pub fn inverse_cholesky_upper(h: &[f64], n: usize) -> Result<Vec<f64>> {
    let m = cholesky(&spd_inverse(h, n)?, n)?;
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            u[j * n + i] = m[i * n + j];
        }
    }
    Ok(u)
}
