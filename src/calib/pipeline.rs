//! The whole-model pass: AWQ scale search and folding per layer, then RTN or GPTQ rounding of
//! every block linear, then (with a ratio) the INT4/INT8 choice by measured sensitivity.
//!
//! AWQ folding (exact in real arithmetic, so the f32 model computes the same function):
//! - q/k/v: columns × s, the input RMSNorm weight ÷ s;
//! - gate/up: columns × s, the post-attention RMSNorm weight ÷ s;
//! - o: columns × s with s tied over the query heads that share a KV head, v's rows ÷ s;
//! - down: columns × s, up's rows ÷ s (`down(act(gate) ⊙ up)` is linear in each `up` row).
//!
//! Statistics come from one pass of the f32 model ([`super::stats`]); after folding, a site's
//! statistics are those of `x / s` ([`SiteStats::unscale`]).

use super::awq;
use super::entropy::{allocate, default_blocks, partition, BlockReport, Item};
use super::gptq::{gptq, GptqOptions};
use super::grid::{rtn, Grid};
use super::mixed::choose_int8;
use super::stats::{LayerStats, SiteStats};
use crate::error::{Error, Result};
use crate::model::config::NormKind;
use crate::model::linear::fit_format;
use crate::model::llama::{Layer, Norm};
use crate::model::{Linear, Llama};
use crate::quant::{QData, QTensor, WeightFormat};
use serde::Serialize;

/// `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Rtn,
    Awq,
    Gptq,
    /// AWQ's scales, then GPTQ's rounding of the scaled weights.
    AwqGptq,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "rtn" => Method::Rtn,
            "awq" => Method::Awq,
            "gptq" => Method::Gptq,
            "awq+gptq" => Method::AwqGptq,
            _ => return Err(Error::Invalid(format!("method `{s}`: choose rtn, awq, gptq or awq+gptq"))),
        })
    }
}

impl Method {
    pub fn awq(self) -> bool {
        matches!(self, Method::Awq | Method::AwqGptq)
    }
    pub fn gptq(self) -> bool {
        matches!(self, Method::Gptq | Method::AwqGptq)
    }
}

/// How block linears are quantized.
#[derive(Clone, Debug)]
pub struct CalibOptions {
    pub method: Method,
    /// Format of block linears (INT4 or INT8); with `ratio`, the INT4 format.
    pub fmt: WeightFormat,
    /// Share of block-linear parameters kept in `fmt` (INT4), the rest INT8.
    pub ratio: Option<f64>,
    pub gptq: GptqOptions,
    /// AWQ grid points for α in `[0, 1)`.
    pub awq_points: usize,
    /// `--entropy-guided`: allocate INT4/INT8 (at `ratio`) by this many blocks of layers
    /// cut by activation entropy ([`super::entropy`]); `Some(0)`: the default block count.
    pub entropy_blocks: Option<usize>,
}

/// What [`quantize_model`] reports: one entry per linear, and the entropy-guided blocks.
#[derive(Clone, Debug, Default)]
pub struct ModelReport {
    pub linears: Vec<LinearReport>,
    /// Per layer activation entropy, bits ([`super::entropy`]).
    pub entropy: Vec<f64>,
    /// The blocks of `--entropy-guided` (empty otherwise).
    pub blocks: Vec<super::entropy::BlockReport>,
}

/// One linear's result, as written to `quality.json`.
#[derive(Clone, Debug, Serialize)]
pub struct LinearReport {
    pub name: String,
    pub format: String,
    pub params: usize,
    /// `‖X·Wᵀ − X·Ŵᵀ‖² / ‖X·Wᵀ‖²` on the sampled calibration inputs.
    pub rel_err: f64,
    /// AWQ's α for this linear's input (absent without AWQ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awq_alpha: Option<f32>,
}

/// HF names of the seven block linears, in [`linear_mut`] order, and their input site.
pub const LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

pub fn linear_mut(l: &mut Layer, k: usize) -> &mut Linear {
    [&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.gate, &mut l.up, &mut l.down]
        .into_iter()
        .nth(k)
        .expect("seven linears")
}

fn site(ls: &LayerStats, k: usize) -> &SiteStats {
    [&ls.qkv, &ls.qkv, &ls.qkv, &ls.o, &ls.gate_up, &ls.gate_up, &ls.down][k]
}

/// The dense f32 weights of a linear (the calibration model is loaded in f32).
pub fn dense(l: &Linear) -> Result<&Vec<f32>> {
    match &l.w.data {
        QData::F32(v) => Ok(v),
        _ => Err(Error::Invalid("calibration needs the model's f32 weights".into())),
    }
}

fn dense_mut(l: &mut Linear) -> Result<&mut Vec<f32>> {
    match &mut l.w.data {
        QData::F32(v) => Ok(v),
        _ => Err(Error::Invalid("calibration needs the model's f32 weights".into())),
    }
}

/// One linear's candidates before the INT4/INT8 choice.
struct Candidate {
    layer: usize,
    k: usize,
    params: usize,
    q4: QTensor,
    err4: f64,
    q8: Option<(QTensor, f64)>,
    alpha: Option<f32>,
}

/// Quantize every block linear of the f32 `model` in place; returns one report per linear
/// (and the blocks of an entropy-guided allocation). `progress(done, total)` after each layer.
pub fn quantize_model(
    model: &mut Llama,
    stats: Vec<LayerStats>,
    o: &CalibOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ModelReport> {
    if stats.len() != model.layers.len() {
        return Err(Error::Shape(format!("{} layers of statistics for {} layers", stats.len(), model.layers.len())));
    }
    if o.method.awq() && model.cfg.arch.norm != NormKind::Rms {
        return Err(Error::Unsupported("AWQ folding into norms other than RMSNorm (Llama, Mistral, SmolLM2)".into()));
    }
    let total = stats.len();
    let entropy: Vec<f64> = stats.iter().map(LayerStats::entropy).collect();
    let mut cands = Vec::new();
    for (l, mut ls) in stats.into_iter().enumerate() {
        let cfg = model.cfg.clone();
        let layer = &mut model.layers[l];
        let alphas = if o.method.awq() { Some(awq_layer(&cfg, layer, &mut ls, o)?) } else { None };
        for k in 0..LINEARS.len() {
            let lin = linear_mut(layer, k);
            let (rows, cols) = (lin.w.rows, lin.w.cols);
            let w = dense(lin)?;
            let st = site(&ls, k);
            let (q4, err4) = quantize_one(w, rows, cols, st, fit_format(o.fmt, cols), o)?;
            let q8 = o.ratio.map(|_| quantize_one(w, rows, cols, st, WeightFormat::Int8, o)).transpose()?;
            let alpha = alphas.map(|a| a[[0, 0, 0, 1, 2, 2, 3][k]]);
            cands.push(Candidate { layer: l, k, params: rows * cols, q4, err4, q8, alpha });
        }
        progress(l + 1, total);
    }
    let (int8, blocks) = choose(&cands, &entropy, o);
    let mut reports = Vec::with_capacity(cands.len());
    for (c, to8) in cands.into_iter().zip(int8) {
        let (q, err) = match (to8, c.q8) {
            (true, Some(q8)) => q8,
            _ => (c.q4, c.err4),
        };
        let name = format!("model.layers.{}.{}.weight", c.layer, LINEARS[c.k]);
        reports.push(LinearReport {
            name,
            format: q.format().name(),
            params: c.params,
            rel_err: err,
            awq_alpha: c.alpha,
        });
        linear_mut(&mut model.layers[c.layer], c.k).w = q;
    }
    Ok(ModelReport { linears: reports, entropy, blocks })
}

/// The INT8 choice per candidate: none without a ratio, by sensitivity (`--ratio`) or by
/// entropy-guided blocks (`--entropy-guided`).
fn choose(cands: &[Candidate], entropy: &[f64], o: &CalibOptions) -> (Vec<bool>, Vec<BlockReport>) {
    let Some(r) = o.ratio else { return (vec![false; cands.len()], Vec::new()) };
    let sens = |c: &Candidate| c.err4 - c.q8.as_ref().map_or(0.0, |q| q.1);
    match o.entropy_blocks {
        None => (choose_int8(&cands.iter().map(|c| (c.params, sens(c))).collect::<Vec<_>>(), r), Vec::new()),
        Some(b) => {
            let b = if b == 0 { default_blocks(entropy.len()) } else { b };
            let items: Vec<Item> =
                cands.iter().map(|c| Item { layer: c.layer, params: c.params, sensitivity: sens(c) }).collect();
            allocate(&items, entropy, &partition(entropy, b), r)
        }
    }
}

/// Round `w: [rows, cols]` to `fmt` (GPTQ with the site's Gram matrix, or RTN) and measure
/// the relative output error on the site's sample.
fn quantize_one(
    w: &[f32],
    rows: usize,
    cols: usize,
    st: &SiteStats,
    fmt: WeightFormat,
    o: &CalibOptions,
) -> Result<(QTensor, f64)> {
    let q = if o.method.gptq() && st.count > 0 {
        gptq(w, rows, cols, &st.gram, fmt, &o.gptq)?
    } else {
        rtn(&Grid::new(fmt, cols)?, w, rows, cols)
    };
    let err = rel_err(w, &q.dequantize(), rows, cols, &st.sample);
    Ok((q, err))
}

/// `‖X·Wᵀ − X·Ŵᵀ‖² / ‖X·Wᵀ‖²` for `x: [n, cols]` (0 when `x` is empty or the output is 0).
pub fn rel_err(w: &[f32], wh: &[f32], rows: usize, cols: usize, x: &[f32]) -> f64 {
    let n = x.len() / cols.max(1);
    if n == 0 {
        return 0.0;
    }
    let y = awq::dense_matmul(w, rows, cols, x, n);
    let yh = awq::dense_matmul(wh, rows, cols, x, n);
    let den: f64 = y.iter().map(|&v| (v as f64).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        awq::sq_err(&y, &yh) / den
    }
}

/// AWQ for one layer: search and fold the four input scales; returns α for (qkv, o, gate/up, down).
fn awq_layer(
    cfg: &crate::model::LlamaConfig,
    layer: &mut Layer,
    ls: &mut LayerStats,
    o: &CalibOptions,
) -> Result<[f32; 4]> {
    let (heads, kvh, hd) = (cfg.n_heads(), cfg.n_kv_heads(), cfg.head_dim());
    let rep = heads / kvh.max(1);
    // o: tie the scales of the query heads sharing a KV head (v's rows take 1/s).
    let ma = ls.o.mean_abs();
    let kv_ma: Vec<f32> = (0..kvh * hd)
        .map(|j| (0..rep).map(|r| ma[((j / hd) * rep + r) * hd + j % hd]).sum::<f32>() / rep as f32)
        .collect();
    let tied: Vec<f32> = (0..heads * hd).map(|c| kv_ma[(c / hd / rep) * hd + c % hd]).collect();
    let a_o = search(&[&layer.o], &ls.o, &tied, o)?;
    let s_kv: Vec<f32> = (0..kvh * hd).map(|j| a_o.s[(j / hd) * rep * hd + j % hd]).collect();
    fold(&mut [&mut layer.o], &a_o.s, &mut ls.o)?;
    scale_rows(&mut layer.v, &s_kv)?;
    let a_d = search(&[&layer.down], &ls.down, &ls.down.mean_abs(), o)?;
    fold(&mut [&mut layer.down], &a_d.s, &mut ls.down)?;
    scale_rows(&mut layer.up, &a_d.s)?;
    let a_qkv = search(&[&layer.q, &layer.k, &layer.v], &ls.qkv, &ls.qkv.mean_abs(), o)?;
    fold(&mut [&mut layer.q, &mut layer.k, &mut layer.v], &a_qkv.s, &mut ls.qkv)?;
    norm_div(&mut layer.input_norm, &a_qkv.s)?;
    let a_gu = search(&[&layer.gate, &layer.up], &ls.gate_up, &ls.gate_up.mean_abs(), o)?;
    fold(&mut [&mut layer.gate, &mut layer.up], &a_gu.s, &mut ls.gate_up)?;
    norm_div(&mut layer.post_norm, &a_gu.s)?;
    Ok([a_qkv.alpha, a_o.alpha, a_gu.alpha, a_d.alpha])
}

fn search(lins: &[&Linear], st: &SiteStats, mean_abs: &[f32], o: &CalibOptions) -> Result<awq::AwqScales> {
    let mats = lins.iter().map(|l| Ok((dense(l)?.as_slice(), l.w.rows))).collect::<Result<Vec<_>>>()?;
    let fmt = fit_format(o.fmt, st.cols);
    awq::search(&mats, &st.sample, st.sample_rows(), mean_abs, fmt, o.awq_points)
}

/// Columns of each linear × s; the site's statistics become those of `x / s`.
fn fold(lins: &mut [&mut Linear], s: &[f32], st: &mut SiteStats) -> Result<()> {
    for l in lins.iter_mut() {
        let cols = l.w.cols;
        for row in dense_mut(l)?.chunks_exact_mut(cols) {
            row.iter_mut().zip(s).for_each(|(v, k)| *v *= k);
        }
    }
    st.unscale(s);
    Ok(())
}

/// Rows of `l` (and its bias) ÷ s.
fn scale_rows(l: &mut Linear, s: &[f32]) -> Result<()> {
    let cols = l.w.cols;
    for (row, k) in dense_mut(l)?.chunks_exact_mut(cols).zip(s) {
        row.iter_mut().for_each(|v| *v /= k);
    }
    if let Some(b) = &mut l.bias {
        b.iter_mut().zip(s).for_each(|(v, k)| *v /= k);
    }
    Ok(())
}

fn norm_div(n: &mut Norm, s: &[f32]) -> Result<()> {
    let w =
        n.w.as_mut()
            .ok_or_else(|| Error::Unsupported("AWQ needs a norm with weights before q/k/v and gate/up".into()))?;
    w.iter_mut().zip(s).for_each(|(v, k)| *v /= k);
    Ok(())
}
