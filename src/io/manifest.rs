//! The converted format: `manifest.json` + safetensors shards (`docs/FORMAT.md`).

#[cfg(not(target_arch = "wasm32"))]
pub fn open_dir(path: &std::path::Path) -> crate::error::Result<crate::io::Checkpoint> {
    let _ = path;
    todo!()
}
