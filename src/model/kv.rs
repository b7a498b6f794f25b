//! The KV cache: keys and values of every processed position, per layer, in f32.
//!
//! Layout: `k[layer]` and `v[layer]` are `[positions, kv_heads, head_dim]` row-major, so a
//! new position is an append and the cache grows only as far as the sequence does (the
//! browser never pays for a full context window up front). Keys are stored after RoPE.

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct KvCache {
    /// `[layers]` of `[len, kv_heads, head_dim]`.
    pub k: Vec<Vec<f32>>,
    /// `[layers]` of `[len, kv_heads, head_dim]`.
    pub v: Vec<Vec<f32>>,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Most positions the cache may hold (the context window).
    pub capacity: usize,
    /// Largest sequence length seen, for dynamic-NTK RoPE (transformers'
    /// `max_seq_len_cached`).
    pub rope_max_seq: usize,
    len: usize,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> KvCache {
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            kv_heads,
            head_dim,
            capacity,
            rope_max_seq: 0,
            len: 0,
        }
    }

    /// Positions currently cached.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Floats per position per layer (`kv_heads * head_dim`).
    pub fn row(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Fails with [`Error::ContextOverflow`] unless `n` more positions fit.
    pub fn check_room(&self, n: usize) -> Result<()> {
        if self.len + n > self.capacity {
            return Err(Error::ContextOverflow { tokens: self.len + n, limit: self.capacity });
        }
        Ok(())
    }

    /// Append `k`, `v`: `[n, kv_heads, head_dim]` to `layer`. Call [`KvCache::advance`]
    /// once every layer has its new positions.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        self.k[layer].extend_from_slice(k);
        self.v[layer].extend_from_slice(v);
    }

    /// Commit `n` appended positions.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Forget every position from `len` on (KV reuse keeps a common prefix).
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        let r = self.row();
        for (k, v) in self.k.iter_mut().zip(self.v.iter_mut()) {
            k.truncate(len * r);
            v.truncate(len * r);
        }
        self.len = len;
    }

    pub fn clear(&mut self) {
        self.truncate(0);
        self.rope_max_seq = 0;
    }

    /// Bytes held by cached keys and values.
    pub fn nbytes(&self) -> usize {
        4 * self.k.iter().chain(self.v.iter()).map(|x| x.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_truncate_and_room() {
        let mut c = KvCache::new(2, 1, 2, 3);
        for l in 0..2 {
            c.append(l, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]);
        }
        c.advance(2);
        assert_eq!(c.len(), 2);
        assert!(c.check_room(1).is_ok());
        assert!(matches!(c.check_room(2), Err(Error::ContextOverflow { tokens: 4, limit: 3 })));
        c.truncate(1);
        assert_eq!((c.len(), c.k[1].as_slice(), c.v[0].as_slice()), (1, &[1.0, 2.0][..], &[5.0, 6.0][..]));
    }
}
