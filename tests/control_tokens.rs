//! User text never becomes control tokens: a message that types a special token's text
//! (`<|im_start|>`, `<end_of_turn>`, `</s>`, `<image>`, ...) gets the tokens of that text, so the
//! prompt holds exactly the control ids the chat template writes for a harmless message. For
//! every tokenizer family the tests have a model of: SmolLM2 (GPT-2 byte-level BPE, ChatML), the
//! LLaVA fixtures (Llama and Mistral SentencePiece, Gemma, SigLIP-LLaVA).
use std::collections::BTreeMap;
use std::path::PathBuf;
use webvlm::chat::Message;
use webvlm::engine::Engine;
use webvlm::model::LoadOptions;
use webvlm::vision::prompt::ChatTurn;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The models present: SmolLM2 (downloaded by the set-up) and the committed LLaVA fixtures.
fn models() -> Vec<PathBuf> {
    let mut v = vec![root().join(".cache/models/smollm2-135m-int4")];
    for f in ["llava15-llama", "llavanext-mistral", "llava-gemma", "llava-siglip"] {
        v.push(root().join("tests/fixtures/llava").join(f));
    }
    assert!(v[0].exists(), "{} is missing: run `npm test` once (its set-up downloads it)", v[0].display());
    v.into_iter().filter(|p| p.exists()).collect()
}

/// The text of every special token of the engine's tokenizer, plus `<image>`.
fn control_texts(e: &Engine) -> Vec<String> {
    let mut v: Vec<String> = e
        .tokenizer()
        .inner
        .get_added_tokens_decoder()
        .values()
        .filter(|t| t.special && !t.content.is_empty())
        .map(|t| t.content.clone())
        .collect();
    v.push("<image>".into());
    v.sort();
    v.dedup();
    v
}

/// How often each special id (and LLaVA's -200 image slot) occurs in `ids`.
fn control_counts(e: &Engine, ids: &[u32]) -> BTreeMap<u32, usize> {
    let special: Vec<u32> =
        e.tokenizer().inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(&id, _)| id).collect();
    let mut m = BTreeMap::new();
    for &id in ids.iter().filter(|id| special.contains(id) || **id == webvlm::model::llava::ORIGINAL_IMAGE_TOKEN) {
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

fn prompt(e: &Engine, text: &str) -> Vec<u32> {
    if e.llava().is_some() {
        let turn = ChatTurn { role: "user".into(), text: text.into(), images: 1 };
        e.chat_prompt_ids_with_images(&[turn]).unwrap()
    } else {
        e.chat_prompt_ids(&[Message { role: "user".into(), content: text.into() }]).unwrap()
    }
}

#[test]
fn typed_control_tokens_stay_text() {
    for dir in models() {
        let e = Engine::new(webvlm::io::open(&dir).unwrap(), &LoadOptions::default()).unwrap();
        let benign = control_counts(&e, &prompt(&e, "hello there"));
        let texts = control_texts(&e);
        assert!(texts.len() > 1, "{}: no special tokens found", dir.display());
        for t in &texts {
            for msg in [format!("hello {t} there"), t.clone(), format!(" {t}\n")] {
                let ids = prompt(&e, &msg);
                assert_eq!(
                    control_counts(&e, &ids),
                    benign,
                    "{}: the message {msg:?} changed the prompt's control tokens",
                    dir.display()
                );
                let text = e.tokenizer().decode(&ids).unwrap();
                assert!(text.contains(t.as_str()), "{}: {t:?} is not in the prompt's text {text:?}", dir.display());
            }
        }
        // Every turn is guarded, the assistant's too (a reply could quote a control token).
        if e.llava().is_none() {
            let msgs = [
                Message { role: "user".into(), content: "hi".into() },
                Message { role: "assistant".into(), content: format!("x{}y", texts[0]) },
                Message { role: "user".into(), content: "ok".into() },
            ];
            let plain = [
                Message { role: "user".into(), content: "hi".into() },
                Message { role: "assistant".into(), content: "xy".into() },
                Message { role: "user".into(), content: "ok".into() },
            ];
            assert_eq!(
                control_counts(&e, &e.chat_prompt_ids(&msgs).unwrap()),
                control_counts(&e, &e.chat_prompt_ids(&plain).unwrap())
            );
        }
    }
}

#[test]
fn harmless_text_tokenizes_as_before() {
    // The guarded path is taken only for text holding control-token text: other prompts are
    // rendered and tokenized in one piece, as transformers does (the goldens depend on it).
    for dir in models() {
        let e = Engine::new(webvlm::io::open(&dir).unwrap(), &LoadOptions::default()).unwrap();
        if e.llava().is_some() {
            continue;
        }
        let m = [Message { role: "user".into(), content: "What is the capital of France?".into() }];
        let spec = &e.tokenizer().spec;
        let (bos, eos) = (spec.bos_token.as_deref().unwrap_or(""), spec.eos_token.as_deref().unwrap_or(""));
        let text = webvlm::chat::render(spec.chat_template.as_deref().unwrap(), &m, true, bos, eos).unwrap();
        assert_eq!(e.chat_prompt_ids(&m).unwrap(), e.tokenizer().encode(&text, false).unwrap());
    }
}
