//! Mixed INT4/INT8 precision with NNCF's ratio semantics (`nncf.compress_weights(...,
//! ratio=R)`): the share `R` of the language model's block-linear parameters is stored INT4,
//! the rest INT8 (the "backup" precision), and the tensors kept INT8 are the most sensitive.
//!
//! Sensitivity of a tensor is the relative output error on calibration inputs that INT8
//! removes compared with INT4 (`rel_err(INT4) − rel_err(INT8)`, see
//! [`super::pipeline::rel_err`]); tensors are ranked by sensitivity per parameter (error removed
//! per INT8 parameter spent) and taken into INT8 until INT8 holds at least `(1 − R)` of the
//! parameters. So the INT4 share is `R` to within one tensor: `R·P − max_size < int4 ≤ R·P`.

/// `items[i] = (parameters, sensitivity)`; returns which items go INT8.
pub fn choose_int8(items: &[(usize, f64)], ratio: f64) -> Vec<bool> {
    let total: usize = items.iter().map(|i| i.0).sum();
    let budget = (1.0 - ratio.clamp(0.0, 1.0)) * total as f64;
    let mut order: Vec<usize> = (0..items.len()).collect();
    let density = |i: usize| items[i].1 / items[i].0.max(1) as f64;
    order.sort_by(|&a, &b| density(b).total_cmp(&density(a)).then(a.cmp(&b)));
    let mut int8 = vec![false; items.len()];
    let mut held = 0usize;
    for i in order {
        if held as f64 >= budget {
            break;
        }
        int8[i] = true;
        held += items[i].0;
    }
    int8
}
