#!/usr/bin/env node
// The scale kit's benchmark (`npm run bench:scale`, scripts/bench-scale.sh): the seed models' published shapes with
// random weights (tools/scale/make_checkpoints.py writes them to .cache/scale/src/), each converted with
// `webvlm convert SRC --out .cache/scale/out/NAME` (the converter's defaults), then one image question
// ("What is in the image?" about a 451x300 photo, --chat, greedy, 32 new tokens) timed
//   - natively: `webvlm generate ... --json` on 1 and 2 threads (first run after evicting the converted files from
//     the page cache: a cold load), peak RSS by /usr/bin/time;
//   - in headless Chromium through the npm package (dist/): CPU path on 1 thread (one-thread build) and 2 threads
//     (threaded build; the page is cross-origin isolated): first load (download + sha256 + Cache Storage), load from
//     the cache in a new engine, then the answer; wasm memory (the engine worker's WebAssembly.Memory, read after the
//     answer: it only grows, so this is its peak) and the browser's peak memory (sum of PSS over its processes,
//     sampled every 0.5 s, and the largest single-process RSS).
// A path a model cannot run on is a row with the reason and what it would need (7B INT4 over wasm32's 4 GiB; WebGPU
// on SwiftShader unless --webgpu). The machine's limits are measured in the same run for ratios: read bandwidth
// (`webvlm bench`), an f32 multiply-add peak natively (tools/scale/peak_flops.c: AVX2 FMA and SSE mul+add) and in
// Chromium (wasm SIMD128 f32x4.mul+add and, where supported, f32x4.relaxed_madd), on 1 and 2 threads.
// JSON: test-results/bench-scale-limits.json, bench-scale-<model>.json, and bench-scale.json (everything measured so
// far, so runs of single models accumulate); scripts/bench-scale-summary.mjs writes the BENCHMARKS.md section.
//
// Usage: node scripts/bench-scale.mjs [--models a,b] [--paths native,browser] [--threads 1,2] [--tokens 32]
//          [--image PATH] [--prompt TEXT] [--out-dir test-results] [--skip-limits] [--reconvert] [--webgpu]
//          [--force-browser]
// Models: olmo-bitnet-1b, gemma-2b, llava-1.5-7b, llava-v1.6-mistral-7b ($WEBVLM_SCALE_MODELS sets the default).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, launchChromium } from '../tests/browser/page-harness.mjs';
import { packagePage, startPackageServer } from '../tests/browser/package-harness.mjs';

const ALL = ['olmo-bitnet-1b', 'gemma-2b', 'llava-1.5-7b', 'llava-v1.6-mistral-7b'];
const { values: opt } = parseArgs({ options: {
  models: { type: 'string', default: process.env.WEBVLM_SCALE_MODELS || ALL.join(',') },
  paths: { type: 'string', default: 'native,browser' },
  threads: { type: 'string', default: '1,2' },
  tokens: { type: 'string', default: '32' },
  image: { type: 'string', default: 'tests/fixtures/llava/images/chelsea.png' },
  prompt: { type: 'string', default: 'What is in the image?' },
  'out-dir': { type: 'string', default: 'test-results' },
  'skip-limits': { type: 'boolean', default: false },
  reconvert: { type: 'boolean', default: false },
  webgpu: { type: 'boolean', default: false },
  'force-browser': { type: 'boolean', default: false },
} });

const CLI = path.join(ROOT, 'target/release/webvlm');
const SRC = path.join(ROOT, '.cache/scale/src');
const OUT = path.join(ROOT, '.cache/scale/out');
const RESULTS = path.resolve(ROOT, opt['out-dir']);
const THREADS = opt.threads.split(',').map(Number);
const TOKENS = Number(opt.tokens);
const PATHS = new Set(opt.paths.split(','));
const WASM32_BYTES = 4 * 2 ** 30;
const CLEAN = 0.05; // a run during which others took more than this share of the CPUs is repeated
const ATTEMPTS = Number(process.env.WEBVLM_SCALE_ATTEMPTS || 3);
const contended = (c) => (c?.others_cpu_share ?? 0) > CLEAN;
/** Run `once` until it is not contended (at most ATTEMPTS times); the least contended result, with the tries. */
async function clean(label, once) {
  let best = null;
  for (let i = 1; i <= ATTEMPTS; i++) {
    const r = await once(i);
    r.attempt = i;
    if (!best || (r.contention?.others_cpu_share ?? 0) < (best.contention?.others_cpu_share ?? 0)) best = r;
    if (!contended(r.contention) || r.error) break;
    log(`${label}: others used ${(r.contention.others_cpu_share * 100).toFixed(0)}% of the CPUs during the run; again`);
  }
  return best;
}
const MiB = 2 ** 20;
const log = (...a) => console.error('bench-scale:', ...a);
const r1 = (v, d = 1) => (v == null || !Number.isFinite(v) ? null : Number(v.toFixed(d)));

function writeJson(file, doc) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(doc, null, 1) + '\n');
}
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));
const tail = (s, n = 1500) => (s || '').slice(-n);

/** Busy and total CPU time of the whole machine so far (/proc/stat, seconds) and the load average. */
function cpuSnapshot() {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0) / 100;
  return { busy: total - (v[3] + v[4]) / 100, total, t: performance.now() / 1e3 };
}

/** Others' use of the machine between two snapshots, given the CPU seconds our job used: `others_cpu_share` is
 * the share of all CPUs' time that the rest of the machine took (0 on an idle machine). */
function contention(c0, c1, ownCpuS) {
  const busy = c1.busy - c0.busy;
  const total = c1.total - c0.total;
  if (!(total > 0)) return null;
  const others = Math.max(0, busy - (ownCpuS ?? 0));
  return { machine_busy_share: r1(busy / total, 3), others_cpu_s: r1(others, 1), others_cpu_share: r1(others / total, 3),
    loadavg_end: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number) };
}

const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Wait (up to `maxS`) until the machine is idle: under `limit` of all CPU time busy over 5 s windows. Someone else's
 * build or test run would make every figure meaningless; the wait and any contention during a run are recorded. */
function waitQuiet(limit = 0.12, maxS = 3600) {
  const t0 = performance.now();
  let said = false;
  for (;;) {
    const a = cpuSnapshot();
    sleepSync(5000);
    const b = cpuSnapshot();
    const share = (b.busy - a.busy) / (b.total - a.total);
    const waited = (performance.now() - t0) / 1e3;
    if (share < limit || waited > maxS) {
      if (said) log(`machine idle again after ${waited.toFixed(0)} s`);
      return { waited_s: r1(waited, 0), busy_share_before: r1(share, 3) };
    }
    if (!said) log(`waiting for the machine to be idle (${(share * 100).toFixed(0)}% of CPU busy)`);
    said = true;
  }
}

/** CPU seconds used so far by this process and everything it started that is still alive (the browser). */
function treeCpuS() {
  let s = 0;
  for (const pid of [process.pid, ...descendants(process.pid)]) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      s += (Number(f[11]) + Number(f[12])) / 100; // utime, stime
    } catch { /* gone */ }
  }
  return s;
}

/** Run `cmd args` under /usr/bin/time: { rc, stdout, stderr, wall_s, max_rss_mib }. */
function timed(cmd, args, { timeoutS = 7200 } = {}) {
  const tfile = path.join(os.tmpdir(), `bench-scale-time-${process.pid}.txt`);
  const t0 = performance.now();
  const c0 = cpuSnapshot();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %e %U %S', '-o', tfile, cmd, ...args], {
    cwd: ROOT, encoding: 'utf8', maxBuffer: 256 * MiB, timeout: timeoutS * 1000,
  });
  const wall = (performance.now() - t0) / 1e3;
  const c1 = cpuSnapshot();
  let rss = null;
  let own = null;
  try {
    const line = readFileSync(tfile, 'utf8').trim().split('\n').pop().split(' ');
    rss = Number(line[0]) / 1024;
    own = Number(line[2]) + Number(line[3]);
    rmSync(tfile);
  } catch { /* killed before time wrote it */ }
  return { rc: r.status ?? (r.signal ? `signal ${r.signal}` : r.error?.message), stdout: r.stdout, stderr: r.stderr,
    wall_s: r1(wall, 2), max_rss_mib: r1(rss, 0), cpu_s: r1(own, 1), contention: contention(c0, c1, own) };
}

/** Drop `dir`'s files from the page cache (posix_fadvise DONTNEED): the next read comes from disk. */
function evict(dir) {
  const files = readdirSync(dir).map((f) => path.join(dir, f)).filter((f) => statSync(f).isFile());
  const py = 'import os, sys\nfor p in sys.argv[1:]:\n    fd = os.open(p, os.O_RDONLY)\n' +
    '    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n    os.close(fd)\n';
  return spawnSync('python3', ['-c', py, ...files]).status === 0;
}

// ----------------------------------------------------------------------------------------------
// The converted model: sizes, parameters, formats per part (for ratios and the 4 GiB check)

function part(name) {
  if (/vision_tower|vision_model/.test(name)) return 'vision';
  if (/multi_modal_projector|mm_projector/.test(name)) return 'projector';
  if (/image_newline/.test(name)) return 'other';
  return 'text';
}

function manifestStats(dir) {
  const m = readJson(path.join(dir, 'manifest.json'));
  const parts = {};
  let blockParams = 0;
  let headBytes = 0;
  let embedBytes = 0;
  let hasHead = false;
  for (const t of m.tensors) {
    const p = part(t.name);
    const bytes = Object.values(t.segments).reduce((s, g) => s + g.length, 0);
    const params = t.shape.reduce((a, b) => a * b, 1);
    const e = (parts[p] ??= { bytes: 0, params: 0, formats: {} });
    e.bytes += bytes;
    e.params += params;
    e.formats[t.format] = (e.formats[t.format] || 0) + 1;
    if (p !== 'text') continue;
    if (/(embed_tokens|wte)\.weight$/.test(t.name)) embedBytes += bytes;
    else if (/lm_head\.weight$/.test(t.name)) { headBytes += bytes; hasHead = true; } else if (t.shape.length === 2) blockParams += params;
  }
  const shardBytes = m.shards.reduce((s, f) => s + f.size, 0);
  const text = parts.text || { bytes: 0 };
  // Read per decoded token: the text model's weights less the embedding table (one row is read) unless it is also
  // the output head (tied).
  const perToken = text.bytes - (hasHead ? embedBytes : 0);
  return { shard_bytes: shardBytes, shards: m.shards.length, parts, block_linear_params: blockParams,
    embed_bytes: embedBytes, head_bytes: headBytes, tied_head: !hasHead, bytes_read_per_token: perToken,
    model_type: m.model_type };
}

// ----------------------------------------------------------------------------------------------
// FLOPs of the vision tower per image (ratios to the multiply-add peak)

function visionFlopsPerTile(cfg) {
  const v = cfg.vision_config || {};
  const d = v.hidden_size || 1024;
  const ff = v.intermediate_size || 4096;
  const layers = v.num_hidden_layers || 24;
  const patch = v.patch_size || 14;
  const size = v.image_size || 336;
  const n = (size / patch) ** 2 + 1;
  const sel = cfg.vision_feature_layer ?? cfg.mm_vision_select_layer ?? -2;
  const run = sel < 0 ? layers + 1 + sel : sel; // layers the feature layer needs
  const perLayer = 2 * n * (4 * d * d + 2 * d * ff) + 2 * 2 * n * n * d;
  return run * perLayer + 2 * (n - 1) * 3 * patch * patch * d;
}

/** LLaVA-NeXT's anyres choice (select_best_resolution): tiles = base + the grid's tiles. */
function tilesFor(cfg, width, height) {
  if (!cfg.image_grid_pinpoints) return 1;
  let best = null;
  let bestEff = 0;
  let bestWaste = Infinity;
  for (const [h, w] of cfg.image_grid_pinpoints) {
    const scale = Math.min(w / width, h / height);
    const eff = Math.min(Math.floor(width * scale) * Math.floor(height * scale), width * height);
    const waste = w * h - eff;
    if (eff > bestEff || (eff === bestEff && waste < bestWaste)) [best, bestEff, bestWaste] = [[h, w], eff, waste];
  }
  const size = cfg.vision_config?.image_size || 336;
  return 1 + (best[0] / size) * (best[1] / size);
}

function pngSize(file) {
  const b = readFileSync(file);
  return b.readUInt32BE(0) === 0x89504e47 ? { width: b.readUInt32BE(16), height: b.readUInt32BE(20) } : null;
}

// ----------------------------------------------------------------------------------------------
// The machine's limits

async function nativeLimits() {
  const bin = path.join(ROOT, '.cache/scale/peak_flops');
  const src = path.join(ROOT, 'tools/scale/peak_flops.c');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(path.dirname(bin), { recursive: true });
    const c = spawnSync('gcc', ['-O2', '-pthread', '-o', bin, src], { encoding: 'utf8' });
    if (c.status !== 0) return { error: `gcc: ${tail(c.stderr, 400)}` };
  }
  const out = { peak: null, read: null, gemv: null };
  const p = await clean('peak_flops', () => {
    const waited = waitQuiet();
    log('machine limits: multiply-add peak (tools/scale/peak_flops.c)');
    return { ...timed(bin, THREADS.map(String)), waited };
  });
  out.peak = p.rc === 0 ? JSON.parse(p.stdout) : { error: tail(p.stderr, 400) };
  out.peak_contention = { ...p.contention, attempt: p.attempt, waited_for_idle: p.waited };
  const b = await clean('webvlm bench', () => {
    const waited = waitQuiet();
    log('machine limits: read bandwidth and GEMV (webvlm bench --no-vision)');
    return { ...timed(CLI, ['bench', '--no-vision', '--json']), waited };
  });
  out.read_contention = { ...b.contention, attempt: b.attempt, waited_for_idle: b.waited };
  if (b.rc === 0) {
    const doc = JSON.parse(b.stdout);
    out.read = doc.gemv?.read ?? null;
    out.llc_mib = doc.gemv?.llc_mib ?? null;
    out.gemv = doc.gemv?.gemv ?? null;
  } else out.read_error = tail(b.stderr, 400);
  return out;
}

/** wasm f32x4 multiply-add loops (12 chains), text for binaryen. */
function peakWat(relaxed) {
  const chains = 12;
  const locals = Array.from({ length: chains }, (_, i) => `(local $a${i} v128)`).join(' ');
  const init = Array.from({ length: chains }, (_, i) => `(local.set $a${i} (f32x4.splat (f32.const ${1 + i / 1000})))`);
  const step = Array.from({ length: chains }, (_, i) => (relaxed
    ? `(local.set $a${i} (f32x4.relaxed_madd (local.get $a${i}) (local.get $b) (local.get $c)))`
    : `(local.set $a${i} (f32x4.add (f32x4.mul (local.get $a${i}) (local.get $b)) (local.get $c)))`));
  let sum = '(local.get $a0)';
  for (let i = 1; i < chains; i++) sum = `(f32x4.add ${sum} (local.get $a${i}))`;
  return `(module (func (export "run") (param $n i32) (result f32) ${locals} (local $b v128) (local $c v128)
    ${init.join('\n')}
    (local.set $b (f32x4.splat (f32.const 0.999999)))
    (local.set $c (f32x4.splat (f32.const 0.000001)))
    (loop $l ${step.join('\n')}
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
    (f32x4.extract_lane 0 ${sum})))`;
}

async function browserLimits(server) {
  return clean('wasm peak', async () => {
    const waited = waitQuiet();
    const r = await browserLimitsOnce(server);
    r.waited_for_idle = waited;
    return r;
  });
}

async function browserLimitsOnce(server) {
  const { default: binaryen } = await import('binaryen');
  const mods = {};
  for (const [name, relaxed] of [['wasm_simd128_muladd', false], ['wasm_relaxed_madd', true]]) {
    const m = binaryen.parseText(peakWat(relaxed));
    m.setFeatures(binaryen.Features.All);
    if (!m.validate()) throw new Error(`peak ${name}: invalid module`);
    mods[name] = Array.from(m.emitBinary());
    m.dispose();
  }
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    const c0 = cpuSnapshot();
    const own0 = treeCpuS();
    const res = await page.evaluate(async ({ mods, threads }) => {
      // Each thread: a worker (Blob URL) that runs `run(n)` when told and reports its own seconds.
      const src = `onmessage = async (e) => { const { module, n } = e.data;
        const inst = await WebAssembly.instantiate(module); const t0 = performance.now(); inst.exports.run(n);
        postMessage((performance.now() - t0) / 1e3); };`;
      const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
      const rows = [];
      for (const [kernel, bytes] of Object.entries(mods)) {
        const buf = new Uint8Array(bytes);
        if (!WebAssembly.validate(buf)) {
          rows.push({ kernel, error: 'not supported by this browser' });
          continue;
        }
        const module = await WebAssembly.compile(buf);
        const flopsPerIter = 12 * 4 * 2;
        const runOn = (t, n) => Promise.all(Array.from({ length: t }, () => new Promise((resolve) => {
          const w = new Worker(url);
          w.onmessage = (e) => { w.terminate(); resolve(e.data); };
          w.postMessage({ module, n });
        })));
        let n = 1 << 20;
        while ((await runOn(1, n))[0] < 0.25) n *= 2;
        n *= 4;
        for (const t of threads) {
          let best = 0;
          for (let r = 0; r < 3; r++) {
            const secs = await runOn(t, n);
            best = Math.max(best, (t * n * flopsPerIter) / Math.max(...secs) / 1e9);
          }
          rows.push({ kernel, threads: t, gflops: Number(best.toFixed(2)) });
        }
      }
      return { rows, user_agent: navigator.userAgent };
    }, { mods, threads: THREADS });
    res.contention = contention(c0, cpuSnapshot(), treeCpuS() - own0); // the browser is still alive here
    return res;
  } finally {
    await browser.close();
  }
}

// ----------------------------------------------------------------------------------------------
// Convert

async function convert(name, dirName = name) {
  const src = path.join(SRC, dirName);
  const out = path.join(OUT, dirName);
  const stamp = readJson(path.join(SRC, name, '.scale-kit.json'));
  const info = path.join(OUT, `${dirName}.convert.json`);
  if (!opt.reconvert && existsSync(info) && existsSync(path.join(out, 'manifest.json'))) {
    const prev = readJson(info);
    if (prev.source_sha256 === stamp.spec_sha256 && prev.rc === 0) {
      log(`${name}: converted before (${prev.date}), reused (--reconvert to redo)`);
      return { ...prev, reused: true };
    }
  }
  rmSync(out, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const args = ['convert', src, '--out', out];
  const r = await clean(`${name} convert`, () => {
    rmSync(out, { recursive: true, force: true });
    const q = waitQuiet();
    log(`${name}: webvlm ${args.join(' ')}`);
    return { ...timed(CLI, args), quiet: q };
  });
  const quiet = r.quiet;
  const doc = { command: `target/release/webvlm ${args.map((a) => (a.startsWith('/') ? path.relative(ROOT, a) : a)).join(' ')}`,
    rc: r.rc, wall_s: r.wall_s, max_rss_mib: r.max_rss_mib, cpu_s: r.cpu_s, waited_for_idle: quiet,
    contention: r.contention, attempt: r.attempt, source_sha256: stamp.spec_sha256,
    webvlm_mtime: new Date(statSync(CLI).mtimeMs).toISOString(), date: new Date().toISOString(),
    stderr_tail: tail(r.stderr, r.rc === 0 ? 600 : 3000) };
  writeJson(info, doc);
  if (r.rc !== 0) log(`${name}: convert failed (rc ${r.rc}):\n${tail(r.stderr, 2000)}`);
  return doc;
}

// ----------------------------------------------------------------------------------------------
// Native

async function nativeRuns(name, model) {
  const rows = [];
  let first = true;
  for (const t of THREADS) {
    const cold = first && evict(model);
    first = false;
    const args = ['generate', '--model', model, '--image', opt.image, '--chat', '--prompt', opt.prompt,
      '--max-new-tokens', String(TOKENS), '--threads', String(t), '--json'];
    const r = await clean(`${name} native ${t}`, () => {
      const q = waitQuiet();
      if (cold) evict(model);
      log(`${name}: native, ${t} thread(s)${cold ? ' (page cache evicted: cold load)' : ''}`);
      return { ...timed(CLI, args), quiet: q };
    });
    const quiet = r.quiet;
    const row = { where: 'native', threads: t, cold_load: cold, rc: r.rc, wall_s: r.wall_s, peak_rss_mib: r.max_rss_mib,
      cpu_s: r.cpu_s, waited_for_idle: quiet, contention: r.contention, attempt: r.attempt,
      webvlm_built: new Date(statSync(CLI).mtimeMs).toISOString(),
      command: `target/release/webvlm ${args.map((a) => (a.startsWith('/') ? path.relative(ROOT, a) : a))
        .map((a) => (a.includes(' ') ? `"${a}"` : a)).join(' ')}` };
    if (r.rc === 0) {
      const doc = JSON.parse(r.stdout.trim().split('\n').pop());
      const tm = doc.timings;
      Object.assign(row, { load_ms: r1(tm.load_ms), image_encode_ms: r1(tm.image_encode_ms), prefill_ms: r1(tm.prefill_ms),
        prefill_tokens: tm.prefill_tokens, image_tokens: doc.image_tokens, ttft_ms: r1(tm.image_encode_ms + tm.prefill_ms),
        decode_tokens: tm.decode_tokens, decode_tokens_per_s: r1(tm.decode_tokens_per_s, 2), stop: doc.stop,
        backend: doc.backend, text: String(doc.text).slice(0, 120) });
      log(`${name}: native ${t}: load ${row.load_ms} ms, image ${row.image_encode_ms} ms, prefill ${row.prefill_tokens} ` +
        `tokens ${row.prefill_ms} ms, decode ${row.decode_tokens_per_s} tok/s, peak RSS ${row.peak_rss_mib} MiB`);
    } else {
      row.error = tail(r.stderr, 2000);
      log(`${name}: native ${t} failed (rc ${r.rc}): ${tail(r.stderr, 600)}`);
    }
    rows.push(row);
  }
  return rows;
}

// ----------------------------------------------------------------------------------------------
// Browser

/** The process tree under this Node process (the launched Chromium): pid list. */
function descendants(root) {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch { /* gone */ }
  }
  const out = [];
  const stack = [...(kids.get(root) || [])];
  while (stack.length) {
    const p = stack.pop();
    out.push(p);
    stack.push(...(kids.get(p) || []));
  }
  return out;
}

/** Sample the browser's memory every `ms`: peak sum of PSS and peak single-process RSS (MiB). */
function memorySampler(ms = 500) {
  const peak = { pss_sum_mib: 0, rss_max_mib: 0, rss_sum_mib: 0 };
  const sample = () => {
    let pss = 0;
    let rssSum = 0;
    let rssMax = 0;
    for (const pid of descendants(process.pid)) {
      try {
        const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] || 0);
        const p = Number(/Pss:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] || 0);
        pss += p;
        rssSum += rss;
        rssMax = Math.max(rssMax, rss);
      } catch { /* gone */ }
    }
    peak.pss_sum_mib = Math.max(peak.pss_sum_mib, pss / 1024);
    peak.rss_sum_mib = Math.max(peak.rss_sum_mib, rssSum / 1024);
    peak.rss_max_mib = Math.max(peak.rss_max_mib, rssMax / 1024);
  };
  sample();
  const timer = setInterval(sample, ms);
  return { stop: () => { clearInterval(timer); sample(); return Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, r1(v, 0)])); } };
}

/** Bytes of the engine worker's WebAssembly.Memory (threaded build: the shared one). */
async function wasmMemoryBytes(page, { threaded, relaxed }) {
  const worker = page.workers().filter((w) => /\/dist\/worker\.js/.test(w.url())).pop();
  if (!worker) return null;
  return worker.evaluate(async ({ threaded, relaxed }) => {
    // the glue the engine loaded (same URL: the same, initialised module instance)
    const dir = `./pkg${threaded ? '-threads' : ''}${relaxed ? '-relaxed' : ''}/webvlm.js`;
    const g = await import(new URL(dir, self.location.href).href);
    if (threaded) return g.wasm_memory().buffer.byteLength;
    const exports = await g.default(); // initialised already: returns its exports
    return exports.memory.buffer.byteLength;
  }, { threaded, relaxed }).catch((e) => `error: ${e.message}`);
}

async function browserRun(browser, server, name, threads) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(server.url);
  await page.waitForFunction(() => window.webvlmReady === true);
  await page.evaluate(() => caches.keys().then((k) => Promise.all(k.map((n) => caches.delete(n)))));
  const manifest = `/m/${name}/manifest.json`;
  const row = { where: 'chromium', path: 'cpu', threads_asked: threads,
    dist_built: new Date(statSync(path.join(ROOT, 'dist/index.js')).mtimeMs).toISOString() };
  try {
    row.waited_for_idle = waitQuiet();
    const c0 = cpuSnapshot();
    const own0 = treeCpuS();
    let mem = memorySampler();
    const cold = await page.evaluate(async ({ manifest, threads }) => {
      const t0 = performance.now();
      const e = await window.webvlm.createEngine({ model: manifest, backend: 'cpu', threads });
      const ms = performance.now() - t0;
      const info = { ...e.info };
      await e.unload();
      return { ms, info: JSON.parse(JSON.stringify(info)) };
    }, { manifest, threads });
    row.cold_load_ms = r1(cold.ms, 0);
    row.download = cold.info.download ?? null;
    row.memory_cold_load = mem.stop();
    mem = memorySampler();
    const t1 = Date.now();
    const warm = await page.evaluate(async ({ manifest, threads }) => {
      const t0 = performance.now();
      window.bench = await window.webvlm.createEngine({ model: manifest, backend: 'cpu', threads });
      return { ms: performance.now() - t0, info: JSON.parse(JSON.stringify(window.bench.info)) };
    }, { manifest, threads });
    Object.assign(row, { cached_load_ms: r1(warm.ms, 0), backend: warm.info.backend, threads: warm.info.threads ?? null,
      threads_reason: warm.info.threads_reason ?? null, simd: warm.info.simd ?? null,
      simd_reason: warm.info.simd_reason ?? null });
    const ans = await page.evaluate(async ({ prompt, tokens, imageUrl }) => {
      const r = await window.bench.chat.completions.create({ messages: [{ role: 'user', content: [
        { type: 'image_url', image_url: { url: imageUrl } }, { type: 'text', text: prompt }] }],
      max_tokens: tokens, temperature: 0 });
      const w = r.webvlm;
      return { ttft_ms: w.ttft_ms, timings: w.timings, backend: w.backend, finish: r.choices[0].finish_reason,
        text: r.choices[0].message.content, usage: r.usage };
    }, { prompt: opt.prompt, tokens: TOKENS, imageUrl: `/img/${path.basename(opt.image)}` });
    row.contention = contention(c0, cpuSnapshot(), treeCpuS() - own0);
    row.wasm_memory_mib = await wasmMemoryBytes(page, { threaded: (row.threads ?? 1) > 1, relaxed: row.simd === 'relaxed' })
      .then((b) => (typeof b === 'number' ? r1(b / MiB, 0) : b));
    row.memory_cached_load_and_answer = mem.stop();
    const tm = ans.timings;
    Object.assign(row, { ttft_ms: r1(ans.ttft_ms), image_encode_ms: r1(tm.image_encode_ms), prefill_ms: r1(tm.prefill_ms),
      prefill_tokens: tm.prefill_tokens, decode_tokens: tm.decode_tokens,
      decode_tokens_per_s: r1(tm.decode_tokens_per_s, 2), finish: ans.finish, text: String(ans.text).slice(0, 120),
      answer_wall_s: r1((Date.now() - t1) / 1e3, 1) });
    await page.evaluate(() => window.bench.unload());
    log(`${name}: chromium ${row.threads} thread(s): cold ${row.cold_load_ms} ms, cached ${row.cached_load_ms} ms, ` +
      `image ${row.image_encode_ms} ms, prefill ${row.prefill_tokens} tokens ${row.prefill_ms} ms, ttft ${row.ttft_ms} ms, ` +
      `decode ${row.decode_tokens_per_s} tok/s, wasm ${row.wasm_memory_mib} MiB, ` +
      `browser PSS ${row.memory_cached_load_and_answer.pss_sum_mib} MiB`);
  } catch (e) {
    row.error = String(e.message || e).slice(0, 2000);
    log(`${name}: chromium ${threads} thread(s) failed: ${row.error.slice(0, 600)}`);
  } finally {
    if (errors.length) row.page_errors = errors.slice(0, 10);
    await page.close();
  }
  return row;
}

function browserRefusal(stats, cfg) {
  const weights = stats.shard_bytes;
  const kvPerToken = kvBytesPerToken(cfg);
  if (weights + 256 * MiB <= WASM32_BYTES || opt['force-browser']) return null;
  const gib = (b) => (b / 2 ** 30).toFixed(2);
  return {
    reason: `the converted model is ${gib(weights)} GiB of weights (${gib(stats.parts.text?.bytes ?? 0)} GiB language ` +
      `model, ${gib(stats.parts.vision?.bytes ?? 0)} GiB vision tower), which the engine holds in wasm32 linear memory: ` +
      `over its 4 GiB address space before the KV cache (${(kvPerToken / 1024).toFixed(0)} KiB per token in f32) ` +
      'and activations',
    needs: 'weights outside the 4 GiB heap: memory64 (wasm64, not yet shipped by default in browsers) or weights kept ' +
      'in JS ArrayBuffers / WebGPU buffers and streamed per layer; or fewer bits (a 7B at 3 bits is ~2.6 GiB) so that ' +
      'weights + KV cache fit under 4 GiB',
  };
}

function kvBytesPerToken(cfg) {
  const t = cfg.text_config || cfg;
  const layers = t.num_hidden_layers ?? t.n_layers ?? 32;
  const heads = t.num_attention_heads ?? t.n_heads ?? 32;
  const kv = t.num_key_value_heads ?? t.n_kv_heads ?? heads;
  const d = t.hidden_size ?? t.d_model ?? 4096;
  const hd = t.head_dim ?? d / heads;
  return 2 * layers * kv * hd * 4;
}

// ----------------------------------------------------------------------------------------------

async function main() {
  const models = opt.models.split(',').filter(Boolean);
  for (const m of models) if (!ALL.includes(m)) throw new Error(`unknown model ${m} (${ALL.join(', ')})`);
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: build first (cargo build --release / npm run build)`);
  if (PATHS.has('browser') && !existsSync(path.join(ROOT, 'dist/index.js'))) {
    throw new Error('dist/index.js missing: run npm run build first (or --paths native)');
  }
  log(`checkpoints: python3 tools/scale/make_checkpoints.py ${models.join(' ')}`);
  const mk = spawnSync('python3', [path.join(ROOT, 'tools/scale/make_checkpoints.py'), ...models], { stdio: 'inherit' });
  if (mk.status !== 0) throw new Error('make_checkpoints.py failed');
  mkdirSync(RESULTS, { recursive: true });

  const imageDir = path.dirname(path.resolve(ROOT, opt.image));
  const roots = [['/img/', imageDir], ['/dist/', path.join(ROOT, 'dist')]];
  for (const m of models) {
    roots.unshift([`/m/${m}/`, path.join(OUT, m)], [`/m/${m}-explicit-config/`, path.join(OUT, `${m}-explicit-config`)]);
  }
  const server = PATHS.has('browser')
    ? await startPackageServer({ roots, pages: { '/': packagePage('/dist/index.js') } })
    : null;
  try {
    const limitsFile = path.join(RESULTS, 'bench-scale-limits.json');
    if (!opt['skip-limits']) {
      const limits = { date: new Date().toISOString(), native: await nativeLimits() };
      if (server) {
        log('machine limits: wasm multiply-add peak in Chromium');
        limits.chromium = await browserLimits(server).catch((e) => ({ error: String(e.message || e) }));
      }
      writeJson(limitsFile, limits);
    }
    const size = pngSize(path.resolve(ROOT, opt.image));
    for (const name of models) {
      const src = path.join(SRC, name);
      const stamp = readJson(path.join(src, '.scale-kit.json'));
      const cfg = readJson(path.join(src, 'config.json'));
      const doc = { model: name, published: stamp.published, source: { dir: path.relative(ROOT, src),
        parameters: stamp.parameters, bytes: stamp.bytes, dtype: stamp.dtype }, image: opt.image, image_size: size,
      prompt: opt.prompt, max_new_tokens: TOKENS, date: new Date().toISOString() };
      doc.convert = await convert(name);
      let dirName = name;
      if (doc.convert.rc !== 0 && cfg.text_config && /missing field/.test(doc.convert.stderr_tail)) {
        // The published llava-hf configs leave the text model's transformers defaults out; a reader that needs them
        // fails. Measure the same weights with the defaults written out, and report both.
        log(`${name}: the published config.json does not convert; retrying with its text_config defaults written out`);
        const mk2 = spawnSync('python3', [path.join(ROOT, 'tools/scale/make_checkpoints.py'), '--explicit-config', name],
          { stdio: 'inherit' });
        if (mk2.status === 0) {
          dirName = `${name}-explicit-config`;
          doc.convert_published_config = doc.convert;
          doc.convert = { ...(await convert(name, dirName)), variant: 'explicit-config',
            note: 'config.json with transformers\' LlamaConfig/MistralConfig defaults written into text_config ' +
              '(tools/scale/make_checkpoints.py --explicit-config); same shards' };
        }
      }
      if (doc.convert.rc !== 0) {
        doc.native = THREADS.map((t) => ({ where: 'native', threads: t, error: 'convert failed', skipped: true }));
        doc.browser = THREADS.map((t) => ({ where: 'chromium', path: 'cpu', threads_asked: t, skipped: true,
          reason: 'convert failed' }));
        writeJson(path.join(RESULTS, `bench-scale-${name}.json`), doc);
        continue;
      }
      const model = path.join(OUT, dirName);
      doc.converted = manifestStats(model);
      doc.vision_flops_per_tile = visionFlopsPerTile(cfg);
      doc.tiles = size ? tilesFor(cfg, size.width, size.height) : 1;
      doc.kv_bytes_per_token_f32 = kvBytesPerToken(cfg);
      if (PATHS.has('native')) doc.native = await nativeRuns(name, model);
      if (PATHS.has('browser')) {
        const refusal = browserRefusal(doc.converted, cfg);
        doc.browser = [];
        if (refusal) {
          for (const t of THREADS) doc.browser.push({ where: 'chromium', path: 'cpu', threads_asked: t, skipped: true, ...refusal });
          log(`${name}: chromium not run: ${refusal.reason}`);
        } else {
          const browser = await launchChromium();
          try {
            for (const t of THREADS) {
              doc.browser.push(await clean(`${name} chromium ${t}`, () => browserRun(browser, server, dirName, t)));
            }
          } finally {
            await browser.close();
          }
        }
        doc.browser.push(opt.webgpu ? { where: 'chromium', path: 'webgpu', skipped: true,
          reason: '--webgpu is not implemented for the scale models yet' } : {
          where: 'chromium', path: 'webgpu', skipped: true,
          reason: 'the only WebGPU adapter in this headless setup is SwiftShader (a CPU rasterizer), which decodes ' +
            'SmolLM2-135M at about 0.2 tokens/s: a 1B+ model with a 576-token image prompt would take hours',
          needs: 'a hardware GPU adapter (the WebGPU path then runs the decoder; images are still encoded on the CPU)' });
      }
      writeJson(path.join(RESULTS, `bench-scale-${name}.json`), doc);
    }
  } finally {
    await server?.close();
  }
  // everything measured so far, for the summary
  const git = (a) => spawnSync('git', a, { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const all = { date: new Date().toISOString(), cpus: os.cpus().length, cpu: os.cpus()[0]?.model,
    git_head: git(['rev-parse', '--short', 'HEAD']), git_dirty_files: git(['status', '--short']).split('\n').filter(Boolean).length,
    webvlm_built: new Date(statSync(CLI).mtimeMs).toISOString(),
    limits: existsSync(path.join(RESULTS, 'bench-scale-limits.json')) ? readJson(path.join(RESULTS, 'bench-scale-limits.json')) : null,
    models: ALL.filter((m) => existsSync(path.join(RESULTS, `bench-scale-${m}.json`)))
      .map((m) => readJson(path.join(RESULTS, `bench-scale-${m}.json`))) };
  writeJson(path.join(RESULTS, 'bench-scale.json'), all);
  log(`wrote ${path.relative(ROOT, path.join(RESULTS, 'bench-scale.json'))}`);
}

// Exit when done: a keep-alive socket of the file server or a child's pipe can otherwise hold the
// event loop open after everything is written (seen after a 45-minute run).
main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
