//! Chat template rendering against transformers' behaviour: SmolLM2's own template from its
//! GGUF, and `tests/fixtures/chat_cases.json`, rendered by jinja2 configured exactly as
//! transformers' `_compile_jinja_template` (written by `make_gguf_fixtures.py`).

use std::path::Path;
use webvlm::chat::{self, render, Message};

fn msg(role: &str, content: &str) -> Message {
    Message { role: role.into(), content: content.into() }
}

fn smollm2_template() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        panic!("{} not found: run `npm test` or `bash scripts/setup.sh` first (it fetches the model)", p.display());
    }
    webvlm::io::gguf::open_file(&p).unwrap().tokenizer.chat_template.expect("SmolLM2 ships a chat template")
}

#[test]
fn smollm2_template_with_system_message() {
    let t = smollm2_template();
    let msgs = [msg("system", "You are a concise assistant."), msg("user", "What is the capital of France?")];
    let out = render(&t, &msgs, true, "<|im_start|>", "<|im_end|>").unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn smollm2_template_default_system_prompt() {
    let t = smollm2_template();
    let msgs = [msg("user", "What is the capital of France?")];
    let out = render(&t, &msgs, true, "<|im_start|>", "<|im_end|>").unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let no_gen = render(&t, &msgs, false, "", "").unwrap();
    assert!(no_gen.ends_with("France?<|im_end|>\n"), "{no_gen:?}");
}

#[test]
fn matches_transformers_jinja2_renders() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(cases.len() >= 18);
    for (i, c) in cases.iter().enumerate() {
        let msgs: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
        let got = render(
            c["template"].as_str().unwrap(),
            &msgs,
            c["add_generation_prompt"].as_bool().unwrap(),
            c["bos_token"].as_str().unwrap(),
            c["eos_token"].as_str().unwrap(),
        );
        match (c["expected"].as_str(), c["error"].as_str()) {
            (Some(want), _) => assert_eq!(got.unwrap(), want, "case {i}"),
            (None, Some(err)) => {
                let e = got.expect_err("template should raise").to_string();
                assert!(e.contains(err), "case {i}: {e}");
            }
            _ => panic!("case {i}: neither expected nor error"),
        }
    }
}

#[test]
fn bad_template_is_an_error() {
    let e = render("{% for m in messages %}", &[], false, "", "").unwrap_err();
    assert!(matches!(e, webvlm::Error::Template(_)), "{e}");
}

#[test]
fn strftime_formats_like_python() {
    // Reference strings from Python's datetime.strftime in UTC.
    let s = chat::strftime("%d %e %B %b %Y %y %H:%M:%S %I %p %A %a %j %%", 1_700_000_000).unwrap();
    assert_eq!(s, "14 14 November Nov 2023 23 22:13:20 10 PM Tuesday Tue 318 %");
    let leap = chat::strftime("%d %B %Y %H:%M:%S %A %j", 951_782_400 + 86_399).unwrap();
    assert_eq!(leap, "29 February 2000 23:59:59 Tuesday 060");
    let before = chat::strftime("%d %B %Y %H:%M:%S %A %j", -1).unwrap();
    assert_eq!(before, "31 December 1969 23:59:59 Wednesday 365");
    assert!(chat::strftime("%Q", 0).is_err());
    let now = render("{{ strftime_now('%Y') }}", &[], false, "", "").unwrap();
    assert!(now.parse::<i32>().unwrap() >= 2024);
}

/// `render_apart` keeps user texts apart from the template's text, whatever the template does
/// with whitespace, and refuses a template that rewrites the text.
#[test]
fn render_apart_cuts_user_text_out() {
    let texts = vec![" hi <eos>\n".to_string(), "two".to_string()];
    let run = |tpl: &str| {
        let r = |ts: &[String]| {
            let msgs: Vec<Message> = ts.iter().map(|s| msg("user", s)).collect();
            render(tpl, &msgs, false, "", "")
        };
        chat::render_apart(&texts, &r(&texts)?, r)
    };
    let trimmed = run("{% for m in messages %}<s>{{ m.content | trim }}</s>{% endfor %}").unwrap();
    let want = |v: &[(&str, bool)]| v.iter().map(|(t, l)| (t.to_string(), *l)).collect::<Vec<_>>();
    assert_eq!(
        trimmed,
        want(&[("<s>", false), ("hi <eos>", true), ("</s><s>", false), ("two", true), ("</s>", false)])
    );
    let kept = run("{% for m in messages %}[{{ m.content }}]{% endfor %}").unwrap();
    assert_eq!(kept, want(&[("[ ", false), ("hi <eos>", true), ("\n][", false), ("two", true), ("]", false)]));
    let twice = run("{{ messages[1].content }}{{ messages[1].content }}").unwrap();
    assert_eq!(twice, want(&[("two", true), ("two", true)]));
    let e = run("{% for m in messages %}{{ m.content | upper }}{% endfor %}").unwrap_err().to_string();
    assert!(e.contains("rewrites message text"), "{e}");
    // A user text holding the marker form itself does not confuse the cut.
    let sneaky = vec!["\u{E000}0:0\u{E001}".to_string()];
    let r = |ts: &[String]| render("{{ messages[0].content }}!", &[msg("user", &ts[0])], false, "", "");
    let p = chat::render_apart(&sneaky, &r(&sneaky).unwrap(), r);
    assert_eq!(p.unwrap(), want(&[("\u{E000}0:0\u{E001}", true), ("!", false)]));
    // A text holding every marker from 0 to 20000 (the free one is found in one pass).
    let many = vec![(0..=20_000).map(|k| format!("\u{E000}{k}:")).collect::<String>() + "<eos>"];
    let p = chat::render_apart(&many, &r(&many).unwrap(), r).unwrap();
    assert_eq!(p, want(&[(many[0].as_str(), true), ("!", false)]));
}
