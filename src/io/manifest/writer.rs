//! Writing the converted format: tensors go into safetensors shards of at most `limit` bytes
//! (a tensor never straddles two shards; one larger than the limit gets a shard of its own),
//! then `manifest.json` lists where every segment landed.

use super::{segment_layout, FileEntry, Segment, TensorEntry};
use crate::error::{Error, Result};
use crate::io::safetensors::{self, WriteTensor};
use crate::io::{Tensor, TensorData};
use crate::quant::WeightFormat;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("model-{i:05}.safetensors")
}

/// A [`Write`] that hashes and counts what passes through.
struct HashWriter<W: Write> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Format of a tensor as stored: `f32` for dense data, the QTensor's format otherwise.
fn stored_format(t: &Tensor) -> WeightFormat {
    match &t.data {
        TensorData::F32(_) => WeightFormat::F32,
        TensorData::Quant(q) => q.format(),
    }
}

/// The shard tensors (`<name>.<segment>`) of one tensor.
fn write_tensors<'a>(name: &str, t: &'a Tensor) -> Result<Vec<WriteTensor<'a>>> {
    let fmt = stored_format(t);
    let bytes: Vec<(&'static str, &'a [u8])> = match &t.data {
        TensorData::F32(v) => vec![("w", bytemuck::cast_slice(v))],
        TensorData::Quant(q) => q.segments(),
    };
    let layout = segment_layout(name, fmt, &t.shape)?;
    layout
        .into_iter()
        .map(|(seg, dtype, shape)| {
            let data = bytes
                .iter()
                .find(|(s, _)| *s == seg)
                .map(|(_, b)| *b)
                .ok_or_else(|| Error::Invalid(format!("tensor `{name}` has no segment `{seg}`")))?;
            Ok(WriteTensor { name: format!("{name}.{seg}"), dtype, shape, data })
        })
        .collect()
}

/// Accumulates tensors and writes full shards into `dir`.
pub struct ShardWriter {
    dir: PathBuf,
    limit: usize,
    pending: Vec<(String, Tensor)>,
    tensors: Vec<TensorEntry>,
    shards: Vec<FileEntry>,
}

impl ShardWriter {
    pub fn new(dir: &Path, limit: usize) -> ShardWriter {
        ShardWriter { dir: dir.to_path_buf(), limit, pending: Vec::new(), tensors: Vec::new(), shards: Vec::new() }
    }

    /// Size of the shard file that `pending` would make.
    fn planned_size(pending: &[(String, Tensor)]) -> Result<usize> {
        let mut wts = Vec::new();
        for (n, t) in pending {
            wts.extend(write_tensors(n, t)?);
        }
        Ok(safetensors::layout(&wts, &shard_metadata())?.size)
    }

    /// Queue a tensor; writes the current shard first if the tensor would push it past the limit.
    pub fn push(&mut self, name: &str, tensor: Tensor) -> Result<()> {
        write_tensors(name, &tensor)?; // checks shape and segments now, naming the tensor
        self.pending.push((name.to_string(), tensor));
        if self.pending.len() > 1 && Self::planned_size(&self.pending)? > self.limit {
            let last = self.pending.pop().expect("just pushed");
            self.flush()?;
            self.pending.push(last);
        }
        Ok(())
    }

    /// Write the pending tensors as one shard.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let index = self.shards.len();
        let file = shard_name(index);
        let path = self.dir.join(&file);
        let mut wts = Vec::new();
        let mut owners = Vec::new(); // (tensor index in pending, segment name) per written tensor
        for (i, (n, t)) in self.pending.iter().enumerate() {
            for w in write_tensors(n, t)? {
                owners.push((i, w.name[n.len() + 1..].to_string()));
                wts.push(w);
            }
        }
        let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut hw = HashWriter { inner: std::io::BufWriter::new(f), hash: Sha256::new(), size: 0 };
        let layout = safetensors::write(&path.display().to_string(), &mut hw, &wts, &shard_metadata())?;
        hw.flush().map_err(|e| Error::io(&path, e))?;
        let mut entries: Vec<TensorEntry> = self
            .pending
            .iter()
            .map(|(n, t)| TensorEntry {
                name: n.clone(),
                shape: t.shape.clone(),
                format: stored_format(t),
                segments: BTreeMap::new(),
            })
            .collect();
        for ((i, seg), r) in owners.into_iter().zip(&layout.ranges) {
            let loc = Segment { shard: index, offset: r.start as u64, length: r.len() as u64 };
            entries[i].segments.insert(seg, loc);
        }
        self.tensors.extend(entries);
        self.shards.push(FileEntry { file, size: hw.size, sha256: hex::encode(hw.hash.finalize()) });
        self.pending.clear();
        Ok(())
    }

    /// Write the last shard; returns the tensor entries and the shard list.
    pub fn finish(mut self) -> Result<(Vec<TensorEntry>, Vec<FileEntry>)> {
        self.flush()?;
        Ok((self.tensors, self.shards))
    }
}

fn shard_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), super::FORMAT.to_string())])
}

/// Write `bytes` to `dir/file` and describe it.
pub fn write_file(dir: &Path, file: &str, bytes: &[u8]) -> Result<FileEntry> {
    let path = dir.join(file);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    Ok(FileEntry { file: file.to_string(), size: bytes.len() as u64, sha256: super::sha256_hex(bytes) })
}
