//! LLaVA-1.5 (`LlavaForConditionalGeneration`) and LLaVA-NeXT
//! (`LlavaNextForConditionalGeneration`) as transformers computes them
//! (`models/llava/modeling_llava.py`, `models/llava_next/modeling_llava_next.py`, and the
//! processors' `<image>` expansion in `processing_llava.py` / `processing_llava_next.py`).
//!
//! An image becomes features: vision tower → `hidden_states[vision_feature_layer]` (a list of
//! layers is concatenated along the feature axis) → the class token dropped for the
//! `default` strategy → projector. LLaVA-NeXT runs every tile (base image first) and packs
//! them (`pack_image_features`): the tiles' grid is reassembled into one feature map,
//! `unpad_image` crops the padding the resize added, `image_newline` ends every row, and the
//! base image's features go first. The prompt holds one `<image>` token per feature; their
//! embeddings are replaced by the features in order, and the text decoder runs on the result.
//!
//! LLaVA's original code base (`llava/model/llava_arch.py`, `LlavaMetaModel`; e.g. IntelLabs'
//! LlavaOLMoBitnet1B) is read too: config keys `mm_vision_select_layer`,
//! `mm_vision_select_feature` (`patch` drops the class token), `mm_projector_type`,
//! `image_aspect_ratio` (`pad`: `expand2square` with the mean colour), the tower's config
//! under `vision_config` (the HF reader copies it from the `mm_vision_tower` folder), tensors
//! `model.vision_tower.vision_tower.[vision_model.]*`, `model.mm_projector.{0,2}.*`, and the
//! decoder's own names. The prompt holds the placeholder `IMAGE_TOKEN_INDEX` (-200, here
//! [`ORIGINAL_IMAGE_TOKEN`]) where `tokenizer_image_token` put `<image>`.

use super::llama::Llama;
use super::{KvCache, LlamaConfig, LoadOptions};
use crate::error::{Error, Result};
use crate::io::{Tensor, WeightSource};
use crate::vision::anyres;
use crate::vision::clip::{VisionDims, VisionTower};
use crate::vision::ops::Activation;
use crate::vision::projector::Projector;
use serde_json::Value;

/// LLaVA's `IMAGE_TOKEN_INDEX` (-200) as a `u32` token id (two's complement).
pub const ORIGINAL_IMAGE_TOKEN: u32 = (-200i32) as u32;

/// Tokenize `text` holding `<image>` markers for a model whose image token is `image_token_id`:
/// LLaVA's original layout as its `tokenizer_image_token` does (chunks around `<image>` alone,
/// joined by the [`ORIGINAL_IMAGE_TOKEN`] placeholder, BOS per `add_bos` on the first); any other
/// model through the tokenizer (`<image>` is a token).
pub fn encode_image_prompt(
    tok: &crate::tokenizer::Tokenizer,
    image_token_id: u32,
    text: &str,
    add_bos: bool,
) -> Result<Vec<u32>> {
    if image_token_id != ORIGINAL_IMAGE_TOKEN {
        return tok.encode(text, add_bos);
    }
    let mut ids = Vec::new();
    for (j, chunk) in text.split("<image>").enumerate() {
        if j > 0 {
            ids.push(ORIGINAL_IMAGE_TOKEN);
        }
        ids.extend(tok.encode(chunk, add_bos && j == 0)?);
    }
    Ok(ids)
}

/// Which image-packing scheme the model uses.
#[derive(Clone, Debug, PartialEq)]
pub enum LlavaKind {
    /// LLaVA-1.5: one tile of the configured size per image.
    V15,
    /// LLaVA-NeXT: anyres tiles; `pinpoints` are the `image_grid_pinpoints` `(height, width)`;
    /// `newline` is `image_newline` `[text_hidden]`.
    Next { pinpoints: Vec<(usize, usize)>, newline: Vec<f32> },
}

/// `vision_feature_select_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectStrategy {
    /// Drop the first (class) token.
    Default,
    Full,
}

/// Where a checkpoint keeps the three parts (transformers 5.x, 4.x).
#[derive(Clone, Debug, PartialEq)]
pub struct LlavaNames {
    pub vision: String,
    pub projector: String,
    /// The projector's two linears under `projector` (`linear_1`/`linear_2` or `0`/`2`).
    pub projector_layers: [String; 2],
    /// Prefix rules mapping the decoder's `model.*` / `lm_head.*` names onto the checkpoint's.
    pub text: Vec<(String, String)>,
    pub newline: String,
}

impl LlavaNames {
    /// Detect the naming from the tensors present: transformers 5.x in memory
    /// (`model.vision_tower.*`, `model.language_model.*`, `lm_head.*`), as saved by 5.x and
    /// 4.x (`vision_tower.*`, `multi_modal_projector.*`, `language_model.model.*`,
    /// `language_model.lm_head.*`), with or without CLIP's `vision_model.` level.
    pub fn detect(src: &dyn WeightSource) -> Result<LlavaNames> {
        fn find(src: &dyn WeightSource, cands: &[&'static str], suffix: &str) -> Option<&'static str> {
            cands.iter().find(|p| src.contains(&format!("{p}{suffix}"))).copied()
        }
        let patch = "embeddings.patch_embedding.weight";
        let towers = [
            "model.vision_tower.vision_model.",
            "model.vision_tower.",
            "vision_tower.vision_model.",
            "vision_tower.",
            "model.vision_tower.vision_tower.vision_model.",
            "vision_tower.vision_tower.vision_model.",
            "model.vision_tower.vision_tower.",
            "vision_tower.vision_tower.",
        ];
        let vision = find(src, &towers, patch)
            .ok_or_else(|| Error::MissingTensor(format!("vision_tower.{patch}` (under any known prefix")))?;
        let mlp = find(src, &["model.mm_projector.", "mm_projector."], "0.weight").map(|p| (p, ["0", "2"]));
        // `mm_projector_type: linear`: one `nn.Linear` named `mm_projector`.
        let linear =
            || find(src, &["model.", ""], "mm_projector.weight").map(|p| (p, ["mm_projector", "mm_projector.2"]));
        if let Some((p, [l1, l2])) = mlp.or_else(linear) {
            // LLaVA's original code base: the decoder keeps its own names under `model.`.
            return Ok(LlavaNames {
                vision: vision.into(),
                projector: p.into(),
                projector_layers: [l1.into(), l2.into()],
                text: vec![("model.".into(), "model.".into()), ("lm_head.".into(), "lm_head.".into())],
                newline: "model.image_newline".into(),
            });
        }
        let projector = find(src, &["model.multi_modal_projector.", "multi_modal_projector."], "linear_1.weight")
            .ok_or_else(|| Error::MissingTensor("multi_modal_projector.linear_1.weight".into()))?;
        let embed = "embed_tokens.weight";
        let body = find(src, &["model.language_model.", "language_model.model."], embed)
            .ok_or_else(|| Error::MissingTensor(format!("language_model.model.{embed}")))?;
        let head = find(src, &["lm_head.", "language_model.lm_head."], "weight").unwrap_or("lm_head.");
        let newline = find(src, &["model.", ""], "image_newline").unwrap_or("model.");
        Ok(LlavaNames {
            vision: vision.into(),
            projector: projector.into(),
            projector_layers: ["linear_1".into(), "linear_2".into()],
            text: vec![("model.".into(), body.into()), ("lm_head.".into(), head.into())],
            newline: format!("{newline}image_newline"),
        })
    }
}

/// A [`WeightSource`] that shows the decoder the names it expects (`model.layers.0…`,
/// `lm_head.weight`) for tensors stored under other prefixes.
struct Renamed<'a> {
    inner: &'a dyn WeightSource,
    rules: &'a [(String, String)],
}

impl Renamed<'_> {
    fn map(&self, name: &str) -> Option<String> {
        self.rules.iter().find_map(|(from, to)| name.strip_prefix(from.as_str()).map(|rest| format!("{to}{rest}")))
    }
}

impl WeightSource for Renamed<'_> {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .names()
            .into_iter()
            .filter_map(|n| self.rules.iter().find_map(|(f, t)| n.strip_prefix(t.as_str()).map(|r| format!("{f}{r}"))))
            .collect();
        v.sort();
        v
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let m = self.map(name).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        self.inner.shape(&m)
    }
    fn load(&self, name: &str) -> Result<Tensor> {
        let m = self.map(name).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        self.inner.load(&m)
    }
}

/// The LLaVA fields of the top-level config.
#[derive(Clone, Debug)]
pub struct LlavaConfig {
    pub architecture: String,
    pub image_token_id: u32,
    /// Absolute indices into `hidden_states` (0 = embeddings), in concatenation order.
    pub feature_layers: Vec<usize>,
    pub strategy: SelectStrategy,
    /// The projector's activation between its two linears; `None`: one linear
    /// (original LLaVA's `mm_projector_type: linear`).
    pub projector_act: Option<Activation>,
    pub vision: VisionDims,
    pub text: LlamaConfig,
    pub pinpoints: Option<Vec<(usize, usize)>>,
    /// `image_aspect_ratio: "pad"` (original code base): pad images to a square first.
    pub pad_to_square: bool,
    /// The converter smoothed the INT8 tower ([`crate::vision::w8a8::smoothed`]).
    pub smoothed: bool,
}

/// Whether `config` describes a LLaVA-family model.
pub fn is_llava(config: &Value) -> bool {
    (config.get("vision_config").is_some() && config.get("text_config").is_some()) || is_original(config)
}

/// Whether `config` is in LLaVA's original layout (`LlavaMetaModel`'s `mm_*` keys).
pub fn is_original(config: &Value) -> bool {
    config.get("text_config").is_none()
        && (config.get("mm_projector_type").is_some() || config.get("mm_vision_tower").is_some())
}

impl LlavaConfig {
    pub fn from_value(c: &Value) -> Result<LlavaConfig> {
        if is_original(c) {
            return Self::from_original(c);
        }
        let err = |m: String| Error::format("config.json", m);
        let vision = VisionDims::from_value(c.get("vision_config").ok_or_else(|| err("no vision_config".into()))?)?;
        let text =
            LlamaConfig::from_value(&text_config(c.get("text_config").ok_or_else(|| err("no text_config".into()))?))?;
        let architecture = c
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("LlavaForConditionalGeneration")
            .to_string();
        let next =
            architecture.starts_with("LlavaNext") || c.get("model_type").and_then(Value::as_str) == Some("llava_next");
        let id = c.get("image_token_id").or_else(|| c.get("image_token_index"));
        let image_token_id = match id {
            None => 32000, // `LlavaConfig`'s default
            Some(v) => {
                v.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| err(format!("image_token_id {v}")))?
            }
        };
        let n = vision.layers as i64;
        let resolve = |v: &Value| -> Result<usize> {
            let i = v.as_i64().ok_or_else(|| err(format!("vision_feature_layer {v}")))?;
            let a = if i < 0 { n + 1 + i } else { i };
            if !(0..=n).contains(&a) {
                return Err(err(format!("vision_feature_layer {i} outside a {n}-layer tower")));
            }
            Ok(a as usize)
        };
        let feature_layers = match c.get("vision_feature_layer") {
            None => vec![resolve(&Value::from(-2))?],
            Some(Value::Array(a)) if !a.is_empty() => a.iter().map(resolve).collect::<Result<_>>()?,
            Some(v) => vec![resolve(v)?],
        };
        let strategy = match c.get("vision_feature_select_strategy").and_then(Value::as_str).unwrap_or("default") {
            "default" => SelectStrategy::Default,
            "full" => SelectStrategy::Full,
            s => return Err(err(format!("vision_feature_select_strategy `{s}`"))),
        };
        let act = c.get("projector_hidden_act").and_then(Value::as_str).unwrap_or("gelu");
        let projector_act = Some(Activation::parse(act)?);
        let pinpoints = if next { Some(parse_pinpoints(c.get("image_grid_pinpoints"))?) } else { None };
        Ok(LlavaConfig {
            architecture,
            image_token_id,
            feature_layers,
            strategy,
            projector_act,
            vision,
            text,
            pinpoints,
            pad_to_square: false,
            smoothed: crate::vision::w8a8::smoothed(c),
        })
    }

    /// LLaVA's original layout: the decoder's config at the top level plus `mm_*` keys.
    fn from_original(c: &Value) -> Result<LlavaConfig> {
        let err = |m: String| Error::format("config.json", m);
        let tower = c.get("mm_vision_tower").and_then(Value::as_str).unwrap_or("?");
        let vc = c.get("vision_config").ok_or_else(|| {
            err(format!("no vision_config, and the folder has no `{tower}/config.json` for mm_vision_tower"))
        })?;
        let vision = VisionDims::from_value(vc)?;
        let text = LlamaConfig::from_value(c)?;
        let architecture =
            c.get("architectures").and_then(|a| a.get(0)).and_then(Value::as_str).unwrap_or("LlavaLlamaForCausalLM");
        let n = vision.layers as i64;
        let layer = c.get("mm_vision_select_layer").map_or(Some(-2), Value::as_i64);
        let layer = layer.ok_or_else(|| err("mm_vision_select_layer is not an integer".into()))?;
        let abs = if layer < 0 { n + 1 + layer } else { layer };
        if !(0..=n).contains(&abs) {
            return Err(err(format!("mm_vision_select_layer {layer} outside a {n}-layer tower")));
        }
        let strategy = match c.get("mm_vision_select_feature").and_then(Value::as_str).unwrap_or("patch") {
            "patch" => SelectStrategy::Default,
            "cls_patch" => SelectStrategy::Full,
            s => return Err(err(format!("mm_vision_select_feature `{s}`"))),
        };
        let projector_act = match c.get("mm_projector_type").and_then(Value::as_str).unwrap_or("linear") {
            "linear" => None,
            "mlp2x_gelu" => Some(Activation::parse("gelu")?),
            s => return Err(Error::Unsupported(format!("mm_projector_type `{s}` (linear or mlp2x_gelu)"))),
        };
        let pad_to_square = match c.get("image_aspect_ratio").and_then(Value::as_str).unwrap_or("square") {
            "pad" => true,
            "square" | "resize" => false,
            s => return Err(Error::Unsupported(format!("image_aspect_ratio `{s}` (pad or square)"))),
        };
        Ok(LlavaConfig {
            architecture: architecture.to_string(),
            image_token_id: ORIGINAL_IMAGE_TOKEN,
            feature_layers: vec![abs as usize],
            strategy,
            projector_act,
            vision,
            text,
            pinpoints: None,
            pad_to_square,
            smoothed: crate::vision::w8a8::smoothed(c),
        })
    }

    /// Features one tile yields: the tower's tokens less the class token (`default`).
    pub fn tile_tokens(&self) -> usize {
        self.vision.num_positions() - usize::from(self.strategy == SelectStrategy::Default)
    }

    /// Features `<image>` tokens of an image of `orig` `(height, width)` pixels stand for
    /// (the processors' count: `_get_number_of_features` for NeXT).
    pub fn image_tokens(&self, orig: (usize, usize)) -> Result<usize> {
        match &self.pinpoints {
            None => Ok(self.tile_tokens()),
            Some(pinpoints) => {
                let (rows, cols) = self.next_layout(orig, pinpoints)?.crop;
                Ok(self.tile_tokens() + rows * (cols + 1))
            }
        }
    }

    /// NeXT: the tile grid for an image of `orig` `(height, width)` and the crop `unpad_image`
    /// keeps of the reassembled feature map.
    pub fn next_layout(&self, orig: (usize, usize), pinpoints: &[(usize, usize)]) -> Result<NextLayout> {
        let u = |x: usize| u32::try_from(x).map_err(|_| Error::Invalid(format!("image side {x} is too large")));
        let pins = pinpoints.iter().map(|&(h, w)| Ok((u(h)?, u(w)?))).collect::<Result<Vec<_>>>()?;
        let o = (u(orig.0)?, u(orig.1)?);
        if o.0 == 0 || o.1 == 0 {
            return Err(Error::Invalid(format!("image of {}x{} pixels", o.0, o.1)));
        }
        let size = u(self.vision.image_size)?;
        let (bh, bw) = anyres::select_best_resolution(o, &pins)
            .ok_or_else(|| Error::format("config.json", "empty image_grid_pinpoints"))?;
        let grid = ((bh / size) as usize, (bw / size) as usize);
        if grid.0 == 0 || grid.1 == 0 {
            return Err(Error::format(
                "config.json",
                format!("grid pinpoint {bh}x{bw} is smaller than a {size}px tile"),
            ));
        }
        let g = self.vision.grid();
        let (rows, cols) = anyres::unpad_ranges((u(grid.0 * g)?, u(grid.1 * g)?), o);
        Ok(NextLayout { grid, crop_off: (rows.start as usize, cols.start as usize), crop: (rows.len(), cols.len()) })
    }
}

/// `text_config` with transformers 5.x's `rope_parameters` (`rope_theta`, `rope_type`) also
/// written as the 4.x fields the decoder's config reads.
fn text_config(v: &Value) -> Value {
    let mut v = v.clone();
    let rp = v.get("rope_parameters").cloned();
    if let (Some(obj), Some(rp)) = (v.as_object_mut(), rp) {
        if let Some(theta) = rp.get("rope_theta").filter(|_| !obj.contains_key("rope_theta")) {
            obj.insert("rope_theta".into(), theta.clone());
        }
        let kind = rp.get("rope_type").and_then(Value::as_str).unwrap_or("default");
        if kind != "default" && !obj.contains_key("rope_scaling") {
            obj.insert("rope_scaling".into(), rp.clone());
        }
    }
    v
}

/// `image_grid_pinpoints` `[[h, w], ...]`, with `LlavaNextConfig`'s default.
fn parse_pinpoints(v: Option<&Value>) -> Result<Vec<(usize, usize)>> {
    let Some(v) = v else {
        return Ok(vec![(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]);
    };
    let bad = || Error::format("config.json", format!("image_grid_pinpoints {v}"));
    let list = v.as_array().ok_or_else(bad)?;
    let out: Vec<(usize, usize)> = list
        .iter()
        .map(|p| {
            let a = p.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
            let d = |x: &Value| x.as_u64().filter(|&x| x > 0).map(|x| x as usize).ok_or_else(bad);
            Ok((d(&a[0])?, d(&a[1])?))
        })
        .collect::<Result<_>>()?;
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

pub struct Llava {
    pub cfg: LlavaConfig,
    pub kind: LlavaKind,
    pub tower: VisionTower,
    pub projector: Projector,
    pub lm: Llama,
}

/// Options for the vision side on top of the decoder's [`LoadOptions`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VisionLoadOptions {
    /// Quantize the vision tower on load (`None`: keep the checkpoint's formats).
    pub tower: Option<crate::quant::WeightFormat>,
}

impl Llava {
    /// Load tower, projector, decoder (and NeXT's `image_newline`) from `src`.
    pub fn load(
        config: &Value,
        src: &dyn WeightSource,
        opts: &LoadOptions,
        vopts: &VisionLoadOptions,
    ) -> Result<Llava> {
        let cfg = LlavaConfig::from_value(config)?;
        let names = LlavaNames::detect(src)?;
        let needed = cfg.feature_layers.iter().copied().max().unwrap_or(0);
        let topts = LoadOptions { weights: vopts.tower, ..*opts };
        let mut tower = VisionTower::load(cfg.vision.clone(), src, &names.vision, needed, &topts)?;
        if cfg.smoothed {
            tower.smoothed = true;
            crate::vision::w8a8::choose(&mut tower);
        }
        let vin = cfg.vision.hidden * cfg.feature_layers.len();
        let d = cfg.text.hidden_size;
        let p = &names.projector;
        let [l1, l2] = &names.projector_layers;
        let second = format!("{p}{l2}");
        if cfg.projector_act.is_none() && src.contains(&format!("{second}.weight")) {
            return Err(Error::format("config.json", format!("mm_projector_type is linear but `{second}` exists")));
        }
        let popts = LoadOptions { weights: None, ..*opts };
        let second = cfg.projector_act.map(|act| (second.as_str(), act));
        let projector = Projector::load(src, &format!("{p}{l1}"), second, vin, d, &popts)?;
        let lm = Llama::load(cfg.text.clone(), &Renamed { inner: src, rules: &names.text }, "", opts)?;
        let kind = match &cfg.pinpoints {
            None => LlavaKind::V15,
            Some(p) => LlavaKind::Next {
                pinpoints: p.clone(),
                newline: crate::model::linear::load_vector(src, &names.newline, d)?,
            },
        };
        Ok(Llava { cfg, kind, tower, projector, lm })
    }

    /// Projected features of one tile `pixels: [C, H, W]` → `[tile_tokens, text_hidden]`.
    pub fn tile_features(&self, pixels: &[f32], height: usize, width: usize) -> Result<Vec<f32>> {
        self.check_cpu_vision()?;
        let hs = self.tower.hidden_states(pixels, height, width, &self.cfg.feature_layers)?;
        let (n, dv) = (self.cfg.vision.num_positions(), self.cfg.vision.hidden);
        let skip = n - self.cfg.tile_tokens();
        let k = hs.len();
        let mut x = vec![0f32; (n - skip) * dv * k]; // [tokens, dv * layers]
        for (t, row) in x.chunks_exact_mut(dv * k).enumerate() {
            for (l, h) in hs.iter().enumerate() {
                row[l * dv..(l + 1) * dv].copy_from_slice(&h[(t + skip) * dv..(t + skip + 1) * dv]);
            }
        }
        Ok(self.projector.forward(&x, n - skip))
    }
}

/// How LLaVA-NeXT lays out one image's tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextLayout {
    /// Tiles `(rows, cols)` after the base image.
    pub grid: (usize, usize),
    /// The unpadded crop of the `(rows*g, cols*g)` feature map: offset and size, in patches.
    pub crop_off: (usize, usize),
    pub crop: (usize, usize),
}

impl Llava {
    /// One image's features `[image_tokens, text_hidden]` from its preprocessed tiles, each
    /// `[C, H, W]` of `tile_hw` (LLaVA-1.5: one; NeXT: the base image, then the grid row by
    /// row). `orig`: the image's `(height, width)` before preprocessing (NeXT's `image_sizes`).
    pub fn image_features(&self, tiles: &[&[f32]], tile_hw: (usize, usize), orig: (usize, usize)) -> Result<Vec<f32>> {
        let feats = tiles.iter().map(|t| self.tile_features(t, tile_hw.0, tile_hw.1)).collect::<Result<Vec<_>>>()?;
        self.pack_tiles(feats, orig)
    }

    /// One image's features from its tiles' projected features (as [`Llava::tile_features`]
    /// returns them, in the order of [`Llava::image_features`]'s `tiles`): LLaVA-1.5 takes its
    /// one tile as is, NeXT packs base image and grid with `image_newline` ([`pack_next`]).
    pub fn pack_tiles(&self, feats: Vec<Vec<f32>>, orig: (usize, usize)) -> Result<Vec<f32>> {
        match &self.kind {
            LlavaKind::V15 => {
                if feats.len() != 1 {
                    return Err(Error::Invalid(format!("LLaVA-1.5 takes 1 tile per image, got {}", feats.len())));
                }
                Ok(feats.into_iter().next().expect("one tile"))
            }
            LlavaKind::Next { pinpoints, newline } => {
                let layout = self.cfg.next_layout(orig, pinpoints)?;
                pack_next(&feats, &layout, self.cfg.vision.grid(), newline)
            }
        }
    }

    /// Replace the `k`-th image token of `ids` by `counts[k]` copies (what the processors do
    /// to `<image>` in the text). Errors when the number of image tokens is not `counts.len()`.
    pub fn expand_image_tokens(&self, ids: &[u32], counts: &[usize]) -> Result<Vec<u32>> {
        let img = self.cfg.image_token_id;
        let found = ids.iter().filter(|&&t| t == img).count();
        if found != counts.len() {
            return Err(Error::Invalid(format!(
                "the prompt has {found} image tokens (id {img}) for {} images",
                counts.len()
            )));
        }
        let mut out = Vec::with_capacity(ids.len() + counts.iter().sum::<usize>());
        let mut k = 0;
        for &t in ids {
            if t == img {
                out.extend(std::iter::repeat_n(img, counts[k]));
                k += 1;
            } else {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Input embeddings `[n, hidden]` of expanded `ids`, the image tokens' rows replaced by
    /// the images' features in order (each `[tokens, hidden]`; their total must equal the
    /// number of image tokens, as transformers checks).
    pub fn embed_with_images(&self, ids: &[u32], features: &[&[f32]]) -> Result<Vec<f32>> {
        let d = self.cfg.text.hidden_size;
        let img = self.cfg.image_token_id;
        let n_img = ids.iter().filter(|&&t| t == img).count();
        let n_feat: usize = features.iter().map(|f| f.len() / d).sum();
        if n_img != n_feat || features.iter().any(|f| f.len() % d != 0) {
            return Err(Error::Invalid(format!(
                "image features and image tokens do not match: tokens {n_img}, features {n_feat}"
            )));
        }
        // The image id may lie outside the text vocabulary; embed a placeholder there.
        let safe: Vec<u32> = ids.iter().map(|&t| if t == img { 0 } else { t }).collect();
        let mut x = self.lm.embed_tokens(&safe)?; // [n, hidden]
        let mut rows = features.iter().flat_map(|f| f.chunks_exact(d));
        for (&t, row) in ids.iter().zip(x.chunks_exact_mut(d)) {
            if t == img {
                row.copy_from_slice(rows.next().expect("counts checked above"));
            }
        }
        Ok(x)
    }

    /// Run the decoder on input embeddings after what `kv` holds; last position's logits.
    pub fn forward_embeds(&self, x: Vec<f32>, n: usize, kv: &mut KvCache) -> Result<Vec<f32>> {
        self.lm.forward_embeds(x, n, kv)
    }

    /// Bytes held by all weights.
    pub fn weight_bytes(&self) -> usize {
        self.tower.weight_bytes() + self.projector.weight_bytes() + self.lm.weight_bytes()
    }
}

/// `pack_image_features` for one image: `feats[0]` the base image's features, `feats[1..]`
/// the grid's tiles row by row, each `[g*g, hidden]`. Returns the base features, then the
/// unpadded crop of the reassembled `[rows*g, cols*g]` map row by row, each row followed by
/// `newline`.
pub fn pack_next(feats: &[Vec<f32>], layout: &NextLayout, g: usize, newline: &[f32]) -> Result<Vec<f32>> {
    let d = newline.len();
    let (gr, gc) = layout.grid;
    if feats.len() != 1 + gr * gc {
        return Err(Error::Invalid(format!("{} tiles for a base image and a {gr}x{gc} grid", feats.len())));
    }
    if feats.iter().any(|f| f.len() != g * g * d) {
        return Err(Error::Shape(format!(
            "tile features are not a {g}x{g} grid of {d} (vision_feature_select_strategy `full`?)"
        )));
    }
    let (r0, c0) = layout.crop_off;
    let (rows, cols) = layout.crop;
    let mut out = Vec::with_capacity((g * g + rows * (cols + 1)) * d); // [tokens, hidden]
    out.extend_from_slice(&feats[0]);
    for y in r0..r0 + rows {
        for x in c0..c0 + cols {
            let tile = &feats[1 + (y / g) * gc + x / g];
            let tok = (y % g) * g + x % g;
            out.extend_from_slice(&tile[tok * d..(tok + 1) * d]);
        }
        out.extend_from_slice(newline);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "llava_tests.rs"]
mod tests;
