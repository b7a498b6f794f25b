//! Tokenizers rebuilt from GGUF metadata, checked against references:
//! - SmolLM2's GGUF against transformers' ids for the milestone prompt;
//! - llama.cpp's vocab test cases (`models/ggml-vocab-*.gguf` + `.inp` / `.out`, whose ids
//!   were produced by HF `AutoTokenizer.encode(text, add_special_tokens=False)`), taken from
//!   the llama-cpp-python 0.3.36 sdist by `tests/fixtures/make_gguf_fixtures.py`.

use std::path::{Path, PathBuf};
use webvlm::io::gguf::{open_file, reader, tokenizer as gguf_tok};
use webvlm::tokenizer::{StreamDecoder, Tokenizer};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn smollm2() -> Tokenizer {
    let p = root().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        panic!("{} not found: run `npm test` or `bash scripts/setup.sh` first (it fetches the model)", p.display());
    }
    Tokenizer::from_spec(open_file(&p).unwrap().tokenizer).unwrap()
}

#[test]
fn smollm2_prompt_ids() {
    let t = smollm2();
    assert_eq!(t.encode("The capital of France is", false).unwrap(), vec![504, 3575, 282, 4649, 314]);
    // SmolLM2's GGUF says add_bos_token = false: asking for BOS adds nothing.
    assert!(!t.spec.add_bos);
    assert_eq!(t.encode("The capital of France is", true).unwrap(), vec![504, 3575, 282, 4649, 314]);
    assert_eq!(t.spec.bos_id, Some(1));
    assert_eq!(t.spec.eos_ids, vec![2]);
    assert_eq!(t.spec.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(t.spec.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert_eq!(t.vocab_size(), 49152);
}

#[test]
fn smollm2_specials_digits_and_decode() {
    let t = smollm2();
    let ids = t.encode("<|im_start|>user\nHi 2024!<|im_end|>\n", false).unwrap();
    assert_eq!(ids[0], 1, "{ids:?}");
    assert!(ids.contains(&2));
    // StarCoder-style pre-tokenizer: every digit on its own.
    let digits = t.encode("2024", false).unwrap();
    assert_eq!(digits.len(), 4, "{digits:?}");
    assert_eq!(t.decode(&ids).unwrap(), "user\nHi 2024!\n", "specials are skipped on decode");
    assert!(t.is_eos(2) && !t.is_eos(1));
}

/// Stream `text`'s ids through a [`StreamDecoder`]; the pieces must be whole characters
/// and add up to the full decode.
fn check_stream(t: &Tokenizer, text: &str) {
    let ids = t.encode(text, false).unwrap();
    let mut dec = StreamDecoder::new();
    let mut pieces = Vec::new();
    for &id in &ids {
        pieces.push(dec.push(t, id).unwrap());
    }
    assert_eq!(dec.finish(t).unwrap(), "");
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), t.decode(&ids).unwrap());
    // Emoji/CJK bytes span several byte tokens, so some pushes must hold back.
    assert!(pieces.iter().any(|p| p.is_empty()), "{pieces:?}");
}

#[test]
fn stream_decoder_emits_only_whole_characters() {
    let t = smollm2();
    let text = "héllo ✓ 你好世界 🎉🎉 done";
    check_stream(&t, text);
    assert_eq!(t.decode(&t.encode(text, false).unwrap()).unwrap(), text);
}

#[test]
fn stream_decoder_sentencepiece_spaces_and_byte_fallback() {
    let path = committed().join("ggml-vocab-llama-spm.gguf");
    let buf = std::fs::read(&path).unwrap();
    let spec = gguf_tok::spec(&reader::parse(&buf, "llama-spm").unwrap(), "llama-spm").unwrap();
    let t = Tokenizer::from_spec(spec).unwrap();
    let text = "Hello  world,\n  héllo 🎉 ок";
    check_stream(&t, text);
    assert_eq!(t.decode(&t.encode(text, false).unwrap()).unwrap(), text);
}

#[test]
fn tiny_tokenizer_bos_and_added_tokens() {
    let p = root().join("tests/fixtures/gguf/tiny-llama.gguf");
    let t = Tokenizer::from_spec(open_file(&p).unwrap().tokenizer).unwrap();
    let start = t.inner.token_to_id("<|im_start|>").unwrap();
    let tool = t.inner.token_to_id("<tool>").unwrap();
    let the = t.inner.token_to_id("Ġthe").unwrap();
    assert!(t.spec.add_bos);
    let ids = t.encode(" the<tool> the", true).unwrap();
    assert_eq!(ids, vec![start, the, tool, the]);
    assert_eq!(t.encode(" the", false).unwrap(), vec![the]);
    // Text already starting with BOS gets no second one.
    assert_eq!(t.encode("<|im_start|> the", true).unwrap(), vec![start, the]);
    // The stand-alone tokenizer.json prepends BOS itself too (TemplateProcessing).
    assert_eq!(t.inner.encode(" the", true).unwrap().get_ids(), &[start, the]);
    // User-defined tokens are kept on decode, control tokens skipped.
    assert_eq!(t.decode(&ids).unwrap(), " the<tool> the");
}

/// One vocab test set: (input texts, expected ids), split as test-tokenizer-0.cpp does.
fn vocab_cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(k) => {
                texts.push(inp[pos..pos + k].to_string());
                pos += k + sep.len();
            }
            None => {
                texts.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    texts.into_iter().zip(ids).collect()
}

fn check_vocab(dir: &Path, name: &str) {
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    let buf = std::fs::read(&path).unwrap();
    let h = reader::parse(&buf, &path.display().to_string()).unwrap();
    let spec = gguf_tok::spec(&h, name).unwrap();
    let t = Tokenizer::from_spec(spec).unwrap();
    let mut failures = Vec::new();
    let cases = vocab_cases(dir, name);
    assert!(cases.len() >= 30, "{name}: only {} cases", cases.len());
    for (text, want) in &cases {
        let got = t.inner.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        if &got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn committed() -> PathBuf {
    root().join("tests/fixtures/vocab")
}

#[test]
fn vocab_gpt2() {
    check_vocab(&committed(), "gpt-2");
}

#[test]
fn vocab_starcoder() {
    check_vocab(&committed(), "starcoder");
}

#[test]
fn vocab_llama_spm() {
    check_vocab(&committed(), "llama-spm");
}

/// The large vocabularies are not committed; make_gguf_fixtures.py puts them here. Their tests
/// are `#[ignore]`d so the default suite never passes them vacuously: run them with
/// `python3 tests/fixtures/make_gguf_fixtures.py && cargo test --release --test suite tokenizer:: -- --ignored`.
fn large(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("WEBVLM_VOCAB_DIR").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/tmp-gguf/vocab"));
    assert!(
        dir.join(format!("ggml-vocab-{name}.gguf")).exists(),
        "ggml-vocab-{name}.gguf not in {} (run tests/fixtures/make_gguf_fixtures.py)",
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs the large vocab files from make_gguf_fixtures.py"]
fn vocab_llama_bpe() {
    check_vocab(&large("llama-bpe"), "llama-bpe");
}

#[test]
#[ignore = "needs the large vocab files from make_gguf_fixtures.py"]
fn vocab_qwen2() {
    check_vocab(&large("qwen2"), "qwen2");
}
