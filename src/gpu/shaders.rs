//! The WGSL sources in `shaders/`, compiled into the binary, and the one preprocessing step
//! they get: directives that differ per backend.
//!
//! Each file is plain WGSL, one op per file. A shader that uses subgroup builtins says so with
//! a first-line comment `// requires: subgroups`; Chrome wants `enable subgroups;` for those
//! while naga (native wgpu) rejects the directive, so it is added only on the web. Likewise
//! `// requires: f16` gets `enable f16;` (accepted everywhere). A line
//! `// include: NAME` is replaced by the text of `shaders/NAME.wgsl` (shared helpers), so
//! helpers live in one place and every file still reads as WGSL.

use super::context::AdapterSummary;
use crate::error::{Error, Result};

/// `(name, source)` of every shader file.
macro_rules! shader_table {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../shaders/", $name, ".wgsl")))),*]
    };
}

/// Every file under `shaders/` (add new ones here).
pub const SHADERS: &[(&str, &str)] = shader_table![
    "copy",
    "gather_rows",
    "gemm_dequant",
    "gemm_wdecode",
    "gemv_common",
    "gemv_f16",
    "gemv_f32",
    "gemv_int4",
    "gemv_int8",
    "gemv_ternary",
    "quantize_act_ternary",
    "quantize_act_i8",
    "gemm_w8a8",
    "gemm_ternary",
    // shared helpers (included by the ops below)
    "wg_reduce",
    "trig",
    "act_fns",
    // non-matmul ops (src/gpu/ops*.rs)
    "rms_norm",
    "layer_norm",
    "rope",
    "kv_append",
    "attention_decode",
    "attention_reduce",
    "attention_prefill",
    "add",
    "glu",
    "act",
    "scale",
    "clamp",
    "argmax",
    "sample",
    // vision tower (src/gpu/ops_vision.rs)
    "patch_unfold",
    "vision_embed",
    "copy_rows",
    "llava_merge",
];

/// The raw text of `shaders/{name}.wgsl`.
pub fn raw(name: &str) -> Result<&'static str> {
    SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::Gpu(format!("no shader named `{name}`")))
}

/// `shaders/{name}.wgsl` ready for this adapter: includes expanded, directives added.
pub fn source(name: &str, info: &AdapterSummary) -> Result<String> {
    let text = raw(name)?;
    let mut body = String::with_capacity(text.len());
    let mut directives = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(req) = t.strip_prefix("// requires:") {
            for r in req.split(',').map(str::trim) {
                match r {
                    "subgroups" if !info.subgroups => {
                        return Err(Error::Gpu(format!("shader `{name}` needs subgroups, which this adapter lacks")))
                    }
                    "subgroups" if cfg!(target_arch = "wasm32") => directives.push("enable subgroups;"),
                    "subgroups" => {}
                    "f16" if !info.shader_f16 => {
                        return Err(Error::Gpu(format!("shader `{name}` needs shader-f16, which this adapter lacks")))
                    }
                    "f16" => directives.push("enable f16;"),
                    other => return Err(Error::Gpu(format!("shader `{name}`: unknown requirement `{other}`"))),
                }
            }
        } else if let Some(inc) = t.strip_prefix("// include:") {
            body.push_str(raw(inc.trim())?);
            body.push('\n');
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    directives.dedup();
    Ok(directives.iter().map(|d| format!("{d}\n")).collect::<String>() + &body)
}
