//! Chat turns that show images, rendered with the model's chat template the way
//! transformers' processors call `apply_chat_template`: every message's `content` is a list
//! of parts, one `{"type": "image"}` per image and then `{"type": "text", "text": ...}`
//! (`processing_utils.ProcessorMixin.apply_chat_template`). The template writes one image
//! token (`<image>`) per image part; the engine expands it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A chat message with `images` images shown with its text.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatTurn {
    pub role: String,
    pub text: String,
    #[serde(default)]
    pub images: usize,
}

/// Render `turns` with `template` (assistant header appended), in the environment of
/// [`crate::chat::environment`].
pub fn render_turns(template: &str, turns: &[ChatTurn], bos_token: &str, eos_token: &str) -> Result<String> {
    let messages: Vec<serde_json::Value> = turns
        .iter()
        .map(|t| {
            let mut parts = vec![serde_json::json!({"type": "image"}); t.images];
            parts.push(serde_json::json!({"type": "text", "text": t.text}));
            serde_json::json!({"role": t.role, "content": parts})
        })
        .collect();
    let env = crate::chat::environment();
    let ctx = minijinja::context! {
        messages => minijinja::Value::from_serialize(&messages),
        add_generation_prompt => true,
        bos_token => bos_token,
        eos_token => eos_token,
    };
    env.render_str(template, ctx).map_err(|e| Error::Template(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_parts_reach_the_template() {
        let tpl = "{% for m in messages %}{{ m.role }}:{% for c in m.content %}{% if c.type == 'image' %}<image>{% else %}{{ c.text }}{% endif %}{% endfor %}|{% endfor %}";
        let turns = [
            ChatTurn { role: "user".into(), text: "hi".into(), images: 2 },
            ChatTurn { role: "assistant".into(), text: "ok".into(), images: 0 },
        ];
        assert_eq!(render_turns(tpl, &turns, "", "").unwrap(), "user:<image><image>hi|assistant:ok|");
        assert!(render_turns("{{ raise_exception('no') }}", &turns, "", "").is_err());
    }
}
