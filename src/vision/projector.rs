//! The multimodal projector from vision features to the text model's embedding space, as
//! transformers' `LlavaMultiModalProjector` (`mlp2x_gelu`: `linear_1` → `gelu` → `linear_2`,
//! biases per `multimodal_projector_bias`) and original LLaVA's `mm_projector_type` `linear`
//! (one `nn.Linear`) / `mlp2x_gelu` (`mm_projector.0`, GELU, `mm_projector.2`) compute it.

use super::ops::Activation;
use crate::error::Result;
use crate::io::WeightSource;
use crate::model::linear::{load_linear, Linear};
use crate::model::LoadOptions;

pub struct Projector {
    /// `[text_hidden, vision_features]`
    pub first: Linear,
    /// `mlp2x`: the activation and `[text_hidden, text_hidden]`; `None` for `linear`.
    pub second: Option<(Activation, Linear)>,
}

impl Projector {
    /// Load `first`, and with `second = Some((name, act))` the second linear of an `mlp2x`
    /// projector (`act` between them). `inp`: vision feature width, `out`: text hidden size.
    pub fn load(
        src: &dyn WeightSource,
        first: &str,
        second: Option<(&str, Activation)>,
        inp: usize,
        out: usize,
        opts: &LoadOptions,
    ) -> Result<Projector> {
        let first = load_linear(src, first, out, inp, opts)?;
        let second = match second {
            Some((name, act)) => Some((act, load_linear(src, name, out, out, opts)?)),
            None => None,
        };
        Ok(Projector { first, second })
    }

    pub fn in_features(&self) -> usize {
        self.first.in_features()
    }
    pub fn out_features(&self) -> usize {
        self.first.out_features()
    }

    /// `x: [n, vision_features]` → `[n, text_hidden]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut h = self.first.apply(x, n); // [n, text_hidden]
        match &self.second {
            None => h,
            Some((act, lin)) => {
                act.apply(&mut h);
                lin.apply(&h, n)
            }
        }
    }

    /// Bytes held by all weights.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.w.nbytes() + l.bias.as_ref().map_or(0, |b| 4 * b.len());
        lin(&self.first) + self.second.as_ref().map_or(0, |(_, l)| lin(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{QData, QTensor};

    fn lin(rows: usize, cols: usize, w: Vec<f32>, b: Vec<f32>) -> Linear {
        Linear { w: QTensor { rows, cols, data: QData::F32(w) }, bias: Some(b) }
    }

    #[test]
    fn mlp2x_gelu_by_hand() {
        // linear_1: [2, 2] identity, bias [1, -1]; linear_2: sums both, bias 0.5.
        let p = Projector {
            first: lin(2, 2, vec![1.0, 0.0, 0.0, 1.0], vec![1.0, -1.0]),
            second: Some((Activation::Gelu, lin(2, 2, vec![1.0, 1.0, 0.0, 0.0], vec![0.5, 0.0]))),
        };
        let y = p.forward(&[0.0, 0.5], 1);
        let want = Activation::Gelu.eval(1.0) + Activation::Gelu.eval(-0.5) + 0.5;
        assert!((y[0] - want).abs() < 1e-6 && y[1] == 0.0);
        let linear = Projector { first: lin(1, 2, vec![2.0, 3.0], vec![1.0]), second: None };
        assert_eq!(linear.forward(&[1.0, 1.0, 0.0, 2.0], 2), vec![6.0, 7.0]);
    }
}
