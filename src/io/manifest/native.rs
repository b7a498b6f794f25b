//! Opening a converted folder natively: `manifest.json`, memory-mapped shards (size and
//! sha256 checked as each is opened), `tokenizer.json` (checked likewise).

use super::{check_hash, check_shard, decode_tensor, Manifest, TensorEntry};
use crate::error::{Error, Result};
use crate::io::safetensors::Header;
use crate::io::{Checkpoint, Tensor, WeightSource};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::path::Path;

/// Open a converted folder (`manifest.json` + shards).
pub fn open_dir(dir: &Path) -> Result<Checkpoint> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let manifest = Manifest::parse(&text)?;
    let tok_entry = manifest.files.iter().find(|f| f.file == manifest.tokenizer.file).expect("validated");
    let tpath = dir.join(&tok_entry.file);
    let tok = std::fs::read(&tpath).map_err(|e| Error::io(&tpath, e))?;
    if tok.len() as u64 != tok_entry.size {
        return Err(Error::format(
            tpath.display().to_string(),
            format!("{} bytes, the manifest says {}", tok.len(), tok_entry.size),
        ));
    }
    check_hash(tok_entry, &tok)?;
    let tok = String::from_utf8(tok).map_err(|e| Error::format(tpath.display().to_string(), e.to_string()))?;
    let weights = ManifestWeights::open(dir, &manifest)?;
    Ok(Checkpoint {
        config: manifest.config.clone(),
        tokenizer: manifest.tokenizer_spec(tok),
        weights: Box::new(weights),
        preprocessor: manifest.preprocessor.clone(),
    })
}

/// Memory-mapped shards of a converted folder; tensors are decoded on `load`.
pub struct ManifestWeights {
    shards: Vec<(Mmap, Header)>,
    tensors: BTreeMap<String, TensorEntry>,
}

impl ManifestWeights {
    /// Map and check every shard that `manifest` lists in `dir`.
    pub fn open(dir: &Path, manifest: &Manifest) -> Result<ManifestWeights> {
        let mut shards = Vec::with_capacity(manifest.shards.len());
        for entry in &manifest.shards {
            let path = dir.join(&entry.file);
            let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only map of a file this process does not modify while it is open.
            let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(&path, e))?;
            let header = check_shard(entry, &map)?;
            shards.push((map, header));
        }
        let tensors = manifest.tensors.iter().map(|t| (t.name.clone(), t.clone())).collect();
        Ok(ManifestWeights { shards, tensors })
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.into()))
    }
}

impl WeightSource for ManifestWeights {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }
    fn load(&self, name: &str) -> Result<Tensor> {
        let t = self.entry(name)?;
        let shard = Manifest::shard_of(t).ok_or_else(|| Error::MissingTensor(name.into()))?;
        let (map, header) = &self.shards[shard];
        decode_tensor(t, header, map)
    }
}
