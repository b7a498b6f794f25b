//! Weight matrices on the GPU: a [`QTensor`]'s segments (`docs/FORMAT.md`) copied byte for
//! byte into storage buffers, cut by row ranges into [`MatrixPart`]s when a segment is larger
//! than one storage binding may be (`ctx.max_binding()`: 128 MiB on lavapipe, 256 MiB to
//! 1 GiB on phones).
//!
//! Every segment except ternary's per-tensor `scale` holds a fixed number of bytes per row, so
//! rows `r0 .. r1` of a segment are one contiguous byte range; each part gets its own buffers
//! holding exactly those bytes (a part is a self-contained `[r1 - r0, cols]` tensor of the same
//! format), padded with zeros to a multiple of 16 bytes so kernels may read them as
//! `array<vec4<u32>>`. The ternary scale is one f32 for the whole tensor (every part uses it)
//! and travels in the kernels' parameters instead of a buffer. Bytes go in through the queue
//! in pieces of at most [`WRITE_CHUNK`] ([`write_chunked`]), never through a mapping.

use crate::error::{Error, Result};
use crate::quant::{QTensor, WeightFormat};

use super::GpuContext;

/// Largest buffer of one part whatever the adapter allows (2 GiB).
pub const MAX_PART_BYTES: u64 = 1 << 31;

/// Rows `r0 .. r0 + rows` of a matrix in their own buffers.
pub struct MatrixPart {
    /// First row of the whole matrix this part holds.
    pub r0: usize,
    pub rows: usize,
    /// `w` (f32, f16) or `q` (int8, int4, ternary): the part's rows of that segment.
    pub q: wgpu::Buffer,
    /// `scales` (int8: f32 per row; int4: f16 per group).
    pub scales: Option<wgpu::Buffer>,
    /// `mins` (int4 asym: f16 per group).
    pub mins: Option<wgpu::Buffer>,
}

/// A `[rows, cols]` weight matrix uploaded to the GPU.
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub format: WeightFormat,
    /// The ternary tensor scale (1 for other formats).
    pub scale: f32,
    /// Row ranges in order, covering `0 .. rows`.
    pub parts: Vec<MatrixPart>,
}

impl GpuMatrix {
    /// Upload `q`, split into parts whose buffers fit one storage binding of `ctx` (and at
    /// most 2 GiB, so the kernels' u32 element indices of an int8 part cannot overflow).
    pub fn upload(ctx: &GpuContext, q: &QTensor, label: &str) -> Result<GpuMatrix> {
        Self::upload_with_limit(ctx, q, label, ctx.max_binding().min(MAX_PART_BYTES))
    }

    /// [`GpuMatrix::upload`] with an explicit per-buffer byte limit (tests force splitting
    /// with a small one).
    pub fn upload_with_limit(ctx: &GpuContext, q: &QTensor, label: &str, max_bytes: u64) -> Result<GpuMatrix> {
        if q.is_placeholder() {
            return Err(Error::Gpu(format!("{label}: the matrix's bytes are not in memory (a placeholder)")));
        }
        Self::upload_segments(ctx, q.format(), [q.rows, q.cols], &q.segments(), label, max_bytes)
    }

    /// Upload a `[rows, cols]` matrix of format `fmt` from its segments `(name, bytes)` (any
    /// order; the bytes of a shard as they arrive, or a [`QTensor`]'s), split into parts of at
    /// most `max_bytes` per buffer.
    pub fn upload_segments(
        ctx: &GpuContext,
        fmt: WeightFormat,
        [rows, cols]: [usize; 2],
        segments: &[(&str, &[u8])],
        label: &str,
        max_bytes: u64,
    ) -> Result<GpuMatrix> {
        let segs = row_segments(fmt, rows, cols, segments)?;
        let rows_per_part = rows_per_part(&segs, rows, max_bytes).ok_or_else(|| {
            Error::Gpu(format!("{label}: one row of {fmt:?} [{rows}, {cols}] exceeds {max_bytes} bytes"))
        })?;
        let scale = match (fmt, segments.iter().find(|(n, _)| *n == "scale")) {
            (WeightFormat::Ternary, Some((_, b))) if b.len() == 4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (WeightFormat::Ternary, _) => return Err(Error::Gpu(format!("{label}: ternary scale missing"))),
            _ => 1.0,
        };
        let mut parts = Vec::new();
        let mut r0 = 0;
        while r0 < rows.max(1) {
            let r1 = (r0 + rows_per_part).min(rows);
            let mut bufs = segs.iter().map(|(name, bytes, bpr)| {
                upload_padded(ctx, &format!("{label}.{name}[{r0}..{r1}]"), &bytes[r0 * bpr..r1 * bpr])
            });
            let q_buf = bufs.next().expect("every format has a first segment");
            parts.push(MatrixPart { r0, rows: r1 - r0, q: q_buf, scales: bufs.next(), mins: bufs.next() });
            r0 = r1.max(r0 + 1);
        }
        Ok(GpuMatrix { rows, cols, format: fmt, scale, parts })
    }

    /// Check, before anything is allocated, that one row of each segment of a `[rows, cols]`
    /// matrix of format `fmt` fits a buffer of `max_bytes` (so it can be split by rows).
    pub fn check_rows(fmt: WeightFormat, rows: usize, cols: usize, max_bytes: u64, label: &str) -> Result<()> {
        let sizes = QTensor::segment_sizes(fmt, rows, cols);
        let widest = sizes.iter().filter(|(n, _)| *n != "scale").map(|(_, s)| s / rows.max(1)).max().unwrap_or(0);
        if widest.div_ceil(16) * 16 > (max_bytes / 16 * 16) as usize || max_bytes < 16 {
            return Err(Error::Gpu(format!(
                "{label}: one row of {} [{rows}, {cols}] takes {widest} bytes, over the adapter's {max_bytes}-byte storage binding limit",
                fmt.name()
            )));
        }
        Ok(())
    }

    /// Bytes of weights on the GPU (all parts, without padding).
    pub fn nbytes(&self) -> u64 {
        QTensor::segment_sizes(self.format, self.rows, self.cols)
            .iter()
            .filter(|(name, _)| !(self.format == WeightFormat::Ternary && *name == "scale"))
            .map(|(_, s)| *s as u64)
            .sum()
    }
}

/// The row-proportional segments as `(name, bytes, bytes per row)` in the order `q`/`w`,
/// `scales`, `mins` (ternary's `scale` is left out: it travels as a parameter), each checked
/// for its length.
fn row_segments<'a>(
    fmt: WeightFormat,
    rows: usize,
    cols: usize,
    segments: &[(&str, &'a [u8])],
) -> Result<Vec<(&'static str, &'a [u8], usize)>> {
    let mut out = Vec::new();
    for (name, len) in QTensor::segment_sizes(fmt, rows, cols) {
        if fmt == WeightFormat::Ternary && name == "scale" {
            continue;
        }
        let bytes = segments.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
        let bytes = bytes.filter(|b| b.len() == len).ok_or_else(|| {
            Error::Gpu(format!("segment `{name}` of {} [{rows}, {cols}] missing or not {len} bytes", fmt.name()))
        })?;
        out.push((name, bytes, len / rows.max(1)));
    }
    Ok(out)
}

/// The most rows per part such that every segment's part, padded to 16 bytes, fits
/// `max_bytes`; `None` when not even one row does.
fn rows_per_part(segs: &[(&str, &[u8], usize)], rows: usize, max_bytes: u64) -> Option<usize> {
    let room = (max_bytes / 16 * 16) as usize;
    let most = segs.iter().map(|(_, _, bpr)| if *bpr == 0 { usize::MAX } else { room / bpr }).min()?;
    (most >= 1).then_some(most.min(rows.max(1)))
}

/// Most bytes one queued write stages (8 MiB): what the upload holds beyond the shard's own bytes.
pub const WRITE_CHUNK: usize = 8 << 20;

/// A storage buffer holding `bytes` followed by zeros up to a multiple of 16 (at least 16),
/// written through the queue ([`write_chunked`]) rather than mapped at creation: in wasm a
/// mapped range is a copy of the whole buffer in wasm memory, and on a lost device a mapped
/// range panics where a queued write only reports an error.
fn upload_padded(ctx: &GpuContext, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let size = (bytes.len().div_ceil(16) * 16).max(16) as u64;
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    write_chunked(ctx, &buf, bytes, WRITE_CHUNK);
    buf
}

/// Write `bytes` at the start of `buf` (a new buffer reads as zeros after them) with
/// `queue.write_buffer`, `chunk` bytes at a time (rounded down to a multiple of 4, at least
/// 4), each piece submitted at once so that no more than one piece waits in a staging
/// buffer; a tail that is not a multiple of 4 bytes is written padded with zeros. In wasm
/// each write reads the bytes straight from wasm memory.
pub fn write_chunked(ctx: &GpuContext, buf: &wgpu::Buffer, bytes: &[u8], chunk: usize) {
    let chunk = (chunk / 4 * 4).max(4);
    let whole = bytes.len() / 4 * 4;
    let mut off = 0;
    while off < whole {
        let end = (off + chunk).min(whole);
        ctx.queue.write_buffer(buf, off as u64, &bytes[off..end]);
        ctx.queue.submit([]);
        off = end;
    }
    if whole < bytes.len() {
        let mut tail = [0u8; 4];
        tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        ctx.queue.write_buffer(buf, whole as u64, &tail);
        ctx.queue.submit([]);
    }
}
