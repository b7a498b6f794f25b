#!/usr/bin/env node
// The measuring half of `npm run bench:peers` (scripts/bench-peers.sh does the set-up and calls this with the
// paths it built). SmolLM2-135M decode, side by side, in interleaved rounds: each round runs, for each thread
// count, read bandwidth, llama.cpp native (llama-completion, and llama-bench), webvlm native (`generate`),
// webvlm in headless Chromium (scripts/bench-browser.mjs, CPU path) and wllama in the same Chromium.
//
// Every measurement waits for an idle machine first (total busy CPU from /proc/stat below --idle cores for
// --settle consecutive seconds; after --max-wait seconds it runs anyway and says so), then records the CPU the
// rest of the machine used while it ran (busy core-seconds minus those of this process and the measured
// process tree). A run where others used more than --disturbed of a core (default 0.1) is flagged, re-run up
// to --retries times (default 2) if the machine becomes idle within --retry-wait seconds, and left out of the
// pooled figures when a clean sample exists. --resume continues an interrupted run from its JSON.
// --steps picks and orders nothing but a subset (membw,llamacpp,llamabench,webvlm,browser,wllama).
//
// Writes test-results/bench-peers.json (every sample, the pooled table, the per-round ratios), the markdown
// to test-results/bench-peers.md, and replaces the "## Side by side with llama.cpp" section of BENCHMARKS.md
// (--no-markdown: not). `--run-wllama THREADS` is internal: one wllama measurement in a fresh Chromium,
// printed as JSON (run as a child process so its CPU is tracked like the others').
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, closeSync, readSync }
  from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECTION = '## Side by side with llama.cpp';

const { values: opt } = parseArgs({ options: {
  rounds: { type: 'string', default: '3' },
  threads: { type: 'string', default: '1,2' },
  tokens: { type: 'string', default: '64' },
  out: { type: 'string', default: 'test-results/bench-peers.json' },
  idle: { type: 'string', default: '0.15' },
  settle: { type: 'string', default: '3' },
  'max-wait': { type: 'string', default: '300' },
  'retry-wait': { type: 'string', default: '120' },
  resume: { type: 'boolean', default: false },
  disturbed: { type: 'string', default: '0.10' },
  retries: { type: 'string', default: '2' },
  'step-timeout': { type: 'string', default: '600' },
  steps: { type: 'string', default: 'membw,llamacpp,llamabench,webvlm,browser,wllama' },
  'no-wllama': { type: 'boolean', default: false },
  'no-llama-bench': { type: 'boolean', default: false },
  'no-markdown': { type: 'boolean', default: false },
  'summary-only': { type: 'boolean', default: false },
  peers: { type: 'string', default: '.cache/peers' },
  'lcpp-bin': { type: 'string', default: '.cache/peers/llama.cpp-build/bin' },
  membw: { type: 'string', default: '.cache/peers/membw' },
  gguf: { type: 'string', default: '.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf' },
  model: { type: 'string', default: '.cache/models/smollm2-135m-int4' },
  prompt: { type: 'string', default: 'tests/fixtures/prompt64.txt' },
  'lcpp-version': { type: 'string', default: '' },
  'lcpp-flags': { type: 'string', default: '' },
  'wllama-version': { type: 'string', default: '' },
  'run-wllama': { type: 'string' },
} });

const TOKENS = Number(opt.tokens);
const PROMPT = readFileSync(path.resolve(ROOT, opt.prompt), 'utf8').replace(/\n$/, '');
const WLLAMA_DIR = path.resolve(ROOT, opt.peers, 'wllama/node_modules/@wllama/wllama');
const CHECK_PROMPT = 'The capital of France is';

// ---------------------------------------------------------------------------------------------------------
// CPU accounting from /proc.

const TCK = 100; // USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK)

/** Busy and steal core-seconds since boot (busy excludes idle, iowait and steal). */
function cpuTotals() {
  const v = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  const all = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (all - v[3] - v[4] - v[7]) / TCK, steal: v[7] / TCK };
}

/** pid -> { ppid, cpu (utime+stime seconds), start } for every process. */
function procTable() {
  const t = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let s;
    try { s = readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    t.set(Number(d), { ppid: Number(rest[1]), cpu: (Number(rest[11]) + Number(rest[12])) / TCK, start: rest[19] });
  }
  return t;
}

/** CPU seconds of this process (the sampler's own cost counts as ours, not as others'). */
function selfCpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Set while re-running a disturbed measurement: it then runs only on an idle machine (--retry-wait), or not. */
let retrying = false;
class NotIdle extends Error {}

/** Wait until the machine is idle: busy < idle cores for `settle` consecutive 1-s windows, at most maxWait s. */
async function waitIdle() {
  const idle = Number(opt.idle), settle = Number(opt.settle);
  const maxWait = Number(retrying ? opt['retry-wait'] : opt['max-wait']);
  const t0 = Date.now();
  let ok = 0, last = cpuTotals(), worst = 0;
  while (ok < settle) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuTotals();
    const busy = now.busy - last.busy;
    last = now;
    ok = busy < idle ? ok + 1 : 0;
    worst = Math.max(worst, busy);
    if ((Date.now() - t0) / 1000 > maxWait) {
      if (retrying) throw new NotIdle(`machine not idle for ${settle} s within ${maxWait} s; no re-run`);
      console.error(`bench-peers: machine not idle for ${settle} s within ${maxWait} s; measuring anyway`);
      return { waited_s: (Date.now() - t0) / 1000, idle: false };
    }
  }
  return { waited_s: (Date.now() - t0) / 1000, idle: true };
}

/**
 * Run `cmd args` after waitIdle, in its own process group, tracking the CPU of its whole process tree (every
 * 0.25 s: Chromium's helpers are not reaped by us, so rusage alone would miss them). Resolves to
 * { rc, stdout, stderr, wall_s, self_cpu_s, others_cpu_s, others_cores, steal_s, waited_s, idle_before }.
 */
async function runQuiet(cmd, args, { cwd = ROOT } = {}) {
  const w = await waitIdle();
  const c0 = cpuTotals(), s0 = selfCpu(), t0 = performance.now();
  // bash's `times` reports the CPU of every descendant it waited for (exact, even for a 0.2-s command the
  // sampler never sees); the sampler adds the processes that were not reaped through it (Chromium's helpers).
  const child = spawn('bash', ['-c', '"$@"; rc=$?; times >&3; exit $rc', 'bench-peers', cmd, ...args],
    { cwd, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], detached: true });
  let times = '';
  child.stdio[3].on('data', (d) => { times += d; });
  const seen = new Map();
  const sample = () => {
    const t = procTable();
    const kids = new Map();
    for (const [pid, p] of t) (kids.get(p.ppid) || kids.set(p.ppid, []).get(p.ppid)).push(pid);
    const todo = [...(kids.get(process.pid) || [])];
    while (todo.length) {
      const pid = todo.pop();
      const p = t.get(pid);
      const key = `${pid}:${p.start}`;
      seen.set(key, Math.max(seen.get(key) || 0, p.cpu));
      todo.push(...(kids.get(pid) || []));
    }
  };
  const timer = setInterval(sample, 250);
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const limit = setTimeout(() => {
    stderr += `\nbench-peers: killed after ${opt['step-timeout']} s\n`;
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  }, Number(opt['step-timeout']) * 1000);
  const rc = await new Promise((resolve) => {
    child.on('error', (e) => { stderr += String(e); resolve(-1); });
    child.on('close', (code, sig) => resolve(code ?? (sig ? 128 : -1)));
  });
  clearTimeout(limit);
  clearInterval(timer);
  const wall = (performance.now() - t0) / 1000;
  const c1 = cpuTotals();
  const reaped = [...(times.trim().split('\n')[1] || '').matchAll(/(\d+)m([\d.]+)s/g)]
    .reduce((a, m) => a + Number(m[1]) * 60 + Number(m[2]), 0); // children's user + system
  const tree = [...seen.values()].reduce((a, b) => a + b, 0);
  const self = Math.max(reaped, tree) + (selfCpu() - s0);
  const others = Math.max(0, c1.busy - c0.busy - self);
  return { rc, stdout, stderr, wall_s: wall, self_cpu_s: self, tree_cpu_s: { reaped, sampled: tree }, others_cpu_s: others, others_cores: others / wall,
    steal_s: c1.steal - c0.steal, waited_s: w.waited_s, idle_before: w.idle };
}

// ---------------------------------------------------------------------------------------------------------
// Weight bytes read per decoded token.

/** Sum of the tensor bytes in a webvlm manifest (tied embeddings: the LM head reads the whole table). */
function webvlmWeightBytes(dir) {
  const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  let n = 0;
  for (const t of m.tensors) for (const s of Object.values(t.segments)) n += s.length;
  return n;
}

/** Tensor bytes of a GGUF (v2/v3), from its tensor table; minus all but one row of token_embd when an
 * output.weight exists (then the embedding is only gathered). */
function ggufWeightBytes(file) {
  const fd = openSync(file, 'r');
  const size = statSync(file).size;
  const buf = Buffer.alloc(Math.min(size, 64 << 20));
  readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  let o = 0;
  const u32 = () => { const v = buf.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(o)); o += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', o, o + n); o += n; return s; };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (type) => {
    if (type === 8) return void str();
    if (type === 9) { const et = u32(); const n = u64(); for (let i = 0; i < n; i++) skip(et); return; }
    o += SIZES[type];
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${file}: not a GGUF`);
  o = 4;
  u32();
  const nt = u64(), nkv = u64();
  let align = 32;
  for (let i = 0; i < nkv; i++) {
    const key = str();
    const type = u32();
    if (key === 'general.alignment' && type === 4) align = u32();
    else skip(type);
  }
  const tensors = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const dims = Array.from({ length: nd }, u64);
    const type = u32();
    tensors.push({ name, dims, type, offset: u64() });
  }
  const dataStart = Math.ceil(o / align) * align;
  // block size (elements) and bytes per block of the ggml types SmolLM2's GGUFs use; others from the offsets
  const BLOCK = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 30: [1, 2] };
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  const bytes = new Map();
  byOffset.forEach((t, i) => {
    const b = BLOCK[t.type];
    const n = t.dims.reduce((a, c) => a * c, 1);
    bytes.set(t.name, b ? (n / b[0]) * b[1]
      : (i + 1 < byOffset.length ? byOffset[i + 1].offset : size - dataStart) - t.offset);
  });
  let total = [...bytes.values()].reduce((a, b) => a + b, 0);
  const emb = tensors.find((t) => t.name === 'token_embd.weight');
  if (emb && bytes.has('output.weight')) total -= bytes.get(emb.name) - bytes.get(emb.name) / emb.dims[1];
  return total;
}

// ---------------------------------------------------------------------------------------------------------
// wllama in Chromium (child mode).

async function runWllama(threads) {
  const { launchChromium } = await import('../tests/browser/page-harness.mjs');
  const { startPackageServer } = await import('../tests/browser/package-harness.mjs');
  const page0 = `<!doctype html><meta charset="utf-8"><title>wllama bench</title>
<script type="module">
import { Wllama } from '/wllama/esm/index.js';
window.Wllama = Wllama;
window.wllamaReady = true;
</script>`;
  const server = await startPackageServer({ roots: [['/wllama/', WLLAMA_DIR],
    ['/model/', path.dirname(path.resolve(ROOT, opt.gguf))]], pages: { '/': page0 } });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
    });
    page.on('response', (x) => {
      if (x.status() >= 400 && !x.url().endsWith('/favicon.ico')) errors.push(`HTTP ${x.status()} ${x.url()}`);
    });
    // a wllama that aborts inside its worker may leave the page's promise pending: give up after 5 minutes
    const bail = setTimeout(() => {
      process.stderr.write(`wllama: no result after 5 minutes; errors: ${JSON.stringify(errors)}\n`);
      process.exit(2);
    }, 300_000);
    await page.goto(server.url);
    await page.waitForFunction(() => window.wllamaReady === true, null, { timeout: 60_000 });
    const r = await page.evaluate(async ({ threads, model, prompt, check, tokens }) => {
      const quiet = { debug() {}, log() {}, info() {}, warn() {}, error: (...a) => console.error(...a) };
      const t0 = performance.now();
      const w = new window.Wllama({ default: '/wllama/esm/wasm/wllama.wasm' }, { logger: quiet });
      await w.loadModelFromUrl(model, { n_threads: threads, n_gpu_layers: 0, n_ctx: 512, useCache: false });
      const loadMs = performance.now() - t0;
      const chk = await w.createCompletion({ prompt: check, max_tokens: 8, temperature: 0, cache_prompt: false });
      const res = await w.createCompletion({ prompt, max_tokens: tokens, temperature: 0, ignore_eos: true,
        cache_prompt: false });
      const tm = res.timings || {};
      const out = { load_ms: loadMs, multithread: w.isMultithread(), threads: w.getNumThreads(),
        cross_origin_isolated: self.crossOriginIsolated, check_text: chk.choices[0].text,
        cache_n: tm.cache_n, prefill_tokens: tm.prompt_n, prefill_tokens_per_s: tm.prompt_per_second,
        decode_tokens: tm.predicted_n, decode_tokens_per_s: tm.predicted_per_second,
        text: res.choices[0].text.slice(0, 200) };
      await w.exit();
      return out;
    }, { threads, model: `/model/${path.basename(opt.gguf)}`, prompt: PROMPT, check: CHECK_PROMPT, tokens: TOKENS });
    clearTimeout(bail);
    r.chromium = browser.version();
    r.errors = errors;
    process.stdout.write(JSON.stringify(r) + '\n');
  } finally {
    await browser.close();
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The steps of a round. Each returns { ok, prefill_tps, decode_tps, prefill_tokens, decode_tokens, ... }.

const RAW = path.join(path.dirname(path.resolve(ROOT, opt.out)), 'bench-peers');

/** When the measured webvlm build was written (the newest of `files`), so a rebuild mid-run shows. */
function builtAt(files) {
  const t = files.map((x) => path.join(ROOT, x)).filter(existsSync).map((x) => statSync(x).mtimeMs);
  return t.length ? new Date(Math.max(...t)).toISOString() : null;
}
const DIST_FILES = ['dist/index.js', 'dist/worker.js', 'dist/threads.js', 'dist/pkg/webvlm_bg.wasm',
  'dist/pkg-threads/webvlm_bg.wasm', 'dist/pkg-relaxed/webvlm_bg.wasm', 'dist/pkg-threads-relaxed/webvlm_bg.wasm'];

/** llama_perf's "prompt eval time = X ms / N tokens (..., T tokens per second)" and "eval time" lines. */
function parseLlamaPerf(text) {
  const line = (re) => {
    const m = re.exec(text);
    return m ? { ms: Number(m[1]), n: Number(m[2]), tps: Number(m[3]) } : null;
  };
  const pp = line(/prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens \([^,]*,\s*([\d.]+) tokens per second\)/);
  const tg = line(/\n[^\n]*\s eval time =\s*([\d.]+) ms \/\s*(\d+) runs\s*\([^,]*,\s*([\d.]+) tokens per second\)/);
  return { pp, tg };
}

const STEPS = {
  membw: {
    label: 'read bandwidth',
    async run(t) {
      const r = await runQuiet(path.resolve(ROOT, opt.membw), ['256', '5', String(t)]);
      const m = /GB\/s ([\d.]+)/.exec(r.stdout);
      return { ...r, ok: r.rc === 0 && !!m, gbs: m ? Number(m[1]) : null };
    },
  },
  llamacpp: {
    label: 'llama.cpp native',
    async run(t) {
      const r = await runQuiet(path.resolve(ROOT, opt['lcpp-bin'], 'llama-completion'), ['-m', opt.gguf, '-p', PROMPT,
        '-n', String(TOKENS), '--temp', '0', '--ignore-eos', '-no-cnv', '-t', String(t), '-c', '512']);
      const { pp, tg } = parseLlamaPerf(r.stderr);
      return { ...r, ok: r.rc === 0 && !!pp && !!tg, prefill_tokens: pp?.n, prefill_tps: pp?.tps,
        decode_tokens: tg?.n, decode_tps: tg?.tps, text: r.stdout.slice(PROMPT.length, PROMPT.length + 200) };
    },
  },
  llamabench: {
    label: 'llama.cpp native, llama-bench',
    async run(t) {
      const r = await runQuiet(path.resolve(ROOT, opt['lcpp-bin'], 'llama-bench'), ['-m', opt.gguf, '-p', '64', '-n',
        String(TOKENS), '-t', String(t), '-r', '3', '-o', 'json']);
      let rows = [];
      try { rows = JSON.parse(r.stdout); } catch { /* not JSON: rc says why */ }
      const pp = rows.find((x) => x.n_prompt > 0 && x.n_gen === 0);
      const tg = rows.find((x) => x.n_gen > 0 && x.n_prompt === 0);
      return { ...r, stdout: '', ok: r.rc === 0 && !!pp && !!tg, prefill_tokens: pp?.n_prompt, prefill_tps: pp?.avg_ts,
        decode_tokens: tg?.n_gen, decode_tps: tg?.avg_ts, samples: { pp: pp?.samples_ts, tg: tg?.samples_ts } };
    },
  },
  webvlm: {
    label: 'webvlm native',
    async run(t) {
      const r = await runQuiet(path.resolve(ROOT, 'target/release/webvlm'), ['generate', '--model', opt.model,
        '--prompt', PROMPT, '--max-new-tokens', String(TOKENS), '--threads', String(t), '--backend', 'cpu', '--json']);
      let j = null;
      try { j = JSON.parse(r.stdout); } catch { /* rc says why */ }
      const tm = j?.timings;
      return { ...r, stdout: '', ok: r.rc === 0 && !!tm, build: builtAt(['target/release/webvlm']),
        prefill_tokens: tm?.prefill_tokens,
        prefill_tps: tm ? tm.prefill_tokens / (tm.prefill_ms / 1000) : null, decode_tokens: tm?.decode_tokens,
        decode_tps: tm?.decode_tokens_per_s, text: j?.text?.slice(0, 200) };
    },
  },
  browser: {
    label: 'webvlm in Chromium',
    async run(t, tag) {
      const out = path.join(RAW, `webvlm-browser-${tag}.json`);
      const p = t === 1 ? 'cpu1' : 'cpu'; // `cpu`: threads 'auto' = navigator.hardwareConcurrency
      const r = await runQuiet(process.execPath, ['scripts/bench-browser.mjs', '--models', 'smollm2-135m-int4',
        '--paths', p, '--tokens', String(TOKENS), '--out', out]);
      let row = null;
      try { row = JSON.parse(readFileSync(out, 'utf8')).rows[0]; } catch { /* rc says why */ }
      return { ...r, ok: r.rc === 0 && !!row, path: p, threads_reported: row?.threads, simd: row?.simd,
        build: builtAt(DIST_FILES),
        prefill_tokens: row?.prefill_tokens, prefill_tps: row ? row.prefill_tokens / (row.prefill_ms / 1000) : null,
        decode_tokens: row?.decode_tokens, decode_tps: row?.decode_tokens_per_s, backend: row?.backend,
        cached_load_ms: row?.cached_load_ms, text: row?.answer?.slice(0, 200) };
    },
  },
  wllama: {
    label: 'wllama in Chromium',
    async run(t) {
      const r = await runQuiet(process.execPath, [fileURLToPath(import.meta.url), ...passThrough(), '--run-wllama',
        String(t)]);
      let j = null;
      try { j = JSON.parse(r.stdout.trim().split('\n').pop()); } catch { /* rc says why */ }
      return { ...r, stdout: '', ok: r.rc === 0 && !!j && j.decode_tokens_per_s > 0 && j.cache_n === 0,
        threads_reported: j?.threads, multithread: j?.multithread, prefill_tokens: j?.prefill_tokens,
        prefill_tps: j?.prefill_tokens_per_s, decode_tokens: j?.decode_tokens, decode_tps: j?.decode_tokens_per_s,
        check_text: j?.check_text, check_ok: j ? j.check_text.startsWith(' Paris') : null, load_ms: j?.load_ms,
        chromium: j?.chromium, text: j?.text };
    },
  },
};

/** The options a --run-wllama child needs. */
function passThrough() {
  return ['--peers', opt.peers, '--gguf', opt.gguf, '--prompt', opt.prompt, '--tokens', opt.tokens];
}

// ---------------------------------------------------------------------------------------------------------
// Statistics and the markdown.

function stats(xs) {
  const s = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const h = s.length >> 1;
  return { median: s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2, min: s[0], max: s[s.length - 1], n: s.length };
}

const f = (v, d = 1) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(d));
const fmtS = (s, d = 1) => (!s ? '–' : s.n > 1 ? `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})` : f(s.median, d));

/** The final (not superseded) sample of `step` at round r, threads t. */
const pick = (samples, step, r, t) => samples.find((s) => s.step === step && s.round === r && s.threads === t
  && !s.superseded);

function summarize(doc) {
  const { samples, config } = doc;
  const rounds = [...new Set(samples.map((s) => s.round))].sort((a, b) => a - b);
  const threads = config.threads;
  const runtimes = ['llamacpp', 'llamabench', 'webvlm', 'browser', 'wllama'].filter((k) => config.steps.includes(k));
  const bytes = { llamacpp: doc.weight_bytes.gguf, llamabench: doc.weight_bytes.gguf, wllama: doc.weight_bytes.gguf,
    webvlm: doc.weight_bytes.webvlm, browser: doc.weight_bytes.webvlm };
  const clean = (s) => s && s.ok && !s.disturbed;
  // pooled over clean samples when there are any, else over every sample that ran (marked)
  const pool = (list, fn) => {
    const c = list.filter(([...xs]) => xs.every(clean));
    const use = c.length ? c : list.filter(([...xs]) => xs.every((s) => s && s.ok));
    return { stats: stats(use.map((xs) => fn(...xs))), all_clean: c.length === list.length, n_clean: c.length };
  };
  const rows = [];
  for (const t of threads) {
    for (const k of runtimes) {
      const per = rounds.map((r) => [pick(samples, k, r, t)]).filter(([s]) => s);
      const withRef = rounds.map((r) => [pick(samples, k, r, t), pick(samples, 'llamacpp', r, 1)]).filter(([s, q]) => s && q);
      const with1 = rounds.map((r) => [pick(samples, k, r, t), pick(samples, k, r, 1)]).filter(([s, q]) => s && q);
      const withBw1 = rounds.map((r) => [pick(samples, k, r, t), pick(samples, 'membw', r, 1)]).filter(([s, q]) => s && q);
      const withBwT = rounds.map((r) => [pick(samples, k, r, t), pick(samples, 'membw', r, t)]).filter(([s, q]) => s && q);
      const dec = pool(per, (s) => s.decode_tps);
      rows.push({ runtime: k, label: STEPS[k].label, threads: t, samples: per.length, clean: dec.n_clean,
        prefill_tokens: stats(per.map(([s]) => s.prefill_tokens))?.median ?? null,
        decode_tokens: stats(per.map(([s]) => s.decode_tokens))?.median ?? null,
        prefill_tps: pool(per, (s) => s.prefill_tps).stats, decode_tps: dec.stats,
        vs_llamacpp_t1: pool(withRef, (s, q) => s.decode_tps / q.decode_tps).stats,
        vs_own_t1: t === 1 ? null : pool(with1, (s, q) => s.decode_tps / q.decode_tps).stats,
        weight_bytes: bytes[k], weight_gbs: pool(per, (s) => (bytes[k] * s.decode_tps) / 1e9).stats,
        vs_read_1t: pool(withBw1, (s, b) => (bytes[k] * s.decode_tps) / 1e9 / b.gbs).stats,
        vs_read_same_t: pool(withBwT, (s, b) => (bytes[k] * s.decode_tps) / 1e9 / b.gbs).stats });
    }
  }
  const bw = Object.fromEntries(threads.map((t) => {
    const all = rounds.map((r) => pick(samples, 'membw', r, t)).filter((s) => s && s.ok);
    const c = all.filter(clean);
    return [t, stats((c.length ? c : all).map((s) => s.gbs))];
  }));
  return { rows, read_bandwidth_gbs: bw, rounds };
}

function markdown(doc) {
  const { summary: sum, samples, config } = doc;
  const L = [];
  const v = doc.versions;
  const uniq = (step, key, t) => [...new Set(samples.filter((s) => s.step === step && s.ok && (t == null || s.threads === t))
    .map((s) => s[key]))].join(', ') || '–';
  L.push(SECTION, '');
  L.push(`Written by \`npm run bench:peers\` (scripts/bench-peers.sh) on ${doc.date.slice(0, 10)}: ${doc.machine.cpus} ` +
    `cores, ${doc.machine.model}${doc.machine.amx ? ' (AMX off in the llama.cpp build)' : ''}; ${sum.rounds.length} ` +
    `interleaved rounds, each running every runtime at ${config.threads.join(' then ')} thread(s) after waiting ` +
    'for an idle machine. SmolLM2-135M-Instruct, greedy, ' + `${TOKENS} new tokens.`);
  L.push('');
  L.push(`- **llama.cpp native**: ${v.llamacpp} (${v.llamacpp_flags.trim()}), \`llama-completion\` on the Q4_1 GGUF ` +
    `with tests/fixtures/prompt64.txt (64 tokens), ${TOKENS} tokens, EOS ignored; its own prompt-eval / eval rates.` +
    (config.steps.includes('llamabench') ? ` **llama-bench**: \`-p 64 -n ${TOKENS} -r 3\` (decode at KV depth 0).` : ''));
  L.push(`- **webvlm native**: \`target/release/webvlm generate --backend cpu\` on smollm2-135m-int4 (INT4 sym g64), ` +
    `same prompt and length (checkout ${v.webvlm}; binary written ${uniq('webvlm', 'build')}; dist/ written ` +
    `${uniq('browser', 'build')}).`);
  L.push('- **webvlm in Chromium**: the npm package (dist/) through scripts/bench-browser.mjs, CPU path, `cpu1` ' +
    "(threads 1) and `cpu` (threads 'auto'); its prompt is the chat-templated lighthouse-keeper question " +
    `(${f(sum.rows.find((r) => r.runtime === 'browser')?.prefill_tokens, 0)} tokens), and it stops at EOS ` +
    `(decode tokens: ${uniq('browser', 'decode_tokens')}); the engine reported SIMD ${uniq('browser', 'simd')} and ` +
    config.threads.map((t) => `${uniq('browser', 'threads_reported', t)} thread(s) for ${t === 1 ? 'cpu1' : 'cpu'}`).join(', ') + '.');
  if (config.steps.includes('wllama')) {
    L.push(`- **wllama**: npm @wllama/wllama@${v.wllama} in the same Chromium (${v.chromium}), same prompt and flow as ` +
      `llama.cpp native (its server's own timings; fresh browser per sample); multithread at t=2: ` +
      `${uniq('wllama', 'multithread', 2)}; greedy check " Paris" passed: ${uniq('wllama', 'check_ok')}.`);
  } else if (config.wllama_note) {
    L.push(`- **wllama**: not measured (${config.wllama_note}).`);
  }
  L.push('- **read bandwidth**: a sum over a 256 MiB buffer, best of 5, on the same thread count, in the same round. ' +
    'Weight GB/s = weight bytes read per token (tied embeddings: the LM head reads the whole table) × decode tok/s: ' +
    `${f(doc.weight_bytes.gguf / 1e6)} MB for the Q4_1 GGUF, ${f(doc.weight_bytes.webvlm / 1e6)} MB for webvlm's INT4.`);
  L.push('- Ratios are taken within each round, then pooled (median, min–max). Samples during which other processes ' +
    `used more than ${config.disturbed} of a core are marked * and left out of the pooled figures.`);
  L.push('');
  L.push('| runtime | threads | prefill tok/s | decode tok/s | ÷ llama.cpp t=1 | ÷ own t=1 | weight GB/s | ÷ read 1 thread | ÷ read same threads |');
  L.push('|---|---|---|---|---|---|---|---|---|');
  for (const r of sum.rows) {
    L.push(`| ${r.label}${r.clean < r.samples ? ` (${r.clean}/${r.samples} clean)` : ''} | ${r.threads} | ` +
      `${fmtS(r.prefill_tps)} | ${fmtS(r.decode_tps)} | ${fmtS(r.vs_llamacpp_t1, 2)} | ${fmtS(r.vs_own_t1, 2)} | ` +
      `${fmtS(r.weight_gbs, 2)} | ${fmtS(r.vs_read_1t, 2)} | ${fmtS(r.vs_read_same_t, 2)} |`);
  }
  L.push('');
  L.push('Read bandwidth: ' + config.threads.map((t) => `${t} thread(s) ${fmtS(sum.read_bandwidth_gbs[t])} GB/s`)
    .join(', ') + '.');
  for (const k of ['webvlm', 'browser']) {
    const b = new Set(samples.filter((s) => s.step === k && s.ok && !s.superseded).map((s) => s.build));
    if (b.size > 1) L.push('', `**Warning**: ${STEPS[k].label} was rebuilt during the run (${[...b].join(', ')}).`);
  }
  const brow = sum.rows.find((r) => r.runtime === 'browser' && r.threads === 1);
  if (brow?.vs_llamacpp_t1) {
    L.push('', `Goal (issue 13): webvlm in Chromium on 1 thread at least as fast as llama.cpp native on 1 thread: ` +
      `${f(brow.vs_llamacpp_t1.median, 2)}× now.`);
  }
  L.push('', 'Per round: prefill / decode tok/s (read bandwidth in GB/s; * = disturbed, with the share of a core ' +
    'that other processes used):', '');
  const cols = ['membw', ...config.steps.filter((k) => k !== 'membw')];
  L.push(`| round | threads | ${cols.map((k) => (k === 'membw' ? 'read GB/s' : STEPS[k].label)).join(' | ')} |`);
  L.push(`|---|---|${cols.map(() => '---').join('|')}|`);
  for (const r of sum.rounds) {
    for (const t of config.threads) {
      const cell = (k) => {
        const s = pick(samples, k, r, t);
        if (!s) return '–';
        if (!s.ok) return `failed (rc ${s.rc})`;
        const mark = s.disturbed ? `* (${f(s.others_cores, 2)})` : '';
        return (k === 'membw' ? f(s.gbs) : `${f(s.prefill_tps)} / ${f(s.decode_tps)}`) + mark;
      };
      L.push(`| ${r} | ${t} | ${cols.map(cell).join(' | ')} |`);
    }
  }
  const redo = samples.filter((s) => s.superseded);
  if (redo.length) {
    const groups = new Map();
    for (const s of redo) {
      const key = `${STEPS[s.step].label} r${s.round} t=${s.threads}`;
      groups.set(key, [...(groups.get(key) || []), f(s.others_cores, 2)]);
    }
    L.push('', 'Re-run after disturbed tries (others\' CPU in cores): ' +
      [...groups].map(([k, v]) => `${k} (${v.join(', ')})`).join('; ') + '.');
  }
  const notIdle = samples.filter((s) => !s.idle_before);
  if (notIdle.length) {
    L.push('', `The machine never became idle within ${config.max_wait_s} s before ${notIdle.length} measurement(s); ` +
      'they ran anyway (see others_cores in the JSON).');
  }
  L.push('', 'Raw samples (with every command\'s CPU accounting): test-results/bench-peers.json.');
  return L.join('\n') + '\n';
}

/** Replace the section in BENCHMARKS.md (up to the next "## " heading), or append it. */
function writeSection(md) {
  const file = path.join(ROOT, 'BENCHMARKS.md');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const lines = text.split('\n');
  const a = lines.findIndex((l) => l.trim() === SECTION);
  let out;
  if (a < 0) {
    out = text.replace(/\n*$/, '\n\n') + md;
  } else {
    let b = lines.findIndex((l, i) => i > a && /^## /.test(l));
    if (b < 0) b = lines.length;
    const after = lines.slice(b).join('\n');
    out = lines.slice(0, a).join('\n') + (a ? '\n' : '') + md + (after ? '\n' + after : '');
  }
  writeFileSync(file, out);
}

// ---------------------------------------------------------------------------------------------------------

function versions() {
  const git = (...a) => spawnSync('git', a, { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const chromium = spawnSync(process.env.CHROMIUM || '/usr/bin/chromium', ['--version'], { encoding: 'utf8' })
    .stdout.trim().split(' ').slice(0, 2).join(' ');
  return { llamacpp: opt['lcpp-version'] || 'llama.cpp', llamacpp_flags: opt['lcpp-flags'],
    wllama: opt['wllama-version'] || null, chromium, node: process.version,
    webvlm: git('rev-parse', '--short', 'HEAD') +
      (git('status', '--porcelain', '--untracked-files=no') ? ' + uncommitted changes' : '') };
}

async function main() {
  if (opt['run-wllama']) return runWllama(Number(opt['run-wllama']));
  const outFile = path.resolve(ROOT, opt.out);
  if (opt['summary-only']) {
    const doc = JSON.parse(readFileSync(outFile, 'utf8'));
    doc.summary = summarize(doc);
    doc.markdown = markdown(doc);
    return finish(doc, outFile);
  }
  mkdirSync(RAW, { recursive: true });
  const threads = opt.threads.split(',').map(Number);
  let wllamaNote = null;
  const want = new Set(opt.steps.split(','));
  for (const k of want) if (!STEPS[k]) throw new Error(`bench-peers: unknown step ${k} (${Object.keys(STEPS)})`);
  if (opt['no-llama-bench']) want.delete('llamabench');
  if (opt['no-wllama']) wllamaNote = '--no-wllama';
  else if (!existsSync(path.join(WLLAMA_DIR, 'esm/index.js'))) wllamaNote = `${WLLAMA_DIR} missing (npm install failed?)`;
  if (wllamaNote) want.delete('wllama');
  const steps = Object.keys(STEPS).filter((k) => want.has(k));
  const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || '?';
  const doc = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: cpuModel, amx: /\bamx_tile\b/.test(readFileSync('/proc/cpuinfo', 'utf8')) },
    versions: versions(),
    config: { rounds: Number(opt.rounds), threads, tokens: TOKENS, prompt: opt.prompt, gguf: opt.gguf, model: opt.model,
      steps, wllama_note: wllamaNote, idle_cores: Number(opt.idle), settle_s: Number(opt.settle),
      max_wait_s: Number(opt['max-wait']), retry_wait_s: Number(opt['retry-wait']), disturbed: Number(opt.disturbed), retries: Number(opt.retries) },
    weight_bytes: { gguf: ggufWeightBytes(path.resolve(ROOT, opt.gguf)), webvlm: webvlmWeightBytes(path.resolve(ROOT, opt.model)) },
    samples: [],
  };
  const done = new Set();
  if (opt.resume && existsSync(outFile)) {
    // keep the finished (round, threads) blocks of an interrupted run with the same steps and threads
    const old = JSON.parse(readFileSync(outFile, 'utf8'));
    if (String(old.config.steps) === String(steps) && String(old.config.threads) === String(threads)) {
      for (const r of new Set(old.samples.map((x) => x.round))) {
        for (const t of threads) if (steps.every((k) => pick(old.samples, k, r, t))) done.add(`${r}:${t}`);
      }
      doc.samples = old.samples.filter((x) => done.has(`${x.round}:${x.threads}`));
      doc.date = old.date;
      doc.resumed = [...(old.resumed || []), new Date().toISOString()];
      console.error(`bench-peers: resuming ${path.relative(ROOT, outFile)}: ${[...done].length} block(s) kept`);
    } else {
      console.error('bench-peers: --resume: steps or threads differ from the file; starting afresh');
    }
  }
  console.error(`bench-peers: ${doc.config.rounds} rounds x threads ${threads} x ${steps.join(', ')}` +
    (wllamaNote ? ` (no wllama: ${wllamaNote})` : ''));
  for (let r = 1; r <= doc.config.rounds; r++) {
    for (const t of threads) {
      if (done.has(`${r}:${t}`)) continue;
      for (const k of steps) {
        let prev = null;
        for (let attempt = 0; attempt <= doc.config.retries; attempt++) {
          let res;
          retrying = attempt > 0;
          try {
            res = await STEPS[k].run(t, `r${r}-t${t}-a${attempt}`);
          } catch (e) {
            if (!(e instanceof NotIdle)) throw e;
            console.error(`bench-peers: r${r} t=${t} ${STEPS[k].label}: ${e.message}`);
            break;
          }
          if (prev) prev.superseded = true;
          const s = { step: k, round: r, threads: t, attempt, ...res,
            disturbed: res.others_cores > doc.config.disturbed };
          if (!s.ok) s.log_tail = (res.stderr || '').slice(-2000);
          delete s.stderr;
          if (s.stdout === '') delete s.stdout;
          else s.stdout = (s.stdout || '').slice(-500);
          doc.samples.push(s);
          console.error(`bench-peers: r${r} t=${t} ${STEPS[k].label}: ` + (k === 'membw' ? `${f(s.gbs)} GB/s`
            : `prefill ${f(s.prefill_tps)} / decode ${f(s.decode_tps)} tok/s`) + ` (wall ${f(s.wall_s)} s, ` +
            `others ${f(s.others_cores, 2)} core, waited ${f(s.waited_s, 0)} s)` + (s.ok ? '' : ` FAILED rc=${s.rc}`) +
            (s.disturbed ? ' DISTURBED' : ''));
          prev = s;
          if (!s.disturbed || !s.ok) break;
        }
      }
      writeFileSync(outFile, JSON.stringify(doc, null, 1) + '\n'); // partial results survive an interruption
    }
  }
  doc.summary = summarize(doc);
  doc.markdown = markdown(doc);
  finish(doc, outFile);
}

function finish(doc, outFile) {
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(doc, null, 1) + '\n');
  writeFileSync(outFile.replace(/\.json$/, '.md'), doc.markdown);
  if (!opt['no-markdown']) writeSection(doc.markdown);
  process.stdout.write(doc.markdown);
  console.error(`bench-peers: wrote ${path.relative(ROOT, outFile)}` + (opt['no-markdown'] ? '' : ' and BENCHMARKS.md'));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
