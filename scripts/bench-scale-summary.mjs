#!/usr/bin/env node
// The "## Scale kit" section of BENCHMARKS.md from test-results/bench-scale.json (scripts/bench-scale.mjs): the
// machine's limits, the converted models, and one row per model x path x threads with ratios to those limits.
// Replaces the section in BENCHMARKS.md (or appends it) and writes it to test-results/bench-scale.md.
//
// Usage: node scripts/bench-scale-summary.mjs [DIR] [--no-write]   (DIR default test-results)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const dir = path.resolve(ROOT, args.find((a) => !a.startsWith('--')) || 'test-results');
const doc = JSON.parse(readFileSync(path.join(dir, 'bench-scale.json'), 'utf8'));
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const f = (v, d = 1) => (v == null || !Number.isFinite(Number(v)) ? '-' : Number(v).toFixed(d));
const s = (ms, d = 1) => (ms == null ? '-' : `${f(ms / 1e3, d)} s`);
const pct = (v) => (v == null || !Number.isFinite(v) ? '-' : `${Math.round(v * 100)}%`);

const lim = doc.limits || {};
const readBw = (t) => lim.native?.read?.find((r) => r.threads === t)?.gbs ?? null;
const peakOf = (rows, kernel, t) => rows?.find((r) => r.kernel === kernel && r.threads === t)?.gflops ?? null;
const nativePeak = (t) => peakOf(lim.native?.peak?.rows, 'avx2_fma', t);
const wasmPeak = (t) => peakOf(lim.chromium?.rows, 'wasm_relaxed_madd', t) ?? peakOf(lim.chromium?.rows, 'wasm_simd128_muladd', t);

function limitsSection() {
  const out = ['### The machine\'s limits (same run)', ''];
  out.push(`${doc.cpus} CPUs (${doc.cpu}). Read bandwidth (\`webvlm bench\`: a sum over a buffer several times the LLC): ` +
    (lim.native?.read?.map((r) => `${r.threads} thread(s) ${f(r.gbs)} GB/s`).join(', ') || 'not measured') + '.');
  out.push('', 'Multiply-add peak (12 independent chains per thread in registers; GFLOP/s counts 2 per multiply-add):', '',
    '| kernel | where | 1 thread | 2 threads |', '|---|---|---|---|');
  const names = { avx2_fma: 'AVX2 FMA, 8 lanes (tools/scale/peak_flops.c)', sse_muladd: 'SSE mul + add, 4 lanes',
    wasm_simd128_muladd: 'wasm SIMD128 f32x4.mul + f32x4.add', wasm_relaxed_madd: 'wasm relaxed SIMD f32x4.relaxed_madd' };
  for (const [rows, where] of [[lim.native?.peak?.rows, 'native'], [lim.chromium?.rows, 'Chromium']]) {
    const kernels = [...new Set((rows || []).map((r) => r.kernel))];
    for (const k of kernels) {
      const e = rows.find((r) => r.kernel === k && r.error);
      out.push(`| ${names[k] || k} | ${where} | ${e ? e.error : f(peakOf(rows, k, 1))} | ${e ? '' : f(peakOf(rows, k, 2))} |`);
    }
  }
  return out.join('\n');
}

function formats(p) {
  return p ? Object.entries(p.formats).map(([k, n]) => `${n} ${k}`).join(', ') : '-';
}

function modelsSection(models) {
  const out = ['### The checkpoints', '',
    '| model | published layout | parameters | f16 source | converted (defaults) | language model | vision tower | convert |',
    '|---|---|---|---|---|---|---|---|'];
  for (const m of models) {
    const c = m.converted;
    const conv = m.convert?.rc === 0
      ? `${f(m.convert.wall_s, 0)} s, peak RSS ${f(m.convert.max_rss_mib / 1024, 1)} GiB${m.convert.reused ? ' (earlier run)' : ''}`
      : `**failed** (rc ${m.convert?.rc})`;
    const pub = m.convert_published_config;
    const pubErr = pub ? (pub.stderr_tail || '').trim().split('\n').filter(Boolean).pop() : null;
    const conv2 = pub ? `published config.json: **fails** (\`${pubErr}\`); with the text_config defaults written out ` +
      `(\`--explicit-config\`): ${conv}` : conv;
    out.push(`| ${m.model} | ${m.published} | ${f(m.source.parameters / 1e9, 2)} B | ${f(m.source.bytes / GiB, 2)} GiB | ` +
      `${c ? `${f(c.shard_bytes / GiB, 2)} GiB` : '-'} | ${formats(c?.parts?.text)} | ${formats(c?.parts?.vision)} | ${conv2} |`);
  }
  return out.join('\n');
}

/** Stop reason, and a flag when something else used the machine during the run. */
function notes(r) {
  const n = [r.stop ?? r.finish ?? '-'];
  const c = r.contention?.others_cpu_share;
  if (c != null && c > 0.05) n.push(`**others used ${pct(c)} of the CPUs meanwhile**`);
  return n.join('; ');
}

function row(m, r) {
  const where = r.where === 'native' ? 'native' : `Chromium ${r.path}`;
  const threads = r.threads ?? r.threads_asked ?? '-';
  if (r.skipped || r.error) {
    const why = r.skipped ? `not run: ${r.reason}${r.needs ? `. Needs: ${r.needs}` : ''}` : `**failed**: ${String(r.error)
      .split('\n').filter(Boolean).slice(-3).join(' / ').slice(0, 400)}`;
    return `| ${m.model} | ${where} | ${threads} | ${why} ||||||||`;
  }
  const t = Number(threads);
  const peak = r.where === 'native' ? nativePeak(t) : wasmPeak(t);
  const encGf = m.vision_flops_per_tile && r.image_encode_ms ? (m.vision_flops_per_tile * m.tiles) / (r.image_encode_ms / 1e3) / 1e9 : null;
  const preGop = r.prefill_ms ? (2 * m.converted.block_linear_params * r.prefill_tokens) / (r.prefill_ms / 1e3) / 1e9 : null;
  const gbs = r.decode_tokens_per_s ? (m.converted.bytes_read_per_token * r.decode_tokens_per_s) / 1e9 : null;
  const bw = readBw(t);
  const load = r.where === 'native'
    ? `${s(r.load_ms, 2)}${r.cold_load ? ' (cold)' : ' (page cache warm)'}`
    : `${s(r.cold_load_ms)} / ${s(r.cached_load_ms, 2)}`;
  const mem = r.where === 'native'
    ? `RSS ${f(r.peak_rss_mib, 0)} MiB`
    : `wasm ${f(r.wasm_memory_mib, 0)} MiB; PSS ${f(r.memory_cached_load_and_answer?.pss_sum_mib, 0)} MiB ` +
      `(largest process ${f(r.memory_cached_load_and_answer?.rss_max_mib, 0)})`;
  return `| ${m.model} | ${where} | ${threads} | ${load} | ${mem} | ` +
    `${s(r.image_encode_ms)} (${f(encGf)} GFLOP/s, ${pct(peak && encGf / peak)}) | ` +
    `${s(r.prefill_ms)} (${r.prefill_tokens}; ${f(preGop)} GOP/s, ${pct(peak && preGop / peak)}) | ${s(r.ttft_ms)} | ` +
    `${f(r.decode_tokens_per_s)} (${r.decode_tokens}; ${f(gbs, 2)} GB/s, ${pct(bw && gbs / bw)}) | ${notes(r)} |`;
}

function resultsSection(models) {
  const out = ['### One image question per model and path', '',
    `"${models[0]?.prompt}" about ${models[0]?.image} (${models[0]?.image_size?.width}x${models[0]?.image_size?.height}), ` +
    `the model's chat template, greedy, ${models[0]?.max_new_tokens} new tokens at most. Native: \`webvlm generate --json\`; ` +
    'Chromium: the npm package (`createEngine` + `chat.completions.create`), CPU path. Loads: native, the engine\'s ' +
    'load (the first run after evicting the converted files from the page cache is "cold"); Chromium, first load ' +
    '(download + sha256 + Cache Storage + build) / load from the cache in a new engine. Memory: native peak RSS; ' +
    'Chromium, the engine\'s wasm memory after the answer (it only grows) and the browser\'s peak PSS over all its ' +
    'processes during the cached load and the answer. TTFT: native, image encode + prefill; Chromium, from the request ' +
    'to the first token. Ratios: image encode and prefill as a share of the multiply-add peak at the same thread count ' +
    '(native: AVX2 FMA; Chromium: the best wasm kernel above), counting 2 per multiply-add of the vision tower\'s ' +
    'FLOPs and of the language model\'s block linears (attention scores and the head not counted); decode as weight ' +
    'bytes read per token (language model, the embedding table only when it is the head) times tokens/s, as a share ' +
    'of the read bandwidth at the same thread count.', '',
    '| model | where | threads | load | peak memory | image encode | prefill (tokens) | TTFT | decode tok/s (tokens) | notes |',
    '|---|---|---|---|---|---|---|---|---|---|'];
  for (const m of models) {
    for (const r of [...(m.native || []), ...(m.browser || [])]) out.push(row(m, r));
  }
  return out.join('\n');
}

const models = doc.models || [];
const section = [
  '## Scale kit',
  '',
  `Written by \`npm run bench:scale\` (scripts/bench-scale.sh) on ${doc.date.slice(0, 10)}: random-weight checkpoints ` +
    'with the published shapes and layouts of the seed models (tools/scale/make_checkpoints.py), each converted with ' +
    '`webvlm convert SRC --out DIR` (defaults). Figures from one run on this machine; compare by the ratios.',
  '',
  limitsSection(),
  '',
  modelsSection(models),
  '',
  resultsSection(models),
  '',
].join('\n');

writeFileSync(path.join(dir, 'bench-scale.md'), section);
if (!args.includes('--no-write')) {
  const file = path.join(ROOT, 'BENCHMARKS.md');
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const start = old.indexOf('\n## Scale kit\n');
  let next;
  if (start >= 0) {
    const after = old.indexOf('\n## ', start + 1);
    next = old.slice(0, start + 1) + section + (after >= 0 ? old.slice(after + 1) : '');
  } else {
    next = old.replace(/\n*$/, '\n\n') + section;
  }
  writeFileSync(file, next);
  console.error(`bench-scale-summary: wrote the "## Scale kit" section of BENCHMARKS.md and ${path.relative(ROOT, dir)}/bench-scale.md`);
} else {
  process.stdout.write(section);
}
