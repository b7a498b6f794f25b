#!/usr/bin/env node
// Assemble the npm package in dist/ from js/ (the ESM sources and index.d.ts) and the
// wasm-bindgen outputs scripts/build.sh makes: www/pkg/ (one thread), www/pkg-threads/
// (threaded, absent with WEBVLM_NO_THREADS=1), www/pkg-relaxed/ and www/pkg-threads-relaxed/
// (relaxed SIMD, absent with WEBVLM_NO_RELAXED=1): dist/index.js, its modules, worker.js, the
// pool workers, index.d.ts, the pkg*/ folders (webvlm.js, webvlm_bg.wasm, snippets), README.md
// and a package.json named `webvlm`. `npm pack ./dist` then gives the tarball. Without a build,
// the module that loads it (threaded.js, relaxed.js, threaded-relaxed.js) is replaced by one
// whose import fails with that reason (the engine then runs on another build; bundlers still
// resolve the import) and its pool worker is left out. The same files are copied to www/webvlm/, with files.json (every
// file's path, for the page's service worker to precache), so the static chat page can
// `import { createEngine } from './webvlm/index.js'`.
//
// Usage: node scripts/build-package.mjs [--pack DIR]   (--pack: also run `npm pack` into DIR;
//        prints the tarball's path)
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');

/** The README's "Use it in your app" section, as the package's own README. */
async function packageReadme() {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('## Use it in your app');
  if (start < 0) return '# webvlm\n';
  const next = readme.indexOf('\n## ', start + 3);
  const section = readme.slice(start, next < 0 ? undefined : next).replace('## Use it in your app', '## Usage');
  return `# webvlm\n\nQuantized vision-language and language models in the browser (WebGPU, or wasm SIMD on the CPU)\n` +
    `behind OpenAI's chat-completions API. Nothing leaves the device.\n\n${section.trim()}\n`;
}

function packageJson(version) {
  return {
    name: 'webvlm',
    version,
    description: 'Quantized LLaVA-family and Llama-family models in the browser (WebGPU / wasm SIMD), OpenAI-style chat API',
    license: 'Apache-2.0',
    type: 'module',
    main: './index.js',
    module: './index.js',
    types: './index.d.ts',
    exports: {
      '.': { types: './index.d.ts', import: './index.js', default: './index.js' },
      './worker.js': './worker.js',
      './loader.js': './loader.js',
      './package.json': './package.json',
    },
    files: ['*.js', 'index.d.ts', 'pkg', 'pkg-threads', 'pkg-relaxed', 'pkg-threads-relaxed', 'README.md'],
    sideEffects: ['./worker.js'],
    keywords: ['llm', 'vlm', 'llava', 'webgpu', 'wasm', 'openai', 'browser'],
  };
}

/** Stands in for the module of a build that was not made: importing it fails with why. */
const absentModule = (what, env) => `// This webvlm package was built without the ${what} (${env}):
// importing this module fails, and the engine runs on another build.
throw new Error('this webvlm package was built without the ${what}');
`;

/** The optional builds: the www/ folder, the modules that load it, and what leaves it out. */
const OPTIONAL = [
  { dir: 'pkg-threads', modules: ['threaded.js'], workers: ['thread-worker.js'], what: 'threaded wasm build',
    env: 'WEBVLM_NO_THREADS=1' },
  { dir: 'pkg-relaxed', modules: ['relaxed.js'], workers: [], what: 'relaxed-SIMD wasm build',
    env: 'WEBVLM_NO_RELAXED=1' },
  { dir: 'pkg-threads-relaxed', modules: ['threaded-relaxed.js'], workers: ['thread-worker-relaxed.js'],
    what: 'threaded relaxed-SIMD wasm build', env: 'WEBVLM_NO_THREADS=1 or WEBVLM_NO_RELAXED=1' },
];

/** Every file under `dir`, as paths relative to it with '/' separators, sorted. */
async function listFiles(dir, rel = '') {
  const out = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, p)));
    else out.push(p);
  }
  return out.sort();
}

export async function buildPackage() {
  const pkgDir = path.join(ROOT, 'www/pkg');
  const glue = await readdir(pkgDir).catch(() => null);
  if (!glue || !glue.includes('webvlm.js') || !glue.includes('webvlm_bg.wasm')) {
    throw new Error('www/pkg has no wasm build: run scripts/build.sh first');
  }
  const root = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
  await rm(DIST, { recursive: true, force: true });
  await mkdir(DIST, { recursive: true });
  const built = async (d) => (await readdir(path.join(ROOT, 'www', d)).catch(() => [])).includes('webvlm_bg.wasm');
  const absent = [];
  for (const o of OPTIONAL) if (!(await built(o.dir))) absent.push(o);
  const skip = new Set(absent.flatMap((o) => o.workers));
  for (const f of await readdir(path.join(ROOT, 'js'))) {
    if (skip.has(f)) continue;
    if (f.endsWith('.js') || f.endsWith('.d.ts')) await cp(path.join(ROOT, 'js', f), path.join(DIST, f));
  }
  for (const o of absent) {
    for (const m of o.modules) await writeFile(path.join(DIST, m), absentModule(o.what, o.env));
  }
  // www/pkg and the optional builds that were made (the wasm-bindgen outputs).
  for (const d of ['pkg', ...OPTIONAL.filter((o) => !absent.includes(o)).map((o) => o.dir)]) {
    await cp(path.join(ROOT, 'www', d), path.join(DIST, d), { recursive: true });
  }
  await writeFile(path.join(DIST, 'package.json'), JSON.stringify(packageJson(root.version), null, 2) + '\n');
  await writeFile(path.join(DIST, 'README.md'), await packageReadme());
  const www = path.join(ROOT, 'www/webvlm');
  await rm(www, { recursive: true, force: true });
  await cp(DIST, www, { recursive: true });
  await writeFile(path.join(www, 'files.json'), JSON.stringify(await listFiles(www), null, 1) + '\n');
  return DIST;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { pack: { type: 'string' } } });
  const dist = await buildPackage();
  console.error(`build-package: ${path.relative(ROOT, dist)}/ written`);
  if (values.pack) {
    await mkdir(values.pack, { recursive: true });
    const out = execFileSync('npm', ['pack', dist, '--pack-destination', path.resolve(values.pack), '--silent'],
      { encoding: 'utf8' }).trim().split('\n').pop();
    console.log(path.join(path.resolve(values.pack), out));
  }
}
