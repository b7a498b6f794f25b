//! Image calibration sets (`--calibrate DIR`): a folder of images (`.png`, `.jpg`, `.jpeg`,
//! `.webp`), each with an optional prompt file beside it (`cat.png` → `cat.txt`). The prompt
//! file's text up to its first blank line is the user's question; any text after it is the
//! assistant's answer, calibrated too. An image without a prompt file is asked
//! [`DEFAULT_PROMPT`]. Items go in file-name order; the first [`super::data::CALIB_SHARE`]
//! calibrate, the rest are held out for `quality.json` / `webvlm eval`.
//!
//! An item becomes a [`Sample`] the way `webvlm generate --image` builds a prompt: the image is
//! preprocessed by the checkpoint's processor settings and encoded by the model's vision tower
//! and projector; the user turn (one image part, then the text) is rendered with the model's
//! chat template ([`crate::vision::prompt::render_turns`]) and the answer appended; the image
//! token is expanded to one per feature row. One item is in memory at a time.

use super::data::CALIB_SHARE;
use super::sample::Sample;
use crate::error::{Error, Result};
use crate::model::llava::{encode_image_prompt, Llava};
use crate::tokenizer::Tokenizer;
use crate::vision::features::{encode, prepare, processor_config};
use crate::vision::preprocess::ClipProcessorConfig;
use crate::vision::prompt::{render_turns, ChatTurn};
use std::path::{Path, PathBuf};

/// The question asked about an image with no prompt file.
pub const DEFAULT_PROMPT: &str = "Describe the image.";
/// Largest image accepted (pixels).
const MAX_PIXELS: u64 = 64 << 20;

/// The built-in image set of LLaVA models (`--calibrate builtin`): real photos from
/// scikit-image's wheel and the default model's generated scenes with their questions, written
/// by `tools/calib_set.py` into the repository's `data/calib-vlm/` (read from there at run time).
pub fn builtin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join("calib-vlm")
}

/// One image and its prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub image: PathBuf,
    pub prompt: String,
    pub answer: String,
}

/// Calibration and held-out items of a folder.
#[derive(Clone, Debug)]
pub struct ImageSplit {
    pub calib: Vec<Item>,
    pub heldout: Vec<Item>,
}

fn is_image(p: &Path) -> bool {
    let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "webp"))
}

/// The items of folder `dir`, split into calibration and held-out (at least two images).
pub fn load(dir: &Path) -> Result<ImageSplit> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    images.sort();
    if images.len() < 2 {
        return Err(Error::Invalid(format!(
            "{}: an image calibration folder needs at least two images (calibration and held-out)",
            dir.display()
        )));
    }
    let items = images
        .into_iter()
        .map(|image| {
            let txt = image.with_extension("txt");
            let text = match std::fs::read_to_string(&txt) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_PROMPT.to_string(),
                Err(e) => return Err(Error::io(&txt, e)),
            };
            let (q, a) = text.split_once("\n\n").unwrap_or((&text, ""));
            Ok(Item { image, prompt: q.trim().to_string(), answer: a.trim().to_string() })
        })
        .collect::<Result<Vec<_>>>()?;
    let cut = ((items.len() as f64 * CALIB_SHARE).round() as usize).clamp(1, items.len() - 1);
    let heldout = items[cut..].to_vec();
    Ok(ImageSplit { calib: items[..cut].to_vec(), heldout })
}

/// Turns items into samples with one LLaVA model (the f32 reference).
pub struct Sampler<'a> {
    pub model: &'a Llava,
    pub tok: &'a Tokenizer,
    pub processor: ClipProcessorConfig,
}

impl<'a> Sampler<'a> {
    pub fn new(model: &'a Llava, tok: &'a Tokenizer, preprocessor: Option<&serde_json::Value>) -> Result<Self> {
        Ok(Sampler { model, tok, processor: processor_config(preprocessor, model)? })
    }

    /// The sample of `item`: prompt ids with the image expanded, and the image's features.
    pub fn sample(&self, item: &Item) -> Result<Sample> {
        let bytes = std::fs::read(&item.image).map_err(|e| Error::io(&item.image, e))?;
        let img = crate::vision::image::decode(&bytes, MAX_PIXELS)?;
        let feats = encode(&prepare(&img, &self.processor, self.model)?, self.model)?; // [tokens, hidden]
        let ids = self.prompt_ids(item)?;
        let d = self.model.cfg.text.hidden_size;
        let ids = self.model.expand_image_tokens(&ids, &[feats.len() / d])?;
        Ok(Sample { ids, feats, image_token: self.model.cfg.image_token_id })
    }

    /// The user turn with one image rendered by the chat template (or LLaVA-1.5's
    /// `USER: <image>\n… ASSISTANT:` without one), the answer appended, tokenized.
    fn prompt_ids(&self, item: &Item) -> Result<Vec<u32>> {
        let spec = &self.tok.spec;
        let (bos, eos) = (spec.bos_token.as_deref().unwrap_or(""), spec.eos_token.as_deref().unwrap_or(""));
        let mut text = match spec.chat_template.as_deref() {
            Some(tpl) => {
                let turn = ChatTurn { role: "user".into(), text: item.prompt.clone(), images: 1 };
                render_turns(tpl, &[turn], bos, eos)?
            }
            None => format!("USER: <image>\n{} ASSISTANT:", item.prompt),
        };
        if !item.answer.is_empty() {
            text.push(' ');
            text.push_str(&item.answer);
        }
        let add_bos = spec.add_bos && !(bos.is_empty() || text.starts_with(bos));
        encode_image_prompt(self.tok, self.model.cfg.image_token_id, &text, add_bos)
    }
}
