//! In-memory loading of a converted model, one shard at a time (the browser path): the page
//! fetches `manifest.json`, then each shard; [`ManifestLoader::add_shard`] checks a shard and
//! decodes its tensors, after which the shard's bytes can be dropped, so the model is never
//! held both as shard bytes and as tensors.

use super::{check_shard_with, decode_tensor, placeholder, tensor_segments, Manifest, TensorEntry, TensorSink};
use crate::error::{Error, Result};
use crate::io::{Checkpoint, Tensor, WeightSource};
use std::collections::BTreeMap;
use std::sync::Mutex;

pub struct ManifestLoader {
    manifest: Manifest,
    /// Per shard, indices into `manifest.tensors` of the tensors stored there.
    by_shard: Vec<Vec<usize>>,
    added: Vec<bool>,
    tensors: BTreeMap<String, Tensor>,
    /// Check each shard's sha256 (off when the caller already did: size is checked anyway).
    check_hashes: bool,
}

impl ManifestLoader {
    /// Parse and validate `manifest.json`.
    pub fn new(manifest_json: &str) -> Result<Self> {
        let manifest = Manifest::parse(manifest_json)?;
        let mut by_shard = vec![Vec::new(); manifest.shards.len()];
        for (i, t) in manifest.tensors.iter().enumerate() {
            if let Some(s) = Manifest::shard_of(t) {
                by_shard[s].push(i);
            }
        }
        let added = vec![false; manifest.shards.len()];
        Ok(ManifestLoader { manifest, by_shard, added, tensors: BTreeMap::new(), check_hashes: true })
    }

    /// Whether `add_shard` (and the tokenizer check) verify sha256; `false` when the caller
    /// already checked every file against the manifest (sizes are checked either way).
    pub fn set_check_hashes(&mut self, on: bool) {
        self.check_hashes = on;
    }

    /// The manifest (the shard list says which files to fetch, with sizes and hashes).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Check shard `index` (size, sha256, safetensors header) and decode its tensors.
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        self.add_shard_into(index, bytes, None)
    }

    /// [`ManifestLoader::add_shard`] handing the tensors `sink` wants to it (straight from
    /// `bytes`, nothing decoded) and keeping a shape-only placeholder for each.
    pub fn add_shard_into(&mut self, index: usize, bytes: &[u8], mut sink: Option<&mut dyn TensorSink>) -> Result<()> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| {
            Error::Invalid(format!("shard index {index}, the manifest lists {}", self.manifest.shards.len()))
        })?;
        if self.added[index] {
            return Err(Error::Invalid(format!("shard {} added twice", entry.file)));
        }
        let header = check_shard_with(entry, bytes, self.check_hashes)?;
        for &ti in &self.by_shard[index] {
            let t = &self.manifest.tensors[ti];
            let tensor = match sink.as_deref_mut().filter(|s| s.wants(t)) {
                Some(s) => {
                    s.take(t, &tensor_segments(t, &header, bytes)?)?;
                    placeholder(t)
                }
                None => decode_tensor(t, &header, bytes)?,
            };
            self.tensors.insert(t.name.clone(), tensor);
        }
        self.added[index] = true;
        Ok(())
    }

    /// Files of shards not yet added.
    pub fn missing(&self) -> Vec<&str> {
        let shards = self.manifest.shards.iter().zip(&self.added);
        shards.filter(|(_, a)| !**a).map(|(s, _)| s.file.as_str()).collect()
    }

    /// Check `tokenizer_json` (the text of the manifest's tokenizer file) against the
    /// manifest: size, and sha256 unless hashes are off.
    pub fn check_tokenizer(&self, tokenizer_json: &str) -> Result<()> {
        let m = &self.manifest;
        let entry = m.files.iter().find(|f| f.file == m.tokenizer.file).expect("validated");
        if tokenizer_json.len() as u64 != entry.size {
            return Err(Error::format(
                &entry.file,
                format!("{} bytes, the manifest says {}", tokenizer_json.len(), entry.size),
            ));
        }
        if self.check_hashes {
            super::check_hash(entry, tokenizer_json.as_bytes())?;
        }
        Ok(())
    }

    /// The tensors of the shards added so far (decoded, or placeholders for those a sink took).
    pub fn into_weights(self) -> MemWeights {
        MemWeights::new(self.tensors)
    }

    /// The checkpoint, once every shard is in. `tokenizer_json` is the text of the manifest's
    /// tokenizer file; its size and sha256 are checked against the manifest.
    pub fn finish(self, tokenizer_json: String) -> Result<Checkpoint> {
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(Error::Invalid(format!("shards not loaded: {}", missing.join(", "))));
        }
        self.check_tokenizer(&tokenizer_json)?;
        let m = self.manifest.clone();
        let weights = self.into_weights();
        Ok(Checkpoint {
            config: m.config.clone(),
            tokenizer: m.tokenizer_spec(tokenizer_json),
            weights: Box::new(weights),
            preprocessor: m.preprocessor,
        })
    }
}

/// A sink that takes (and drops) every tensor not named in `keep`: a loader that needs only
/// those tensors' data holds no more.
pub struct SkipSink<'a> {
    pub keep: &'a dyn Fn(&str) -> bool,
}

impl TensorSink for SkipSink<'_> {
    fn wants(&self, t: &TensorEntry) -> bool {
        !(self.keep)(&t.name)
    }
    fn take(&mut self, _: &TensorEntry, _: &[(&str, &[u8])]) -> Result<()> {
        Ok(())
    }
}

/// Decoded tensors held in memory. `load` *moves* a tensor out (the browser must not hold the
/// weights twice while the model is built), so each tensor can be loaded once; `shape` and
/// `names` keep answering afterwards.
pub struct MemWeights {
    shapes: BTreeMap<String, Vec<usize>>,
    tensors: Mutex<BTreeMap<String, Tensor>>,
}

impl MemWeights {
    pub fn new(tensors: BTreeMap<String, Tensor>) -> MemWeights {
        let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
        MemWeights { shapes, tensors: Mutex::new(tensors) }
    }
}

impl WeightSource for MemWeights {
    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.shapes.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.into()))
    }
    fn load(&self, name: &str) -> Result<Tensor> {
        if !self.shapes.contains_key(name) {
            return Err(Error::MissingTensor(name.into()));
        }
        let mut map = self.tensors.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name).ok_or_else(|| {
            Error::Invalid(format!("tensor `{name}` was already handed over (in-memory weights load once)"))
        })
    }
}
