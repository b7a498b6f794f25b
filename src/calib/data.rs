//! Calibration and evaluation text. `--calibrate FILE` reads a UTF-8 text file (a folder is an
//! image set for LLaVA models, [`super::images`]; on a LLaVA `builtin` is the built-in image set
//! plus this prose, [`super::vlm`]); `builtin`
//! builds a set at run time from the prose CPython ships in `pydoc_data.topics` (the help
//! texts of `help("topic")`, read through the `python3` on the machine): the topics sorted by
//! name, shuffled with a fixed seed, the first part for calibration and the rest held out.
//! A file is split the same way by paragraphs (blank lines). Calibration and held-out text
//! never share a topic / paragraph.

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use std::path::PathBuf;

/// Seed of the built-in set's shuffle.
pub const BUILTIN_SEED: u64 = 20231;
/// Share of topics / paragraphs used for calibration; the rest is held out.
pub const CALIB_SHARE: f64 = 0.75;

/// Where text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextSpec {
    Builtin,
    File(PathBuf),
    /// A folder of images with prompts ([`super::images`]; LLaVA models).
    Images(PathBuf),
}

impl std::str::FromStr for TextSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let p = PathBuf::from(s);
        Ok(if s == "builtin" {
            TextSpec::Builtin
        } else if p.is_dir() {
            TextSpec::Images(p)
        } else {
            TextSpec::File(p)
        })
    }
}

/// Calibration and held-out text.
#[derive(Clone, Debug)]
pub struct TextSplit {
    pub calib: String,
    pub heldout: String,
}

/// Load and split the text of `spec`.
pub fn load(spec: &TextSpec) -> Result<TextSplit> {
    let pieces = match spec {
        TextSpec::Builtin => pydoc_topics()?,
        TextSpec::File(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            t.split("\n\n").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        }
        TextSpec::Images(p) => {
            return Err(Error::Invalid(format!(
                "{}: a folder of images calibrates LLaVA models; give a text model a text file or `builtin`",
                p.display()
            )))
        }
    };
    if pieces.len() < 2 {
        return Err(Error::Invalid(format!("{spec:?}: need at least two paragraphs to split calibration / held-out")));
    }
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    if *spec == TextSpec::Builtin {
        let mut rng = Rng::new(BUILTIN_SEED);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    let cut = ((pieces.len() as f64 * CALIB_SHARE).round() as usize).clamp(1, pieces.len() - 1);
    let join = |ix: &[usize]| ix.iter().map(|&i| pieces[i].as_str()).collect::<Vec<_>>().join("\n\n");
    Ok(TextSplit { calib: join(&order[..cut]), heldout: join(&order[cut..]) })
}

/// The topics of CPython's `pydoc_data.topics`, sorted by name.
fn pydoc_topics() -> Result<Vec<String>> {
    let script = "import json, pydoc_data.topics as t; print(json.dumps(sorted(t.topics.items())))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| Error::io("python3 (for the builtin calibration set, CPython's pydoc_data)", e))?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "python3 could not read pydoc_data.topics: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let items: Vec<(String, String)> = serde_json::from_slice(&out.stdout)?;
    Ok(items.into_iter().map(|(_, text)| text).collect())
}

/// Token sequences of `seq_len` (the last may be shorter, at least 2 tokens) from `text`, at
/// most `max_tokens` tokens in all.
pub fn sequences(tok: &Tokenizer, text: &str, seq_len: usize, max_tokens: usize) -> Result<Vec<Vec<u32>>> {
    let ids = tok.encode(text, false)?;
    let ids = &ids[..ids.len().min(max_tokens)];
    let seqs: Vec<Vec<u32>> = ids.chunks(seq_len.max(2)).filter(|c| c.len() >= 2).map(<[u32]>::to_vec).collect();
    if seqs.is_empty() {
        return Err(Error::Invalid(format!("text gives {} tokens, too few to calibrate or evaluate", ids.len())));
    }
    Ok(seqs)
}
