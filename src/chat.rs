//! Chat templates: the model's own Jinja template rendered with minijinja the way
//! transformers' `apply_chat_template` renders it (`utils/chat_template_utils.py`):
//! `trim_blocks` and `lstrip_blocks` on, loop controls, `raise_exception`, `strftime_now`,
//! a `tojson` that writes what Python's `json.dumps(..., ensure_ascii=False)` writes, and
//! Python string / dict / list methods (`.strip()`, `.startswith()`, `.items()`) from
//! `minijinja-contrib`'s pycompat layer.

use crate::error::{Error, Result};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
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
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(template_error)?;
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    };
    tmpl.render(ctx).map_err(template_error)
}

/// A rendered prompt in pieces, `(text, literal)`: literal pieces are user text, to be tokenized
/// without special-token parsing; the others are the template's own text.
pub type Pieces = Vec<(String, bool)>;

/// Render with user `texts` kept apart from the template's text: `render(subs)` renders with
/// each text replaced by a marker (its leading and trailing whitespace kept outside the marker,
/// so a template that trims still trims), the result is cut at the markers, and the texts go
/// back in as literal pieces. `plain` is the prompt rendered with the texts themselves: errors
/// when the pieces do not join to it exactly (a template that rewrites message text, e.g. with
/// `upper`), since the user's control-token text could not then be told from the template's.
pub fn render_apart(texts: &[String], plain: &str, render: impl Fn(&[String]) -> Result<String>) -> Result<Pieces> {
    let open = format!("\u{E000}{}:", absent_marker(texts));
    const CLOSE: char = '\u{E001}';
    let parts: Vec<(&str, &str, &str)> = texts
        .iter()
        .map(|t| {
            let core = t.trim();
            let lead = &t[..t.len() - t.trim_start().len()];
            (lead, core, &t[lead.len() + core.len()..])
        })
        .collect();
    let subs: Vec<String> =
        parts.iter().enumerate().map(|(i, (lead, _, trail))| format!("{lead}{open}{i}{CLOSE}{trail}")).collect();
    let rendered = render(&subs)?;
    let mut pieces: Pieces = Vec::new();
    let mut rest = rendered.as_str();
    while let Some(at) = rest.find(open.as_str()) {
        pieces.push((rest[..at].to_string(), false));
        let tail = &rest[at + open.len()..];
        let end = tail.find(CLOSE).ok_or_else(|| Error::Template("the template cut a message apart".into()))?;
        let i: usize = tail[..end].parse().map_err(|_| Error::Template("the template cut a message apart".into()))?;
        let core = parts.get(i).ok_or_else(|| Error::Template("the template cut a message apart".into()))?.1;
        pieces.push((core.to_string(), true));
        rest = &tail[end + CLOSE.len_utf8()..];
    }
    pieces.push((rest.to_string(), false));
    pieces.retain(|(t, _)| !t.is_empty());
    let joined: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
    if joined != plain {
        return Err(Error::Invalid(
            "a message holds control-token text and the chat template rewrites message text, so that text \
             cannot be kept apart from the template's own control tokens"
                .into(),
        ));
    }
    Ok(pieces)
}

/// The smallest `k` such that no text holds `\u{E000}{k}:`, in one pass over the texts (only the
/// numbers that follow a U+E000 can be taken; trying `k` = 0, 1, ... against every text would be
/// quadratic in a text full of markers).
fn absent_marker(texts: &[String]) -> u64 {
    let mut taken = std::collections::HashSet::new();
    for t in texts {
        for (at, _) in t.match_indices('\u{E000}') {
            let rest = &t[at + '\u{E000}'.len_utf8()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if rest[digits..].starts_with(':') {
                if let Ok(k) = rest[..digits].parse::<u64>() {
                    taken.insert(k);
                }
            }
        }
    }
    (0..).find(|k| !taken.contains(k)).expect("fewer numbers are taken than exist")
}

fn template_error(e: minijinja::Error) -> Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::Template(msg)
}

/// A minijinja environment configured like transformers' `_compile_jinja_template`.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(format)`: the current UTC time formatted with C `strftime` directives.
fn strftime_now(format: String) -> std::result::Result<String, minijinja::Error> {
    strftime(&format, unix_now()).map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e))
}

#[cfg(not(target_arch = "wasm32"))]
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(target_arch = "wasm32")]
fn unix_now() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Format `secs` (Unix time, UTC) with the `strftime` directives templates use
/// (`%d %m %Y %y %B %b %A %a %H %I %M %S %p %j %e %%`).
pub fn strftime(format: &str, secs: i64) -> std::result::Result<String, String> {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    let wd = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let jan1 = days - (0..m as usize - 1).map(|i| month_len(y, i)).sum::<i64>() - (d as i64 - 1);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(k) = chars.next() else {
            return Err("format ends with a lone %".into());
        };
        match k {
            'd' => out.push_str(&format!("{d:02}")),
            'e' => out.push_str(&format!("{d:>2}")),
            'm' => out.push_str(&format!("{m:02}")),
            'Y' => out.push_str(&y.to_string()),
            'y' => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            'B' => out.push_str(MONTHS[m as usize - 1]),
            'b' | 'h' => out.push_str(&MONTHS[m as usize - 1][..3]),
            'A' => out.push_str(DAYS[wd]),
            'a' => out.push_str(&DAYS[wd][..3]),
            'H' => out.push_str(&format!("{hh:02}")),
            'I' => out.push_str(&format!("{:02}", (hh + 11) % 12 + 1)),
            'p' => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            'M' => out.push_str(&format!("{mm:02}")),
            'S' => out.push_str(&format!("{ss:02}")),
            'j' => out.push_str(&format!("{:03}", days - jan1 + 1)),
            '%' => out.push('%'),
            other => return Err(format!("strftime directive %{other} is not supported")),
        }
    }
    Ok(out)
}

fn month_len(y: i64, i: usize) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][i]
}

/// `tojson(indent=None)` as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent)`, so separators are `", "` / `": "`, dict order is kept and nothing is
/// HTML-escaped.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_py_json(&value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn write_py_json(
    v: &Value,
    indent: Option<usize>,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind as K;
    let (open_sep, item_sep, close_sep) = match indent {
        None => (String::new(), ", ".to_string(), String::new()),
        Some(n) => {
            let inner = format!("\n{}", " ".repeat(n * (level + 1)));
            (inner.clone(), format!(",{inner}"), format!("\n{}", " ".repeat(n * level)))
        }
    };
    let is_map = v.kind() == K::Map;
    match v.kind() {
        K::Undefined | K::None => out.push_str("null"),
        K::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        K::Number if v.is_integer() => out.push_str(&v.to_string()),
        K::Number => {
            let f = f64::try_from(v.clone())?;
            out.push_str(&if f.is_finite() { format!("{f:?}") } else { "NaN".into() });
        }
        K::String => out.push_str(&serde_json::Value::String(v.to_string()).to_string()),
        K::Seq | K::Iterable | K::Map => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push(if is_map { '{' } else { '[' });
            if !items.is_empty() {
                out.push_str(&open_sep);
            }
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&item_sep);
                }
                if is_map {
                    out.push_str(&serde_json::Value::String(x.to_string()).to_string());
                    out.push_str(": ");
                    write_py_json(&v.get_item(x)?, indent, level + 1, out)?;
                } else {
                    write_py_json(x, indent, level + 1, out)?;
                }
            }
            if !items.is_empty() {
                out.push_str(&close_sep);
            }
            out.push(if is_map { '}' } else { ']' });
        }
        _ => out.push_str(&serde_json::Value::String(v.to_string()).to_string()),
    }
    Ok(())
}
