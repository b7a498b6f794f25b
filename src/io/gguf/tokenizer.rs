//! The tokenizer embedded in a GGUF (`tokenizer.ggml.*`) rebuilt as an HF `tokenizer.json`.
//!
//! - `gpt2` (byte-level BPE): vocab + merges, with the pre-tokenizer llama.cpp selects from
//!   `tokenizer.ggml.pre` (`llama-vocab.cpp`, `llm_tokenizer_bpe`), written the way the
//!   original HF `tokenizer.json` of those models writes it (`ByteLevel`'s GPT-2 regex,
//!   `Digits` for StarCoder/SmolLM, a `Split` regex for Llama-3/Qwen2).
//! - `llama` (SentencePiece BPE with byte fallback): merges rebuilt from token scores the way
//!   transformers' `SentencePieceExtractor` does, with the Llama-2 `tokenizer.json` layout.
//!
//! Token types (llama.cpp `llama_token_type`): control and unknown tokens become special
//! added tokens, user-defined tokens non-special added tokens.

use super::reader::{GgufHeader, MetaValue};
use crate::error::{Error, Result};
use crate::io::TokenizerSpec;
use serde_json::{json, Map, Value};

const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// Llama-3's pattern (from its `tokenizer.json`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pattern (Llama-3's with single digits).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer family of a `tokenizer.ggml.pre` value, and whether BPE ignores merges
/// for words already in the vocabulary (llama.cpp's `ignore_merges`).
fn pre_tokenizer(pre: &str, what: &str) -> Result<(Value, bool)> {
    let byte_level =
        |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    let seq = |v: Vec<Value>| json!({"type": "Sequence", "pretokenizers": v});
    Ok(match pre {
        "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "exaone4" | "roberta-bpe" => (byte_level(true), false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => (
            seq(vec![json!({"type": "Digits", "individual_digits": true}), byte_level(true)]),
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "default" | "dbrx" | "smaug-bpe" => {
            (seq(vec![split(LLAMA3_SPLIT), byte_level(false)]), !matches!(pre, "dbrx" | "smaug-bpe" | "default"))
        }
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" => (seq(vec![split(QWEN2_SPLIT), byte_level(false)]), false),
        other => {
            return Err(Error::Unsupported(format!(
                "{what}: tokenizer.ggml.pre = `{other}` (supported: gpt-2, smollm/starcoder, llama-bpe/llama3, qwen2 families)"
            )))
        }
    })
}

/// The string array `key`, or a format error.
fn strings<'a>(h: &'a GgufHeader, key: &str, what: &str) -> Result<Vec<&'a str>> {
    let arr = h
        .get(key)
        .and_then(MetaValue::as_array)
        .ok_or_else(|| Error::format(what, format!("metadata `{key}` is missing or not an array")))?;
    arr.iter().map(|v| v.as_str().ok_or_else(|| Error::format(what, format!("`{key}` holds a non-string")))).collect()
}

/// Token types, one per token (all normal when the key is absent).
fn token_types(h: &GgufHeader, n: usize, what: &str) -> Result<Vec<i64>> {
    let Some(arr) = h.get("tokenizer.ggml.token_type").and_then(MetaValue::as_array) else {
        return Ok(vec![1; n]);
    };
    if arr.len() != n {
        return Err(Error::format(what, format!("{} token types for {n} tokens", arr.len())));
    }
    arr.iter()
        .map(|v| v.as_i64().ok_or_else(|| Error::format(what, "tokenizer.ggml.token_type holds a non-integer")))
        .collect()
}

fn id(h: &GgufHeader, key: &str, n: usize) -> Option<u32> {
    let v = h.get(key)?.as_i64()?;
    (0..n as i64).contains(&v).then_some(v as u32)
}

/// Vocabulary map; duplicate strings keep their first id (HF's vocab is a map).
fn vocab_map(tokens: &[&str]) -> Map<String, Value> {
    let mut vocab = Map::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.to_string()).or_insert(json!(i));
    }
    vocab
}

fn added_tokens(tokens: &[&str], types: &[i64]) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, (t, ty)) in tokens.iter().zip(types).enumerate() {
        let special = match *ty {
            TYPE_CONTROL | TYPE_UNKNOWN => true,
            TYPE_USER_DEFINED => false,
            _ => continue,
        };
        out.push(json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": special}));
    }
    out
}

/// `TemplateProcessing` that prepends BOS, or the model's plain post-processor.
fn post_processor(bos: Option<(u32, &str)>, plain: Value) -> Value {
    match bos {
        None => plain,
        Some((id, tok)) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": tok, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tok: {"id": tok, "ids": [id], "tokens": [tok]}}
        }),
    }
}

fn gpt2_json(h: &GgufHeader, tokens: &[&str], types: &[i64], bos: Option<(u32, &str)>, what: &str) -> Result<Value> {
    let pre = h.get("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
    let (pre_tok, ignore_merges) = pre_tokenizer(pre, what)?;
    let merges = strings(h, "tokenizer.ggml.merges", what)?;
    for m in &merges {
        if m.split(' ').count() != 2 {
            return Err(Error::format(what, format!("merge `{m}` is not two space-separated tokens")));
        }
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": pre_tok,
        "post_processor": post_processor(bos, json!({"type": "ByteLevel", "add_prefix_space": true,
                                                      "trim_offsets": false, "use_regex": true})),
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": ignore_merges, "vocab": vocab_map(tokens), "merges": merges}
    }))
}

/// Merges of a SentencePiece BPE vocabulary from its scores: every split of every token into
/// two tokens, ordered by the merged token's score (highest first), ties in vocabulary order,
/// as transformers' `SentencePieceExtractor.extract` does.
fn spm_merges(tokens: &[&str], scores: &[f32], vocab: &Map<String, Value>) -> Vec<String> {
    let mut merges: Vec<(f32, u64, u64, String)> = Vec::new();
    for (t, &score) in tokens.iter().zip(scores) {
        let mut local = Vec::new();
        for (k, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(k);
            if let (Some(il), Some(ir)) = (vocab.get(l), vocab.get(r)) {
                local.push((score, il.as_u64().unwrap_or(0), ir.as_u64().unwrap_or(0), format!("{l} {r}")));
            }
        }
        local.sort_by_key(|m| (m.1, m.2));
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    merges.into_iter().map(|m| m.3).collect()
}

fn spm_json(h: &GgufHeader, tokens: &[&str], types: &[i64], bos: Option<(u32, &str)>, what: &str) -> Result<Value> {
    let scores: Vec<f32> = match h.get("tokenizer.ggml.scores").and_then(MetaValue::as_array) {
        Some(a) if a.len() == tokens.len() => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
        _ => return Err(Error::format(what, "tokenizer.ggml.scores missing or of the wrong length")),
    };
    let vocab = vocab_map(tokens);
    let merges = spm_merges(tokens, &scores, &vocab);
    let unk = id(h, "tokenizer.ggml.unknown_token_id", tokens.len()).map(|i| tokens[i as usize]);
    let prefix = h.get("tokenizer.ggml.add_space_prefix").and_then(MetaValue::as_bool).unwrap_or(true);
    let mut norm = Vec::new();
    if prefix {
        norm.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
    }
    norm.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    let mut dec = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": norm},
        "pre_tokenizer": null,
        "post_processor": post_processor(bos, Value::Null),
        "decoder": {"type": "Sequence", "decoders": dec},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    }))
}

/// The GGUF's tokenizer as a [`TokenizerSpec`] whose `json` is a complete `tokenizer.json`.
pub fn spec(h: &GgufHeader, what: &str) -> Result<TokenizerSpec> {
    let model = h
        .get("tokenizer.ggml.model")
        .and_then(MetaValue::as_str)
        .ok_or_else(|| Error::format(what, "metadata `tokenizer.ggml.model` is missing (no embedded tokenizer)"))?;
    let tokens = strings(h, "tokenizer.ggml.tokens", what)?;
    let n = tokens.len();
    let types = token_types(h, n, what)?;
    let bos_id = id(h, "tokenizer.ggml.bos_token_id", n);
    let eos_id = id(h, "tokenizer.ggml.eos_token_id", n);
    let default_bos = model == "llama"
        || matches!(
            h.get("tokenizer.ggml.pre").and_then(MetaValue::as_str),
            Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral")
        );
    let add_bos =
        h.get("tokenizer.ggml.add_bos_token").and_then(MetaValue::as_bool).unwrap_or(default_bos) && bos_id.is_some();
    let bos = bos_id.filter(|_| add_bos).map(|i| (i, tokens[i as usize]));
    let doc = match model {
        "gpt2" => gpt2_json(h, &tokens, &types, bos, what)?,
        "llama" => spm_json(h, &tokens, &types, bos, what)?,
        other => {
            return Err(Error::Unsupported(format!(
                "{what}: tokenizer.ggml.model = `{other}` (supported: gpt2, llama)"
            )))
        }
    };
    let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
    if let Some(eot) = id(h, "tokenizer.ggml.eot_token_id", n) {
        if !eos_ids.contains(&eot) {
            eos_ids.push(eot);
        }
    }
    Ok(TokenizerSpec {
        json: doc.to_string(),
        add_bos,
        bos_id,
        bos_token: bos_id.map(|i| tokens[i as usize].to_string()),
        eos_ids,
        eos_token: eos_id.map(|i| tokens[i as usize].to_string()),
        chat_template: h.get("tokenizer.chat_template").and_then(MetaValue::as_str).map(str::to_string),
    })
}
