//! The vision tower: CLIP ViT as transformers' `CLIPVisionModel` computes it
//! (`models/clip/modeling_clip.py`), and SigLIP (`models/siglip/modeling_siglip.py`) through
//! the same code.
//!
//! CLIP: patch embedding (a stride-`p` convolution without bias, computed as a matmul over
//! unfolded patches) → class token prepended → position embeddings added → `pre_layrnorm` →
//! N × (LayerNorm → attention with biases → residual, LayerNorm → fc1 → act → fc2 →
//! residual). `hidden_states[0]` is the encoder input (after `pre_layrnorm`), `hidden_states[i]`
//! the output of layer `i`; `post_layernorm` only touches the pooled output, which LLaVA never
//! reads, so it is not applied here. SigLIP differs in: no class token, a patch-embedding
//! bias, no pre-norm (its `post_layernorm` again only reaches `last_hidden_state`, and the
//! attention-pooling `head.*` only `pooler_output`: neither is loaded). Checked against
//! transformers by the `llava-siglip` fixture (tests/llava.rs).

use super::ops::{full_attention, layer_norm, Activation};
use crate::error::{Error, Result};
use crate::io::WeightSource;
use crate::model::linear::{load_linear, load_vector, Linear};
use crate::model::ops::add_inplace;
use crate::model::LoadOptions;
use crate::quant::{QData, QTensor};
use serde::Deserialize;

/// The vision tower's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TowerKind {
    Clip,
    Siglip,
}

/// `CLIPVisionConfig` / `SiglipVisionConfig` fields, with the defaults transformers uses.
#[derive(Clone, Debug, Deserialize)]
pub struct VisionConfig {
    #[serde(default)]
    pub model_type: String,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_channels: Option<usize>,
    pub image_size: Option<usize>,
    pub patch_size: Option<usize>,
    pub hidden_act: Option<String>,
    pub layer_norm_eps: Option<f64>,
}

/// A [`VisionConfig`] with every default filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionDims {
    pub kind: TowerKind,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub act: Activation,
    pub eps: f32,
}

impl VisionDims {
    /// From a `vision_config` object. `model_type` `siglip_vision_model` selects SigLIP (and
    /// its defaults); anything else without a type is CLIP, as `LlavaConfig` assumes.
    pub fn from_value(v: &serde_json::Value) -> Result<VisionDims> {
        let c: VisionConfig =
            serde_json::from_value(v.clone()).map_err(|e| Error::format("vision_config", e.to_string()))?;
        let kind = match c.model_type.as_str() {
            "" | "clip_vision_model" => TowerKind::Clip,
            "siglip_vision_model" => TowerKind::Siglip,
            t => return Err(Error::Unsupported(format!("vision tower `{t}` (CLIP and SigLIP are supported)"))),
        };
        let (patch, act, eps) = match kind {
            TowerKind::Clip => (32, "quick_gelu", 1e-5),
            TowerKind::Siglip => (16, "gelu_pytorch_tanh", 1e-6),
        };
        let d = VisionDims {
            kind,
            hidden: c.hidden_size.unwrap_or(768),
            intermediate: c.intermediate_size.unwrap_or(3072),
            layers: c.num_hidden_layers.unwrap_or(12),
            heads: c.num_attention_heads.unwrap_or(12),
            channels: c.num_channels.unwrap_or(3),
            image_size: c.image_size.unwrap_or(224),
            patch_size: c.patch_size.unwrap_or(patch),
            act: Activation::parse(c.hidden_act.as_deref().unwrap_or(act))?,
            eps: c.layer_norm_eps.unwrap_or(eps) as f32,
        };
        if d.hidden == 0 || d.heads == 0 || !d.hidden.is_multiple_of(d.heads) {
            return Err(Error::format("vision_config", format!("hidden_size {} over {} heads", d.hidden, d.heads)));
        }
        if d.patch_size == 0 || d.image_size < d.patch_size || d.channels == 0 {
            return Err(Error::format(
                "vision_config",
                format!("image_size {} with patch_size {}", d.image_size, d.patch_size),
            ));
        }
        Ok(d)
    }

    /// Patches along one side of the configured image.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Tokens the tower outputs per image: patches plus the class token (CLIP).
    pub fn num_positions(&self) -> usize {
        self.num_patches() + usize::from(self.kind == TowerKind::Clip)
    }
}

/// One encoder layer.
pub struct EncoderLayer {
    /// `[hidden]` each
    pub ln1: (Vec<f32>, Vec<f32>),
    /// `[hidden, hidden]` + bias, each
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ln2: (Vec<f32>, Vec<f32>),
    /// `[intermediate, hidden]`
    pub fc1: Linear,
    /// `[hidden, intermediate]`
    pub fc2: Linear,
}

pub struct VisionTower {
    pub dims: VisionDims,
    /// `[hidden, channels*p*p]` (the conv kernel `[hidden, C, p, p]` flattened), bias for SigLIP.
    pub patch: Linear,
    /// `[hidden]`, CLIP only.
    pub class_embedding: Option<Vec<f32>>,
    /// `[num_positions, hidden]`
    pub position: Vec<f32>,
    /// `pre_layrnorm` weight and bias `[hidden]`, CLIP only.
    pub pre_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// The first layers of the encoder (only as many as the selected features need).
    pub layers: Vec<EncoderLayer>,
    /// How the INT8 linears run (weight-only INT8 or W8A8, [`super::w8a8`]).
    pub kernel: super::w8a8::TowerKernel,
    /// SmoothQuant-smoothed at convert time (`vision_smoothing` in the config): W8A8 may run it.
    pub smoothed: bool,
}

/// Where [`VisionTower::run`] shows activations to an observer: the input of q/k/v (the output
/// of `layer_norm1`) or of fc1 (`layer_norm2`), of the layer with this index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    Ln1(usize),
    Ln2(usize),
}

impl VisionTower {
    /// Load the embeddings and encoder layers `0 .. n_layers` from `{prefix}embeddings.*`,
    /// `{prefix}encoder.layers.*` (prefix such as `vision_tower.vision_model.`).
    pub fn load(
        dims: VisionDims,
        src: &dyn WeightSource,
        prefix: &str,
        n_layers: usize,
        opts: &LoadOptions,
    ) -> Result<VisionTower> {
        if n_layers > dims.layers {
            return Err(Error::Invalid(format!("{n_layers} vision layers asked of a {}-layer tower", dims.layers)));
        }
        let (d, c, p) = (dims.hidden, dims.channels, dims.patch_size);
        let patch = load_patch_embedding(src, &format!("{prefix}embeddings.patch_embedding"), d, c, p)?;
        let clip = dims.kind == TowerKind::Clip;
        let class_embedding =
            if clip { Some(load_vector(src, &format!("{prefix}embeddings.class_embedding"), d)?) } else { None };
        let position =
            load_vector(src, &format!("{prefix}embeddings.position_embedding.weight"), dims.num_positions() * d)?;
        let ln = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((load_vector(src, &format!("{name}.weight"), d)?, load_vector(src, &format!("{name}.bias"), d)?))
        };
        let pre_norm = if clip { Some(ln(&format!("{prefix}pre_layrnorm"))?) } else { None };
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let p = format!("{prefix}encoder.layers.{i}.");
            let lin = |name: &str, o, inp| load_linear(src, &format!("{p}{name}"), o, inp, opts);
            layers.push(EncoderLayer {
                ln1: ln(&format!("{p}layer_norm1"))?,
                q: lin("self_attn.q_proj", d, d)?,
                k: lin("self_attn.k_proj", d, d)?,
                v: lin("self_attn.v_proj", d, d)?,
                o: lin("self_attn.out_proj", d, d)?,
                ln2: ln(&format!("{p}layer_norm2"))?,
                fc1: lin("mlp.fc1", dims.intermediate, d)?,
                fc2: lin("mlp.fc2", d, dims.intermediate)?,
            });
        }
        Ok(VisionTower {
            dims,
            patch,
            class_embedding,
            position,
            pre_norm,
            layers,
            kernel: Default::default(),
            smoothed: false,
        })
    }

    /// `hidden_states[i]` for each `i` in `wanted` (0 = encoder input, `i` = after layer `i`),
    /// each `[tokens, hidden]`, for one image `pixels: [channels, height, width]`.
    pub fn hidden_states(
        &self,
        pixels: &[f32],
        height: usize,
        width: usize,
        wanted: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        self.run(pixels, height, width, wanted, &mut |_, _| {})
    }

    /// [`VisionTower::hidden_states`] showing the linears' inputs at every [`Site`] to `obs`
    /// (`[tokens, hidden]` each).
    pub fn run(
        &self,
        pixels: &[f32],
        height: usize,
        width: usize,
        wanted: &[usize],
        obs: &mut dyn FnMut(Site, &[f32]),
    ) -> Result<Vec<Vec<f32>>> {
        let last = wanted.iter().copied().max().unwrap_or(0);
        if last > self.layers.len() {
            return Err(Error::Invalid(format!(
                "hidden state {last} asked of a tower loaded with {} layers",
                self.layers.len()
            )));
        }
        let mut x = self.embed(pixels, height, width)?; // [tokens, hidden]
        let n = self.dims.num_positions();
        let mut out: Vec<Option<Vec<f32>>> = vec![None; wanted.len()];
        for step in 0..=last {
            if step > 0 {
                self.layer_forward(step - 1, &mut x, n, obs);
            }
            for (slot, &w) in out.iter_mut().zip(wanted) {
                if w == step {
                    *slot = Some(x.clone());
                }
            }
        }
        Ok(out.into_iter().map(|s| s.expect("every wanted index is at most `last`")).collect())
    }

    /// Patch + class + position embeddings (and CLIP's pre-norm) → `[tokens, hidden]`.
    fn embed(&self, pixels: &[f32], height: usize, width: usize) -> Result<Vec<f32>> {
        let dm = &self.dims;
        let (c, p, d) = (dm.channels, dm.patch_size, dm.hidden);
        if pixels.len() != c * height * width {
            return Err(Error::Shape(format!("{} pixel values for [{c}, {height}, {width}]", pixels.len())));
        }
        if height != dm.image_size || width != dm.image_size {
            return Err(Error::Shape(format!(
                "image of {height}x{width} pixels: the vision tower takes {0}x{0}",
                dm.image_size
            )));
        }
        let g = dm.grid();
        let cols = unfold_patches(pixels, c, height, width, p); // [g*g, c*p*p]
        let patches = self.patch.apply(&cols, g * g); // [g*g, hidden]
        let mut x = Vec::with_capacity(dm.num_positions() * d); // [tokens, hidden]
        if let Some(cls) = &self.class_embedding {
            x.extend_from_slice(cls);
        }
        x.extend_from_slice(&patches);
        add_inplace(&mut x, &self.position);
        if let Some((w, b)) = &self.pre_norm {
            layer_norm(&mut x, w, b, dm.eps);
        }
        Ok(x)
    }

    /// `CLIPEncoderLayer` `i` in place on `x: [n, hidden]`.
    fn layer_forward(&self, i: usize, x: &mut [f32], n: usize, obs: &mut dyn FnMut(Site, &[f32])) {
        let (dm, l) = (&self.dims, &self.layers[i]);
        let lin = |w: &Linear, x: &[f32]| self.kernel.apply(w, x, n);
        let mut h = x.to_vec(); // [n, hidden]
        layer_norm(&mut h, &l.ln1.0, &l.ln1.1, dm.eps);
        obs(Site::Ln1(i), &h);
        let q = lin(&l.q, &h); // [n, heads*hd]
        let k = lin(&l.k, &h);
        let v = lin(&l.v, &h);
        let att = full_attention(&q, &k, &v, n, dm.heads, dm.hidden / dm.heads); // [n, hidden]
        add_inplace(x, &lin(&l.o, &att));
        h.copy_from_slice(x);
        layer_norm(&mut h, &l.ln2.0, &l.ln2.1, dm.eps);
        obs(Site::Ln2(i), &h);
        let mut m = lin(&l.fc1, &h); // [n, intermediate]
        dm.act.apply(&mut m);
        add_inplace(x, &lin(&l.fc2, &m));
    }

    /// Bytes held by all weights.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.w.nbytes() + l.bias.as_ref().map_or(0, |b| 4 * b.len());
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o, &l.fc1, &l.fc2].iter().map(|x| lin(x)).sum::<usize>() + 16 * l.ln1.0.len()
            })
            .sum();
        layers + lin(&self.patch) + 4 * self.position.len()
    }
}

/// `[C, H, W]` → `[(H/p)*(W/p), C*p*p]`: row `gy*(W/p) + gx` holds the patch at grid
/// `(gy, gx)` in the conv kernel's `(c, ky, kx)` order, so `patches · Wᵀ` is the convolution.
pub fn unfold_patches(px: &[f32], c: usize, h: usize, w: usize, p: usize) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
    let k = c * p * p;
    let mut out = vec![0f32; gh * gw * k];
    for gy in 0..gh {
        for gx in 0..gw {
            let row = &mut out[(gy * gw + gx) * k..][..k];
            for ch in 0..c {
                for ky in 0..p {
                    let s = ch * h * w + (gy * p + ky) * w + gx * p;
                    row[(ch * p + ky) * p..][..p].copy_from_slice(&px[s..s + p]);
                }
            }
        }
    }
    out
}

/// The conv kernel `{prefix}.weight` `[hidden, C, p, p]` as a dense `[hidden, C*p*p]` linear
/// (and `{prefix}.bias` where present). Kept f32: it is small and sees raw pixels.
fn load_patch_embedding(src: &dyn WeightSource, prefix: &str, d: usize, c: usize, p: usize) -> Result<Linear> {
    let name = format!("{prefix}.weight");
    if !src.contains(&name) {
        return Err(Error::MissingTensor(name));
    }
    let t = src.load(&name)?;
    let ok = t.shape == [d, c, p, p] || t.shape == [d, c * p * p];
    if !ok {
        return Err(Error::Shape(format!("`{name}` is {:?}, the config needs [{d}, {c}, {p}, {p}]", t.shape)));
    }
    let w = QTensor { rows: d, cols: c * p * p, data: QData::F32(t.into_f32()) };
    let bname = format!("{prefix}.bias");
    let bias = if src.contains(&bname) { Some(load_vector(src, &bname, d)?) } else { None };
    Ok(Linear { w, bias })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_is_the_convolution() {
        // 2 channels, 4x6 image, patch 2: conv by direct summation vs unfold · Wᵀ.
        let (c, h, w, p, d) = (2, 4, 6, 2, 3);
        let px: Vec<f32> = (0..c * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
        let kern: Vec<f32> = (0..d * c * p * p).map(|i| (i as f32 * 0.11).cos()).collect();
        let cols = unfold_patches(&px, c, h, w, p);
        let (gh, gw) = (h / p, w / p);
        for gy in 0..gh {
            for gx in 0..gw {
                for o in 0..d {
                    let mut direct = 0.0;
                    for ch in 0..c {
                        for ky in 0..p {
                            for kx in 0..p {
                                let wv = kern[((o * c + ch) * p + ky) * p + kx];
                                direct += wv * px[ch * h * w + (gy * p + ky) * w + gx * p + kx];
                            }
                        }
                    }
                    let row = &cols[(gy * gw + gx) * c * p * p..][..c * p * p];
                    let mm: f32 = row.iter().zip(&kern[o * c * p * p..(o + 1) * c * p * p]).map(|(a, b)| a * b).sum();
                    assert!((direct - mm).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn config_defaults_follow_transformers() {
        let d = VisionDims::from_value(&serde_json::json!({"hidden_size": 64, "num_attention_heads": 4})).unwrap();
        assert_eq!(
            (d.kind, d.patch_size, d.image_size, d.act, d.layers),
            (TowerKind::Clip, 32, 224, Activation::QuickGelu, 12)
        );
        assert_eq!(d.num_positions(), 50);
        let s = VisionDims::from_value(&serde_json::json!({"model_type": "siglip_vision_model"})).unwrap();
        assert_eq!(
            (s.kind, s.patch_size, s.act, s.num_positions()),
            (TowerKind::Siglip, 16, Activation::GeluTanh, 196)
        );
        assert!(VisionDims::from_value(&serde_json::json!({"hidden_size": 10, "num_attention_heads": 4})).is_err());
        assert!(VisionDims::from_value(&serde_json::json!({"model_type": "vit"})).is_err());
    }
}
