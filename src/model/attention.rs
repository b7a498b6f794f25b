//! Scaled dot-product attention over the KV cache with grouped-query heads, a causal mask
//! and an optional sliding window (`modeling_llama.eager_attention_forward`, Mistral's
//! `sliding_window` mask: query at position `p` sees keys `j` with `p - window < j <= p`).

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Position of the first query row.
    pub pos0: usize,
    pub window: Option<usize>,
}

/// `q: [n, heads, head_dim]` (after RoPE), `k`, `v`: `[pos0 + n, kv_heads, head_dim]`
/// (the cache, including the `n` new positions) → `out: [n, heads, head_dim]`.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], s: AttnShape, out: &mut [f32]) {
    let d = s.head_dim;
    let group = s.heads / s.kv_heads;
    let kv_row = s.kv_heads * d;
    let scale = 1.0 / (d as f32).sqrt();
    // One (query row, head) pair per `d` outputs: pair `t` is row `t / heads`, head `t % heads`.
    // A task takes several pairs so the tasks number about 4 per thread.
    if d == 0 {
        return;
    }
    let pairs = out.len() / d;
    // Keys seen by the last row; below ~32k multiply-adds the split costs more than it gives.
    let keys = s.pos0 + pairs / s.heads.max(1);
    let threads = if pairs * keys * d < 1 << 15 { 1 } else { crate::par::threads() };
    let per = pairs.div_ceil(4 * threads).max(1);
    crate::par::chunks_mut(out, per * d, |c, oc| {
        let mut scores = Vec::new();
        for (e, o) in oc.chunks_exact_mut(d).enumerate() {
            let t = c * per + e;
            let (i, h) = (t / s.heads, t % s.heads);
            let p = s.pos0 + i;
            let lo = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let qh = &q[t * d..(t + 1) * d];
            let koff = (h / group) * d;
            scores.clear();
            scores.extend((lo..=p).map(|j| {
                let kj = &k[j * kv_row + koff..j * kv_row + koff + d];
                qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
            }));
            super::ops::softmax(&mut scores);
            o.fill(0.0);
            for (j, w) in (lo..=p).zip(&scores) {
                let vj = &v[j * kv_row + koff..j * kv_row + koff + d];
                for (a, b) in o.iter_mut().zip(vj) {
                    *a += w * b;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_key_returns_its_value() {
        let s = AttnShape { heads: 2, kv_heads: 1, head_dim: 2, pos0: 0, window: None };
        let mut out = [0.0; 4];
        attend(&[1.0, 0.0, 0.0, 1.0], &[3.0, 4.0], &[5.0, 6.0], s, &mut out);
        assert_eq!(out, [5.0, 6.0, 5.0, 6.0]);
    }

    #[test]
    fn causal_and_window() {
        // Three positions, equal scores: causal = mean of visible values.
        let k = [0.0; 3];
        let v = [1.0, 2.0, 6.0];
        let full = AttnShape { heads: 1, kv_heads: 1, head_dim: 1, pos0: 0, window: None };
        let mut out = [0.0; 3];
        attend(&[1.0, 1.0, 1.0], &k, &v, full, &mut out);
        assert_eq!(out, [1.0, 1.5, 3.0]);
        let win = AttnShape { window: Some(2), ..full };
        attend(&[1.0, 1.0, 1.0], &k, &v, win, &mut out);
        assert_eq!(out, [1.0, 1.5, 4.0]);
    }
}
