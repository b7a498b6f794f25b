//! Quality of a quantized model against its f32 reference on held-out text: mean
//! `KL(p_ref ‖ p_quant)` of next-token distributions over every position, top-1 agreement
//! (the two argmaxes equal), and perplexity of both on the held-out tokens (each position
//! predicting the next token). Logits of all positions come from one prefill per sequence
//! ([`Llama::forward_embeds_observed`]'s final hidden states through the output layer).
//! LLaVA inputs ([`Sample`]) carry the reference's image features; both decoders see them.

use super::sample::Sample;
use crate::error::Result;
use crate::model::llama::Site;
use crate::model::Llama;
use serde::Serialize;

/// The numbers of `quality.json` and `webvlm eval`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Quality {
    pub mean_kl: f64,
    pub top1_agreement: f64,
    pub perplexity: f64,
    pub perplexity_reference: f64,
    /// Positions compared.
    pub positions: usize,
}

/// Logits `[n, vocab]` of every position of `tokens` (fresh cache).
pub fn all_logits(m: &Llama, tokens: &[u32]) -> Result<Vec<f32>> {
    sample_logits(m, &Sample::text(tokens.to_vec()))
}

/// Logits `[n, vocab]` of every position of a sample (fresh cache; `m` embeds its text).
pub fn sample_logits(m: &Llama, s: &Sample) -> Result<Vec<f32>> {
    let n = s.ids.len();
    let mut kv = m.new_cache(n);
    let mut h = Vec::new();
    m.forward_embeds_observed(s.embed(m)?, n, &mut kv, &mut |_, site, x, _| {
        if site == Site::Final {
            h = x.to_vec();
        }
    })?;
    let mut logits = m.lm_head.as_ref().unwrap_or(&m.embed).apply(&h, n);
    if m.cfg.arch.scale_logits {
        let s = 1.0 / (m.cfg.hidden_size as f32).sqrt();
        logits.iter_mut().for_each(|v| *v *= s);
    }
    Ok(logits)
}

/// `log_softmax(x)` in f64.
fn log_softmax(x: &[f32]) -> Vec<f64> {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
    x.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(x: &[f32]) -> usize {
    x.iter().enumerate().fold(0, |b, (i, &v)| if v > x[b] { i } else { b })
}

/// Compare `model` with `reference` over `seqs`; `progress(done, total)` per sequence.
pub fn evaluate(
    reference: &Llama,
    model: &Llama,
    seqs: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Quality> {
    evaluate_from(reference, model, seqs.len(), &mut |i| Ok(Sample::text(seqs[i].clone())), progress)
}

/// [`evaluate`] over `count` samples made one at a time by `next(i)`. Every position counts
/// for KL and top-1; perplexity counts the positions whose next token is text.
pub fn evaluate_from(
    reference: &Llama,
    model: &Llama,
    count: usize,
    next: &mut dyn FnMut(usize) -> Result<Sample>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Quality> {
    let v = model.cfg.vocab_size;
    let (mut kl, mut agree, mut nll, mut nll_ref, mut pos, mut pred) = (0.0, 0usize, 0.0, 0.0, 0usize, 0usize);
    for i in 0..count {
        let s = next(i)?;
        let (lr, lq) = (sample_logits(reference, &s)?, sample_logits(model, &s)?);
        for (t, (r, q)) in lr.chunks_exact(v).zip(lq.chunks_exact(v)).enumerate() {
            let (pr, pq) = (log_softmax(r), log_softmax(q));
            kl += pr.iter().zip(&pq).map(|(&a, &b)| a.exp() * (a - b)).sum::<f64>();
            agree += (argmax(r) == argmax(q)) as usize;
            pos += 1;
            if let (Some(&next), false) = (s.ids.get(t + 1), s.is_image(t + 1)) {
                nll -= pq[next as usize];
                nll_ref -= pr[next as usize];
                pred += 1;
            }
        }
        progress(i + 1, count);
    }
    let (p, k) = (pos.max(1) as f64, pred.max(1) as f64);
    Ok(Quality {
        mean_kl: kl / p,
        top1_agreement: agree as f64 / p,
        perplexity: (nll / k).exp(),
        perplexity_reference: (nll_ref / k).exp(),
        positions: pos,
    })
}
