//! Chat templates: the model's own Jinja template rendered with minijinja, with the
//! functions HF templates use (`raise_exception`, `strftime_now`) and `tojson`.

use crate::error::Result;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// Render `messages` with `template`. `add_generation_prompt` appends the assistant header.
/// `bos_token` / `eos_token` are exposed to the template as HF does.
pub fn render(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let _ = (template, messages, add_generation_prompt, bos_token, eos_token);
    todo!()
}
