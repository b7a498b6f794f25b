//! Tokenizer glue over the `tokenizers` crate: encode with the model's BOS policy, decode,
//! and incremental (streaming) decoding that never splits a UTF-8 character.

use crate::error::{Error, Result};
use crate::io::TokenizerSpec;
use std::str::FromStr;

pub struct Tokenizer {
    pub inner: tokenizers::Tokenizer,
    pub spec: TokenizerSpec,
    /// `inner` with special-token parsing off, made the first time user text holds control-token
    /// text ([`Tokenizer::encode_literal`]).
    literal: std::sync::OnceLock<tokenizers::Tokenizer>,
}

impl Tokenizer {
    /// Build from a spec whose `json` is an HF `tokenizer.json` document.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_str(&spec.json)
            .map_err(|e| Error::Tokenizer(format!("cannot load tokenizer.json: {e}")))?;
        if let Some(b) = spec.bos_id {
            if inner.id_to_token(b).is_none() {
                return Err(Error::Tokenizer(format!("BOS id {b} is not in the vocabulary")));
            }
        }
        Ok(Tokenizer { inner, spec, literal: std::sync::OnceLock::new() })
    }

    /// Encode text. Special-token strings in `text` (`<|im_start|>`) map to their ids: for
    /// prompts and templates; user text goes through [`Tokenizer::encode_literal`].
    /// BOS is prepended only when `add_bos` is true *and* the spec says the tokenizer adds it
    /// (and the text does not already start with it).
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        // `add_special_tokens = false`: the BOS policy is ours, not the post-processor's.
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(format!("encode: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if let (true, true, Some(bos)) = (add_bos, self.spec.add_bos, self.spec.bos_id) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Encode user text with no special-token parsing: `<eos>` or `<|im_start|>` in it become
    /// the tokens of that text, never the control ids (no BOS).
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        let t = self.literal.get_or_init(|| {
            let mut t = self.inner.clone();
            t.set_encode_special_tokens(true);
            t
        });
        let enc = t.encode(text, false).map_err(|e| Error::Tokenizer(format!("encode: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Whether any of `texts` holds the text of a control token: a special added token (`<eos>`,
    /// `<end_of_turn>`, `<|im_start|>`, `<image>` in llava-hf tokenizers) or the BOS / EOS string.
    pub fn has_control_text(&self, texts: &[String]) -> bool {
        let added = self.inner.get_added_tokens_decoder(); // a copy: taken once for all texts
        let spec = [self.spec.bos_token.as_deref(), self.spec.eos_token.as_deref()];
        let controls: Vec<&str> = (added.values().filter(|t| t.special).map(|t| t.content.as_str()))
            .chain(spec.into_iter().flatten())
            .filter(|c| !c.is_empty())
            .collect();
        texts.iter().any(|t| controls.iter().any(|c| t.contains(c)))
    }

    /// Decode ids to text (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer(format!("decode: {e}")))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.spec.eos_ids.contains(&id)
    }
}

/// Turns a stream of token ids into a stream of text pieces. Each `push` returns the new text
/// that is complete (no partial UTF-8 sequence is ever emitted).
pub struct StreamDecoder {
    ids: Vec<u32>,
    /// Start of the decoding window: a few tokens before `read`, so decoder rules that look
    /// at neighbours (SentencePiece's leading-space strip) see the same context.
    prefix: usize,
    /// Tokens before this have been emitted.
    read: usize,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder { ids: Vec::new(), prefix: 0, read: 0 }
    }

    /// The window `ids[prefix..]` decoded, minus the already emitted `ids[prefix..read]`
    /// (text-generation-inference's incremental decoding). A trailing U+FFFD means an
    /// incomplete UTF-8 sequence that later tokens complete, so nothing is emitted then.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let Some(new) = now.get(before.len()..) else {
            return Ok(String::new());
        };
        let new = new.to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(new)
    }

    /// What is still held back at the end of generation (an incomplete character),
    /// decoded lossily so nothing is silently dropped.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        let rest = now.get(before.len()..).unwrap_or("").to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(rest)
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}
