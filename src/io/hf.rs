//! HF checkpoint folders: `config.json`, `model.safetensors` or sharded
//! `model-0000N-of-0000M.safetensors` with `model.safetensors.index.json`, `tokenizer.json`,
//! `tokenizer_config.json` (chat template, BOS/EOS, add_bos_token).

#[cfg(not(target_arch = "wasm32"))]
pub fn open_dir(path: &std::path::Path) -> crate::error::Result<crate::io::Checkpoint> {
    let _ = path;
    todo!()
}
