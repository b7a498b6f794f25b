//! GGUF tensor names → HF tensor names, per architecture, and the Q/K row permutation that
//! llama.cpp applies on conversion.
//!
//! Follows llama.cpp's `gguf-py/gguf/tensor_mapping.py` / `constants.py` (the GGUF side) and
//! transformers' `integrations/ggml.py` + `modeling_gguf_pytorch_utils.py` (the HF side,
//! including `reverse_permute_weights`). The table is per architecture so Mistral/Gemma-style
//! entries can be added without touching the reader.

use crate::error::{Error, Result};

/// What must be done to a tensor's rows after dequantization to get HF's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    None,
    /// `q_proj`: undo `convert_hf_to_gguf`'s RoPE permutation with `num_attention_heads`.
    PermuteQ,
    /// `k_proj`: same, with `num_key_value_heads`.
    PermuteK,
}

/// One architecture's naming table.
pub struct ArchNames {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Whole-model tensors: GGUF base name → HF base name (without `.weight` / `.bias`).
    pub globals: &'static [(&'static str, &'static str)],
    /// Per-block tensors: GGUF base (after `blk.N.`) → HF base (after `model.layers.N.`), fix.
    pub blocks: &'static [(&'static str, &'static str, Fix)],
}

const LLAMA: ArchNames = ArchNames {
    arch: "llama",
    globals: &[("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")],
    blocks: &[
        ("attn_norm", "input_layernorm", Fix::None),
        ("attn_q", "self_attn.q_proj", Fix::PermuteQ),
        ("attn_k", "self_attn.k_proj", Fix::PermuteK),
        ("attn_v", "self_attn.v_proj", Fix::None),
        ("attn_output", "self_attn.o_proj", Fix::None),
        ("ffn_norm", "post_attention_layernorm", Fix::None),
        ("ffn_gate", "mlp.gate_proj", Fix::None),
        ("ffn_up", "mlp.up_proj", Fix::None),
        ("ffn_down", "mlp.down_proj", Fix::None),
    ],
};

/// Every architecture this reader maps.
pub const ARCHS: &[ArchNames] = &[LLAMA];

/// The naming table for `general.architecture = arch`.
pub fn arch_names(arch: &str) -> Result<&'static ArchNames> {
    ARCHS.iter().find(|a| a.arch == arch).ok_or_else(|| {
        let known: Vec<&str> = ARCHS.iter().map(|a| a.arch).collect();
        Error::Unsupported(format!("GGUF architecture `{arch}` (known: {})", known.join(", ")))
    })
}

impl ArchNames {
    /// HF name and row fix for a GGUF tensor name; `None` for tensors HF does not have
    /// (`rope_freqs.weight`) or that this table does not know.
    pub fn to_hf(&self, gguf: &str) -> Option<(String, Fix)> {
        let (base, kind) = gguf.rsplit_once('.')?;
        if kind != "weight" && kind != "bias" {
            return None;
        }
        if let Some(rest) = base.strip_prefix("blk.") {
            let (n, local) = rest.split_once('.')?;
            let n: usize = n.parse().ok()?;
            let (_, hf, fix) = self.blocks.iter().find(|(g, _, _)| *g == local)?;
            return Some((format!("model.layers.{n}.{hf}.{kind}"), *fix));
        }
        let (_, hf) = self.globals.iter().find(|(g, _)| *g == base)?;
        Some((format!("{hf}.{kind}"), Fix::None))
    }
}

/// Rows per head for un-permuting `rows` rows over `n_head` heads, or a shape error.
pub fn head_dim(rows: usize, n_head: usize, what: &str) -> Result<usize> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(Error::Shape(format!("{what}: cannot un-permute {rows} rows over {n_head} heads")));
    }
    Ok(rows / n_head)
}

/// The GGUF row that holds HF row `r`. llama.cpp stored, per head,
/// `w.reshape(2, head_dim/2, cols).swapaxes(0, 1)`: GGUF row `2i + j` is HF row
/// `j * head_dim/2 + i`; HF's `reverse_permute_weights` maps it back.
pub fn gguf_row_of(r: usize, head_dim: usize) -> usize {
    let (h, w) = (r / head_dim, r % head_dim);
    let half = head_dim / 2;
    let (j, i) = (w / half, w % half);
    h * head_dim + 2 * i + j
}

/// Undo llama.cpp's Q/K permutation on row-major `[rows, cols]` values (`cols = 1` for a bias).
pub fn unpermute_rows(w: &[f32], rows: usize, n_head: usize, what: &str) -> Result<Vec<f32>> {
    let hd = head_dim(rows, n_head, what)?;
    let cols = w.len() / rows;
    let mut out = Vec::with_capacity(w.len()); // [rows, cols], HF row order
    for r in 0..rows {
        let s = gguf_row_of(r, hd);
        out.extend_from_slice(&w[s * cols..(s + 1) * cols]);
    }
    Ok(out)
}
