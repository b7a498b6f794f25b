//! Per-linear input statistics gathered from a CPU forward of the f32 model over calibration
//! tokens ([`collect`]), streaming with bounded memory: per input site (q/k/v, o, gate/up,
//! down of each layer) the Gram matrix `H = Σ xᵀx` (f64 `[cols, cols]`, the GPTQ Hessian up to
//! a factor 2/n), `Σ |x|` per channel (AWQ's activation scale), and a fixed-size sample of
//! input rows (every k-th token) on which AWQ searches and errors are measured.

use super::sample::Sample;
use crate::error::Result;
use crate::kernels;
use crate::model::llama::Site;
use crate::model::Llama;
use crate::quant::{QData, QTensor};

/// Statistics of one input site.
#[derive(Clone, Debug, Default)]
pub struct SiteStats {
    pub cols: usize,
    /// `[cols, cols]`, `Σ xᵀx`.
    pub gram: Vec<f64>,
    /// `[cols]`, `Σ |x|`.
    pub abs_sum: Vec<f64>,
    /// Rows seen.
    pub count: usize,
    /// `[sample_rows, cols]`: kept input rows.
    pub sample: Vec<f32>,
    /// `[entropy::BINS]`: histogram of the inputs' per-token int8 codes ([`super::entropy`]).
    pub hist: Vec<u64>,
    /// Keep one row in `every`, up to `cap` rows.
    every: usize,
    cap: usize,
}

impl SiteStats {
    pub fn new(cols: usize, every: usize, cap: usize) -> SiteStats {
        SiteStats {
            cols,
            gram: vec![0.0; cols * cols],
            abs_sum: vec![0.0; cols],
            hist: vec![0; super::entropy::BINS],
            every: every.max(1),
            cap,
            ..Default::default()
        }
    }

    /// Add rows `x: [n, cols]`.
    pub fn add(&mut self, x: &[f32], n: usize) {
        let c = self.cols;
        // Xᵀ: [cols, n]; the f32 kernel computes Xᵀ·(Xᵀ)ᵀ = XᵀX: [cols, cols].
        let mut xt = vec![0f32; c * n];
        for (t, row) in x.chunks_exact(c).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                xt[j * n + t] = v;
            }
        }
        let mut g = vec![0f32; c * c];
        kernels::matmul(&QTensor { rows: c, cols: n, data: QData::F32(xt.clone()) }, &xt, c, &mut g);
        self.gram.iter_mut().zip(&g).for_each(|(a, &b)| *a += b as f64);
        super::entropy::add_rows(&mut self.hist, x, c);
        for (t, row) in x.chunks_exact(c).enumerate() {
            self.abs_sum.iter_mut().zip(row).for_each(|(a, &v)| *a += v.abs() as f64);
            if (self.count + t).is_multiple_of(self.every) && self.sample_rows() >= self.cap {
                self.thin();
            }
            if (self.count + t).is_multiple_of(self.every) && self.sample_rows() < self.cap {
                self.sample.extend_from_slice(row);
            }
        }
        self.count += n;
    }

    /// The sample is full and another row is due: keep every other kept row and double the
    /// step, so that a stream of unknown length keeps between `cap/2` and `cap` evenly spaced rows
    /// (rows `0, every, 2·every, …` stay exactly the kept ones).
    fn thin(&mut self) {
        let c = self.cols;
        let kept: Vec<f32> = self.sample.chunks_exact(c).step_by(2).flatten().copied().collect();
        self.sample = kept;
        self.every *= 2;
    }

    pub fn sample_rows(&self) -> usize {
        self.sample.len() / self.cols.max(1)
    }

    /// `[cols]`: mean |x| per channel.
    pub fn mean_abs(&self) -> Vec<f32> {
        self.abs_sum.iter().map(|&a| (a / self.count.max(1) as f64) as f32).collect()
    }

    /// The statistics of `x · diag(1/s)` (the input once `1/s` is folded into its producer).
    pub fn unscale(&mut self, s: &[f32]) {
        let c = self.cols;
        for i in 0..c {
            for j in 0..c {
                self.gram[i * c + j] /= s[i] as f64 * s[j] as f64;
            }
        }
        self.abs_sum.iter_mut().zip(s).for_each(|(a, &k)| *a /= k as f64);
        for row in self.sample.chunks_exact_mut(c) {
            row.iter_mut().zip(s).for_each(|(v, &k)| *v /= k);
        }
    }
}

/// The four input sites of one decoder layer.
#[derive(Clone, Debug, Default)]
pub struct LayerStats {
    pub qkv: SiteStats,
    pub o: SiteStats,
    pub gate_up: SiteStats,
    pub down: SiteStats,
}

impl LayerStats {
    /// The layer's activation entropy in bits: the mean over its four sites
    /// ([`super::entropy::entropy_bits`] of each site's histogram).
    pub fn entropy(&self) -> f64 {
        let sites = [&self.qkv, &self.o, &self.gate_up, &self.down];
        sites.iter().map(|s| super::entropy::entropy_bits(&s.hist)).sum::<f64>() / 4.0
    }
}

/// Run `model` (f32 weights) over `seqs` (each from an empty cache) and gather every layer's
/// statistics, keeping about `sample_rows` rows per site. `progress(done, total)` per sequence.
pub fn collect(
    model: &Llama,
    seqs: &[Vec<u32>],
    sample_rows: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<LayerStats>> {
    let total: usize = seqs.iter().map(Vec::len).sum();
    let every = total.div_ceil(sample_rows.max(1)).max(1);
    let mut next = |i: usize| Ok(Some(Sample::text(seqs[i].clone())));
    collect_from(model, seqs.len(), every, sample_rows, &mut next, progress)
}

/// [`collect`] over `count` samples made one at a time by `next(i)` (streaming: one sample's
/// activations in memory); `None` ends early. Rows `0, every, 2·every, …` are sampled, thinned
/// when more than `sample_rows` would be kept ([`SiteStats`]).
pub fn collect_from(
    model: &Llama,
    count: usize,
    every: usize,
    sample_rows: usize,
    next: &mut dyn FnMut(usize) -> Result<Option<Sample>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<LayerStats>> {
    let c = &model.cfg;
    let (d, f, qd) = (c.hidden_size, c.intermediate_size, c.n_heads() * c.head_dim());
    let new = |cols| SiteStats::new(cols, every, sample_rows);
    let mut stats: Vec<LayerStats> = (0..c.num_hidden_layers)
        .map(|_| LayerStats { qkv: new(d), o: new(qd), gate_up: new(d), down: new(f) })
        .collect();
    for i in 0..count {
        let Some(s) = next(i)? else { break };
        let n = s.ids.len();
        let mut kv = model.new_cache(n);
        model.forward_embeds_observed(s.embed(model)?, n, &mut kv, &mut |l, site, x, n| {
            let Some(ls) = stats.get_mut(l) else { return };
            match site {
                Site::Qkv => ls.qkv.add(x, n),
                Site::O => ls.o.add(x, n),
                Site::GateUp => ls.gate_up.add(x, n),
                Site::Down => ls.down.add(x, n),
                Site::Final => {}
            }
        })?;
        progress(i + 1, count);
    }
    Ok(stats)
}
