//! HF checkpoint folders, laid out as `transformers`' `save_pretrained` writes them:
//! `config.json`, `model.safetensors` or sharded `model-0000N-of-0000M.safetensors` listed by
//! `model.safetensors.index.json` (`weight_map`), `tokenizer.json`, `tokenizer_config.json`
//! (chat template, BOS/EOS tokens, `add_bos_token`), `chat_template.jinja` /
//! `chat_template.json` (newer transformers keep the template there) and
//! `generation_config.json` (`eos_token_id`, int or list). Vision models add
//! `preprocessor_config.json` (the image processor's fields, flat) and/or `processor_config.json`
//! (processor fields such as `patch_size`, with the image processor's fields nested under
//! `image_processor` in transformers 5); [`merge_preprocessor`] makes one flat object of them.
//!
//! LLaVA-style configs (with `text_config`) are kept whole; model code picks what it needs.

use crate::error::{Error, Result};
use crate::io::TokenizerSpec;
use serde_json::Value;

/// The id of `token` in an HF `tokenizer.json` document: added tokens first, then the
/// model vocabulary (a map for BPE / WordPiece / WordLevel, a `[piece, score]` list for Unigram).
pub fn token_id(tokenizer: &Value, token: &str) -> Option<u32> {
    let added = tokenizer.get("added_tokens").and_then(Value::as_array);
    for t in added.into_iter().flatten() {
        if t.get("content").and_then(Value::as_str) == Some(token) {
            return t.get("id").and_then(Value::as_u64).map(|v| v as u32);
        }
    }
    let vocab = tokenizer.get("model")?.get("vocab")?;
    match vocab {
        Value::Object(m) => m.get(token).and_then(Value::as_u64).map(|v| v as u32),
        Value::Array(a) => a.iter().position(|p| p.get(0).and_then(Value::as_str) == Some(token)).map(|i| i as u32),
        _ => None,
    }
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` dict (`content`).
fn special_token(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// `chat_template` as a string, or a list of `{name, template}` (the `default` one is taken).
fn template_value(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => {
            let named = |n: &str| {
                a.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
                    .and_then(|t| t.get("template")?.as_str().map(str::to_string))
            };
            named("default").or_else(|| a.first()?.get("template")?.as_str().map(str::to_string))
        }
        _ => None,
    }
}

/// Whether the tokenizer's own post-processor starts every sequence with `bos`
/// (Llama-3 style `TemplateProcessing`); used when `add_bos_token` is not stated.
fn post_processor_adds(tokenizer: &Value, bos: &str) -> bool {
    let pp = match tokenizer.get("post_processor") {
        Some(pp) if !pp.is_null() => pp,
        _ => return false,
    };
    let procs: Vec<&Value> = match pp.get("processors").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![pp],
    };
    procs.iter().any(|p| {
        p.get("type").and_then(Value::as_str) == Some("TemplateProcessing")
            && p.get("single")
                .and_then(|s| s.get(0))
                .and_then(|f| f.get("SpecialToken"))
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
                == Some(bos)
    })
}

/// The files that describe a tokenizer, already read.
#[derive(Default)]
pub struct TokenizerFiles {
    /// `tokenizer.json` text.
    pub tokenizer_json: String,
    pub tokenizer_config: Option<Value>,
    /// `chat_template.jinja` text.
    pub chat_template_jinja: Option<String>,
    /// `chat_template.json` document (`{"chat_template": ...}`).
    pub chat_template_json: Option<Value>,
    pub generation_config: Option<Value>,
}

/// Build a [`TokenizerSpec`] from HF tokenizer files: BOS/EOS strings resolved to ids,
/// `add_bos_token`, the chat template, and the `eos_token_id`s of the generation config.
pub fn tokenizer_spec(files: TokenizerFiles) -> Result<TokenizerSpec> {
    let tok: Value =
        serde_json::from_str(&files.tokenizer_json).map_err(|e| Error::format("tokenizer.json", e.to_string()))?;
    let null = Value::Null;
    let cfg = files.tokenizer_config.as_ref().unwrap_or(&null);
    let bos_token = special_token(cfg.get("bos_token"));
    let eos_token = special_token(cfg.get("eos_token"));
    let resolve = |t: &Option<String>, what: &str| -> Result<Option<u32>> {
        match t {
            None => Ok(None),
            Some(s) => token_id(&tok, s).map(Some).ok_or_else(|| {
                Error::format("tokenizer_config.json", format!("{what} `{s}` is not in tokenizer.json"))
            }),
        }
    };
    let bos_id = resolve(&bos_token, "bos_token")?;
    let eos_id = resolve(&eos_token, "eos_token")?;
    let add_bos = match cfg.get("add_bos_token").and_then(Value::as_bool) {
        Some(b) => b,
        None => bos_token.as_deref().is_some_and(|b| post_processor_adds(&tok, b)),
    };
    let chat_template = template_value(cfg.get("chat_template"))
        .or(files.chat_template_jinja)
        .or_else(|| template_value(files.chat_template_json.as_ref()?.get("chat_template")));
    let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
    let gen_eos = files.generation_config.as_ref().and_then(|g| g.get("eos_token_id"));
    let gen_eos: Vec<&Value> = match gen_eos {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) if !v.is_null() => vec![v],
        _ => vec![],
    };
    for v in gen_eos {
        let id = v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| Error::format("generation_config.json", format!("eos_token_id {v} is not a token id")))?;
        if !eos_ids.contains(&id) {
            eos_ids.push(id);
        }
    }
    Ok(TokenizerSpec { json: files.tokenizer_json, add_bos, bos_id, bos_token, eos_ids, eos_token, chat_template })
}

/// One flat image-processor object from `preprocessor_config.json` (`pre`) and
/// `processor_config.json` (`proc`): `pre`'s fields, then `proc`'s top-level fields other than
/// nested sub-processor objects (`patch_size`, `vision_feature_select_strategy`, ...), then the
/// fields of `proc.image_processor`, later ones winning (transformers prefers the nested config).
/// `None` when neither file exists; an error naming the file when one is not a JSON object.
pub fn merge_preprocessor(pre: Option<Value>, proc: Option<Value>) -> Result<Option<Value>> {
    if pre.is_none() && proc.is_none() {
        return Ok(None);
    }
    let object = |v: Value, file: &str| match v {
        Value::Object(m) => Ok(m),
        _ => Err(Error::format(file, "not a JSON object")),
    };
    let mut out = match pre {
        Some(v) => object(v, "preprocessor_config.json")?,
        None => serde_json::Map::new(),
    };
    if let Some(v) = proc {
        let mut proc = object(v, "processor_config.json")?;
        let nested = match proc.remove("image_processor") {
            Some(v) => Some(object(v, "processor_config.json: image_processor")?),
            None => None,
        };
        for (k, v) in proc {
            let sub_processor = v.is_object() && (k.ends_with("_processor") || k.ends_with("tokenizer"));
            if !sub_processor {
                out.insert(k, v);
            }
        }
        out.extend(nested.into_iter().flatten());
    }
    Ok(Some(Value::Object(out)))
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{open_dir, read_preprocessor, read_tokenizer, HfWeights};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;
    use crate::io::safetensors::Header;
    use crate::io::{Checkpoint, Tensor, WeightSource};
    use memmap2::Mmap;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn read_text(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
    }

    fn read_json(path: &Path) -> Result<Value> {
        serde_json::from_str(&read_text(path)?).map_err(|e| Error::format(path.display().to_string(), e.to_string()))
    }

    fn read_opt_json(path: &Path) -> Result<Option<Value>> {
        if path.exists() {
            read_json(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Read the tokenizer files of an HF folder (`tokenizer.json` is required).
    pub fn read_tokenizer(dir: &Path) -> Result<TokenizerSpec> {
        let jinja = dir.join("chat_template.jinja");
        let files = TokenizerFiles {
            tokenizer_json: read_text(&dir.join("tokenizer.json"))?,
            tokenizer_config: read_opt_json(&dir.join("tokenizer_config.json"))?,
            chat_template_jinja: if jinja.exists() { Some(read_text(&jinja)?) } else { None },
            chat_template_json: read_opt_json(&dir.join("chat_template.json"))?,
            generation_config: read_opt_json(&dir.join("generation_config.json"))?,
        };
        tokenizer_spec(files)
    }

    /// Open an HF checkpoint folder.
    pub fn open_dir(dir: &Path) -> Result<Checkpoint> {
        let config = read_json(&dir.join("config.json"))?;
        if !config.is_object() {
            return Err(Error::format(dir.join("config.json").display().to_string(), "not a JSON object"));
        }
        let mut config = config;
        let tokenizer = read_tokenizer(dir)?;
        let mut preprocessor = read_preprocessor(dir)?;
        if let Some(tower) = local_tower(dir, &config) {
            // LLaVA's original layout names its CLIP tower's folder in `mm_vision_tower`.
            if config.get("vision_config").is_none() {
                if let Some(vc) = read_opt_json(&tower.join("config.json"))? {
                    config["vision_config"] = vc;
                }
            }
            if preprocessor.is_none() {
                preprocessor = read_preprocessor(&tower)?;
            }
        }
        let weights = HfWeights::open(dir)?;
        Ok(Checkpoint { config, tokenizer, weights: Box::new(weights), preprocessor })
    }

    /// The folder `mm_vision_tower` names, when it is a plain relative path inside `dir`.
    fn local_tower(dir: &Path, config: &Value) -> Option<std::path::PathBuf> {
        let name = config.get("mm_vision_tower")?.as_str()?;
        let rel = Path::new(name);
        let plain = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let path = dir.join(rel);
        (plain && path.is_dir()).then_some(path)
    }

    /// `preprocessor_config.json` and `processor_config.json`, merged ([`merge_preprocessor`]).
    pub fn read_preprocessor(dir: &Path) -> Result<Option<Value>> {
        let pre = read_opt_json(&dir.join("preprocessor_config.json"))?;
        let proc = read_opt_json(&dir.join("processor_config.json"))?;
        merge_preprocessor(pre, proc).map_err(|e| match e {
            Error::Format { what, msg } => Error::format(dir.join(what).display().to_string(), msg),
            e => e,
        })
    }

    /// Memory-mapped safetensors files of an HF folder; dense F32/F16/BF16 tensors → f32.
    pub struct HfWeights {
        files: Vec<(Mmap, Header)>,
        /// name → index into `files`
        index: BTreeMap<String, usize>,
    }

    fn map_file(path: &Path) -> Result<(Mmap, Header)> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; checkpoint files are not modified while open.
        let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
        let header = Header::parse(&path.display().to_string(), &map)?;
        Ok((map, header))
    }

    impl HfWeights {
        /// `model.safetensors`, or the shards that `model.safetensors.index.json` names.
        pub fn open(dir: &Path) -> Result<HfWeights> {
            let single = dir.join("model.safetensors");
            let index_path = dir.join("model.safetensors.index.json");
            let (names, weight_map) = if single.exists() {
                (vec!["model.safetensors".to_string()], None)
            } else if index_path.exists() {
                let idx = read_json(&index_path)?;
                let wm = idx
                    .get("weight_map")
                    .and_then(Value::as_object)
                    .ok_or_else(|| Error::format(index_path.display().to_string(), "no `weight_map` object"))?;
                let mut wm_s = BTreeMap::new();
                for (k, v) in wm {
                    let f = v.as_str().filter(|f| !f.contains('/') && !f.contains('\\'));
                    let f = f.ok_or_else(|| {
                        Error::format(index_path.display().to_string(), format!("bad file for `{k}`: {v}"))
                    })?;
                    wm_s.insert(k.clone(), f.to_string());
                }
                let mut files: Vec<String> = wm_s.values().cloned().collect();
                files.sort();
                files.dedup();
                (files, Some(wm_s))
            } else {
                return Err(Error::format(
                    dir.display().to_string(),
                    "no model.safetensors or model.safetensors.index.json",
                ));
            };
            let mut files = Vec::new();
            let mut index = BTreeMap::new();
            for (i, name) in names.iter().enumerate() {
                let (map, header) = map_file(&dir.join(name))?;
                for t in &header.tensors {
                    if let Some(prev) = index.insert(t.name.clone(), i) {
                        return Err(Error::format(
                            &header.file,
                            format!("tensor `{}` also in {}", t.name, names[prev]),
                        ));
                    }
                }
                files.push((map, header));
            }
            for (k, f) in weight_map.iter().flatten() {
                let found = index.get(k).map(|&i| &names[i]);
                if found != Some(f) {
                    return Err(Error::format(
                        index_path.display().to_string(),
                        format!("weight_map puts `{k}` in {f}, but it is not there"),
                    ));
                }
            }
            Ok(HfWeights { files, index })
        }

        fn entry(&self, name: &str) -> Result<&(Mmap, Header)> {
            let i = self.index.get(name).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
            Ok(&self.files[*i])
        }
    }

    impl WeightSource for HfWeights {
        fn names(&self) -> Vec<String> {
            self.index.keys().cloned().collect()
        }
        fn shape(&self, name: &str) -> Result<Vec<usize>> {
            Ok(self.entry(name)?.1.info(name)?.shape.clone())
        }
        fn load(&self, name: &str) -> Result<Tensor> {
            let (map, header) = self.entry(name)?;
            let shape = header.info(name)?.shape.clone();
            Ok(Tensor::f32(shape, header.to_f32(map, name)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preprocessor_files_merge() {
        assert_eq!(merge_preprocessor(None, None).unwrap(), None);
        let pre = json!({"crop_size": 224, "size": 224, "image_processor_type": "CLIPImageProcessor"});
        let proc = json!({
            "image_processor": {"crop_size": {"height": 336, "width": 336}},
            "tokenizer": {"x": 1},
            "patch_size": 14,
            "processor_class": "LlavaProcessor"
        });
        let m = merge_preprocessor(Some(pre.clone()), Some(proc)).unwrap().unwrap();
        // Nested image-processor fields win, processor fields are kept, sub-processors dropped.
        assert_eq!(m["crop_size"], json!({"height": 336, "width": 336}));
        assert_eq!(m["size"], 224);
        assert_eq!(m["patch_size"], 14);
        assert!(m.get("tokenizer").is_none() && m.get("image_processor").is_none());
        assert_eq!(merge_preprocessor(Some(pre), None).unwrap().unwrap()["size"], 224);
        let e = merge_preprocessor(None, Some(json!([1]))).unwrap_err().to_string();
        assert!(e.contains("processor_config.json"), "{e}");
    }
}
