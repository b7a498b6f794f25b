//! `webvlm bench`: memory read bandwidth and GEMV (matrix-vector) throughput of the CPU
//! kernels, reported as GB/s of weight bytes read and as a fraction of the single-thread
//! read bandwidth measured in the same run (the roofline of a memory-bound decode step).
//!
//! Method (after llama.cpp's `test-backend-ops -b` / STREAM-style reads): every GEMV rotates
//! through enough copies of the weights that the working set is at least 4× the last-level
//! cache (105 MiB or the detected L3, whichever is larger), so weights come from DRAM as
//! they do when decoding a real model; each figure is the best of several full rotations.
//! Weights are random nibbles / bytes with random scales: throughput does not depend on the
//! values. Native only.

use crate::kernels::{self, Isa};
use crate::quant::{QData, QTensor, WeightFormat};
use crate::rng::Rng;
use half::f16;
use serde::Serialize;
use std::time::Instant;

/// Buffer size of the read-bandwidth test.
pub const READ_BUFFER_BYTES: usize = 512 << 20;

/// What to measure.
#[derive(Clone, Debug)]
pub struct GemvOptions {
    /// Formats to run (default: INT4 sym g64 / g32 / g128, INT4 asym g64, INT8, ternary).
    pub formats: Vec<WeightFormat>,
    /// `(rows, cols)` = `(out, in)` shapes (default 4096×4096, 4096×14336, 14336×4096).
    pub shapes: Vec<(usize, usize)>,
    /// Thread counts (default `[1, all cores]`).
    pub threads: Vec<usize>,
    /// Minimum working set in bytes (default 4 × max(105 MiB, detected L3)).
    pub min_working_set: usize,
    /// Full rotations per measurement; the best one counts (default 5).
    pub rotations: usize,
    /// Kernel path (default: the fastest available, [`Isa::best`]).
    pub isa: Isa,
}

impl Default for GemvOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut threads = vec![1];
        if cores > 1 {
            threads.push(cores);
        }
        GemvOptions {
            formats: vec![
                WeightFormat::Int4 { group: 64, sym: true },
                WeightFormat::Int4 { group: 32, sym: true },
                WeightFormat::Int4 { group: 128, sym: true },
                WeightFormat::Int4 { group: 64, sym: false },
                WeightFormat::Int8,
                WeightFormat::Ternary,
            ],
            shapes: vec![(4096, 4096), (4096, 14336), (14336, 4096)],
            threads,
            min_working_set: 4 * llc_bytes().max(105 << 20),
            rotations: 5,
            isa: Isa::best(),
        }
    }
}

/// One GEMV measurement.
#[derive(Clone, Debug, Serialize)]
pub struct GemvRow {
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub threads: usize,
    pub isa: String,
    /// Bytes of one weight matrix (all segments).
    pub weight_bytes: usize,
    /// Copies rotated through, and their total size in MiB.
    pub copies: usize,
    pub working_set_mib: f64,
    /// Best time per GEMV in microseconds.
    pub us_per_gemv: f64,
    /// Weight bytes read per second, in GB/s (1e9 bytes).
    pub gbs: f64,
    /// `gbs` / single-thread read bandwidth of this run.
    pub ratio_to_read_1t: f64,
    /// `gbs` / read bandwidth at the same thread count.
    pub ratio_to_read_same_threads: f64,
    /// Single thread only: weight bytes per on-CPU second (see [`ReadBw::gbs_on_cpu`]) and
    /// its ratio to the on-CPU single-thread read bandwidth.
    pub gbs_on_cpu: Option<f64>,
    pub ratio_on_cpu: Option<f64>,
}

/// A whole run: read bandwidths per thread count, then the GEMV rows.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub llc_mib: f64,
    /// The read-bandwidth test at each thread count.
    pub read: Vec<ReadBw>,
    pub gemv: Vec<GemvRow>,
}

/// Last-level cache size from sysfs (0 if unknown).
pub fn llc_bytes() -> usize {
    let base = "/sys/devices/system/cpu/cpu0/cache";
    (0..8)
        .filter_map(|i| std::fs::read_to_string(format!("{base}/index{i}/size")).ok())
        .filter_map(|s| parse_size(s.trim()))
        .max()
        .unwrap_or(0)
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|v| v * mul)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().expect("rayon thread pool")
}

/// Seconds the current thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_s() -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// Wall-clock and on-CPU seconds of `f` (on-CPU: this thread only, NaN if unknown).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (c0, t) = (thread_cpu_s(), Instant::now());
    f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = match (c0, thread_cpu_s()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    (wall, cpu)
}

/// One read-bandwidth measurement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ReadBw {
    pub threads: usize,
    /// Bytes per wall-clock second, GB/s.
    pub gbs: f64,
    /// Bytes per on-CPU second (single thread only): what the figure would be on an idle
    /// machine when other processes share the cores. `None` for several threads.
    pub gbs_on_cpu: Option<f64>,
}

/// Read bandwidth in GB/s (wall clock): see [`read_bandwidth`].
pub fn read_bandwidth_gbs(threads: usize) -> f64 {
    read_bandwidth(threads).gbs
}

/// Read bandwidth: sum of a [`READ_BUFFER_BYTES`] buffer split over `threads` threads (AVX2
/// loads where available), best of 5 passes.
pub fn read_bandwidth(threads: usize) -> ReadBw {
    let words = READ_BUFFER_BYTES / 8;
    let buf: Vec<u64> = (0..words as u64).collect(); // touches every page
    let p = pool(threads);
    let chunk = words.div_ceil(threads.max(1));
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    let mut check = 0u64;
    for _ in 0..5 {
        let (w, c) = p.install(|| {
            use rayon::prelude::*;
            timed(|| check ^= buf.par_chunks(chunk).map(sum_u64).reduce(|| 0, u64::wrapping_add))
        });
        wall = wall.min(w);
        cpu = cpu.min(c);
    }
    std::hint::black_box(check);
    let gb = READ_BUFFER_BYTES as f64 / 1e9;
    ReadBw { threads, gbs: gb / wall, gbs_on_cpu: (threads == 1 && cpu.is_finite()).then(|| gb / cpu) }
}

fn sum_u64(v: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected just above.
        return unsafe { sum_u64_avx2(v) };
    }
    v.iter().fold(0u64, |a, &b| a.wrapping_add(b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_u64_avx2(v: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let n16 = v.len() / 16 * 16;
    let p = v.as_ptr() as *const __m256i;
    let mut acc = [_mm256_setzero_si256(); 4];
    for i in (0..n16 / 4).step_by(4) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_epi64(*a, _mm256_loadu_si256(p.add(i + k)));
        }
    }
    let s = _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3]));
    let mut lanes = [0u64; 4];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, s);
    let tail = v[n16..].iter().fold(0u64, |a, &b| a.wrapping_add(b));
    lanes.iter().fold(tail, |a, &b| a.wrapping_add(b))
}

/// A small positive f16 scale in `[0.001, 0.011)`.
fn scale(r: &mut Rng) -> f16 {
    f16::from_f32(0.001 + r.next_f32() * 0.01)
}

/// A random weight matrix `[rows, cols]` in `fmt`.
pub fn random_weights(fmt: WeightFormat, rows: usize, cols: usize, seed: u64) -> QTensor {
    let mut r = Rng::new(seed);
    let n = rows * cols;
    let data = match fmt {
        WeightFormat::Int4 { group, sym } => QData::Int4 {
            group,
            q: (0..n / 8).map(|_| r.next_u32()).collect(),
            scales: (0..n / group).map(|_| scale(&mut r)).collect(),
            mins: (!sym).then(|| (0..n / group).map(|_| -scale(&mut r)).collect()),
        },
        WeightFormat::Int8 => QData::Int8 {
            q: (0..n).map(|_| (r.next_u32() as i32 % 127) as i8).collect(),
            scales: (0..rows).map(|_| scale(&mut r).to_f32()).collect(),
        },
        WeightFormat::F16 => QData::F16((0..n).map(|_| scale(&mut r)).collect()),
        WeightFormat::F32 => QData::F32((0..n).map(|_| scale(&mut r).to_f32()).collect()),
        WeightFormat::Ternary => QData::Ternary {
            // random 2-bit codes with 3 (invalid) turned into 2
            q: (0..rows * cols.div_ceil(16))
                .map(|_| {
                    let w = r.next_u32();
                    w ^ (w & (w >> 1) & 0x5555_5555)
                })
                .collect(),
            scale: scale(&mut r).to_f32(),
        },
    };
    QTensor { rows, cols, data }
}

/// Time one GEMV configuration, rotating through copies of the weights.
pub fn gemv_once(fmt: WeightFormat, rows: usize, cols: usize, threads: usize, opts: &GemvOptions) -> GemvRow {
    let proto = random_weights(fmt, rows, cols, 0x5eed ^ (rows * 31 + cols) as u64);
    let wb = proto.nbytes();
    let copies = opts.min_working_set.div_ceil(wb).max(2);
    let ws: Vec<QTensor> = (0..copies).map(|_| proto.clone()).collect();
    drop(proto);
    let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let mut y = vec![0f32; rows];
    let isa = opts.isa;
    crate::par::set_threads(threads);
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    for w in &ws {
        kernels::matvec_with(isa, w, &x, &mut y).expect("bench shapes"); // warm-up pass
    }
    for _ in 0..opts.rotations.max(1) {
        let (wall, cpu) = timed(|| {
            for w in &ws {
                kernels::matvec_with(isa, w, &x, &mut y).expect("bench shapes");
            }
        });
        best = best.min(wall / copies as f64);
        best_cpu = best_cpu.min(cpu / copies as f64);
    }
    std::hint::black_box(&y);
    GemvRow {
        format: fmt.name(),
        rows,
        cols,
        threads,
        isa: format!("{isa:?}"),
        weight_bytes: wb,
        copies,
        working_set_mib: (wb * copies) as f64 / (1 << 20) as f64,
        us_per_gemv: best * 1e6,
        gbs: wb as f64 / best / 1e9,
        gbs_on_cpu: (threads == 1 && best_cpu.is_finite()).then(|| wb as f64 / best_cpu / 1e9),
        ratio_to_read_1t: 0.0,
        ratio_to_read_same_threads: 0.0,
        ratio_on_cpu: None,
    }
}

/// Run the whole benchmark: read bandwidth at each thread count, then every GEMV.
pub fn run(opts: &GemvOptions) -> BenchReport {
    let mut read: Vec<ReadBw> = opts.threads.iter().map(|&t| read_bandwidth(t)).collect();
    if !opts.threads.contains(&1) {
        read.insert(0, read_bandwidth(1));
    }
    let bw = |t: usize| read.iter().find(|r| r.threads == t).map(|r| r.gbs).unwrap_or(f64::NAN);
    let mut gemv = Vec::new();
    for &(rows, cols) in &opts.shapes {
        for &fmt in &opts.formats {
            for &t in &opts.threads {
                let mut r = gemv_once(fmt, rows, cols, t, opts);
                r.ratio_to_read_1t = r.gbs / bw(1);
                r.ratio_to_read_same_threads = r.gbs / bw(t);
                r.ratio_on_cpu = r.gbs_on_cpu.zip(read[0].gbs_on_cpu).map(|(g, b)| g / b);
                gemv.push(r);
            }
        }
    }
    BenchReport { llc_mib: llc_bytes() as f64 / (1 << 20) as f64, read, gemv }
}

/// Print a report as a table.
pub fn print_report(r: &BenchReport) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    println!("last-level cache: {:.0} MiB", r.llc_mib);
    for b in &r.read {
        println!("read bandwidth, {:>2} thread(s): {:6.1} GB/s (on-CPU: {})", b.threads, b.gbs, opt(b.gbs_on_cpu));
    }
    println!(
        "{:<14} {:>6} {:>6} {:>3} {:>7} {:>6} {:>9} {:>6} {:>7} {:>7} {:>6} {:>6}",
        "format", "rows", "cols", "thr", "isa", "wsMiB", "us/gemv", "GB/s", "/read1t", "/readNt", "cpuGBs", "/cpu"
    );
    for g in &r.gemv {
        println!(
            "{:<14} {:>6} {:>6} {:>3} {:>7} {:>6.0} {:>9.1} {:>6.1} {:>7.2} {:>7.2} {:>6} {:>6}",
            g.format,
            g.rows,
            g.cols,
            g.threads,
            g.isa,
            g.working_set_mib,
            g.us_per_gemv,
            g.gbs,
            g.ratio_to_read_1t,
            g.ratio_to_read_same_threads,
            opt(g.gbs_on_cpu),
            opt(g.ratio_on_cpu)
        );
    }
}
