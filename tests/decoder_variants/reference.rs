//! A straightforward reference forward for the tiny models of `decoder_variants.rs`, written
//! from the formulas (f64 arithmetic; BitNet quantization steps in f32 as BitLinear158 runs):
//! transformers `GemmaForCausalLM` / `OlmoForCausalLM`, OLMo `OLMoSequentialBlock`, and the
//! BitNet b1.58 FAQ's `activation_quant` / `weight_quant` with an input RMSNorm.

use super::{Family, Model, D, F, HEADS, KVH, LAYERS, V};

fn norm(fam: Family, x: &[f64], w: &[f32]) -> Vec<f64> {
    let d = x.len() as f64;
    match fam {
        Family::Gemma | Family::Bitnet => {
            let eps = if fam == Family::Gemma { 1e-6 } else { 1e-5 };
            let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / d + eps).sqrt();
            let g = |i: usize| if fam == Family::Gemma { 1.0 + w[i] as f64 } else { w[i] as f64 };
            x.iter().enumerate().map(|(i, v)| v * inv * g(i)).collect()
        }
        Family::OlmoHf | Family::OlmoNative => {
            let mean = x.iter().sum::<f64>() / d;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d;
            x.iter().map(|v| (v - mean) / (var + 1e-5).sqrt()).collect()
        }
    }
}

fn rms_plain(x: &[f64]) -> Vec<f64> {
    let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + 1e-5).sqrt();
    x.iter().map(|v| v * inv).collect()
}

/// `W [out, in] · x`.
fn dense(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len()).map(|r| r.iter().zip(x).map(|(a, b)| *a as f64 * b).sum()).collect()
}

/// BitLinear158 on an already normalized input: `gamma` is the (fused) tensor's absmean.
fn bitlinear(w: &[f32], gamma: f32, x: &[f64]) -> Vec<f64> {
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let scale = 127.0 / xf.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-5);
    let xq: Vec<f64> = xf.iter().map(|v| (v * scale).round_ties_even().clamp(-128.0, 127.0) as f64).collect();
    let ws = 1.0 / gamma;
    w.chunks_exact(x.len())
        .map(|r| {
            let d: f64 = r.iter().zip(&xq).map(|(a, b)| (a * ws).round_ties_even().clamp(-1.0, 1.0) as f64 * b).sum();
            d / scale as f64 * gamma as f64
        })
        .collect()
}

fn absmean(parts: &[&[f32]]) -> f32 {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let s: f64 = parts.iter().flat_map(|p| p.iter()).map(|v| v.abs() as f64).sum();
    ((s / n as f64) as f32).max(1e-5)
}

fn rope(x: &mut [f64], pos: usize, hd: usize) {
    for h in x.chunks_exact_mut(hd) {
        for i in 0..hd / 2 {
            let a = pos as f64 / 10000f64.powf(2.0 * i as f64 / hd as f64);
            let (x1, x2) = (h[i], h[i + hd / 2]);
            h[i] = x1 * a.cos() - x2 * a.sin();
            h[i + hd / 2] = x2 * a.cos() + x1 * a.sin();
        }
    }
}

fn act(fam: Family, g: f64) -> f64 {
    if fam == Family::Gemma {
        0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g.powi(3))).tanh())
    } else {
        g / (1.0 + (-g).exp())
    }
}

fn attention(q: &[Vec<f64>], k: &[Vec<f64>], v: &[Vec<f64>], t: usize, hd: usize) -> Vec<f64> {
    let mut out = vec![0f64; HEADS * hd];
    for h in 0..HEADS {
        let kh = h / (HEADS / KVH);
        let qh = &q[t][h * hd..(h + 1) * hd];
        let s: Vec<f64> = (0..=t)
            .map(|j| qh.iter().zip(&k[j][kh * hd..(kh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt())
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for j in 0..=t {
            for i in 0..hd {
                out[h * hd + i] += e[j] / z * v[j][kh * hd + i];
            }
        }
    }
    out
}

/// Logits `[V]` of the last of `n` input embeddings `x: [n, D]`.
#[allow(clippy::needless_range_loop)] // token index t addresses h, qs, ks and vs alike
pub fn reference_logits(m: &Model, x: &[f32], n: usize) -> Vec<f32> {
    let fam = m.fam;
    let bit = fam == Family::Bitnet;
    let normalizer = if fam == Family::Gemma { (D as f64).sqrt() as f32 as f64 } else { 1.0 };
    let mut h: Vec<Vec<f64>> = x.chunks_exact(D).map(|r| r.iter().map(|&v| v as f64 * normalizer).collect()).collect();
    let pre = |v: Vec<f64>| if bit { rms_plain(&v) } else { v };
    for l in &m.layers[..LAYERS] {
        let (g_qkv, g_o) = (absmean(&[&l.q, &l.k, &l.v]), absmean(&[&l.o]));
        let (g_ug, g_d) = (absmean(&[&l.up, &l.gate]), absmean(&[&l.down]));
        let lin = |w: &[f32], g: f32, x: &[f64]| if bit { bitlinear(w, g, x) } else { dense(w, x) };
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (t, ht) in h.iter().enumerate() {
            let a = pre(norm(fam, ht, &l.n1));
            let clip = |v: Vec<f64>| match m.clip {
                Some(c) => v.into_iter().map(|e| e.clamp(-c as f64, c as f64)).collect(),
                None => v,
            };
            let (mut q, mut k) = (clip(lin(&l.q, g_qkv, &a)), clip(lin(&l.k, g_qkv, &a)));
            rope(&mut q, t, m.hd);
            rope(&mut k, t, m.hd);
            qs.push(q);
            ks.push(k);
            vs.push(clip(lin(&l.v, g_qkv, &a)));
        }
        for t in 0..n {
            let o = lin(&l.o, g_o, &pre(attention(&qs, &ks, &vs, t, m.hd)));
            h[t].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let b = pre(norm(fam, &h[t], &l.n2));
            let (g, u) = (lin(&l.gate, g_ug, &b), lin(&l.up, g_ug, &b));
            let mid: Vec<f64> = g.iter().zip(&u).map(|(g, u)| act(fam, *g) * u).collect();
            assert_eq!(mid.len(), F);
            let dn = lin(&l.down, g_d, &pre(mid));
            h[t].iter_mut().zip(&dn).for_each(|(a, b)| *a += b);
        }
    }
    let last = norm(fam, &h[n - 1], &m.norm);
    let logits = dense(&m.embed, &last);
    assert_eq!(logits.len(), V);
    logits.into_iter().map(|v| v as f32).collect()
}
