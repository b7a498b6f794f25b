#!/usr/bin/env node
// Assemble the npm package in dist/ from js/ (the ESM sources and index.d.ts) and the
// wasm-bindgen outputs scripts/build.sh makes: www/pkg/ (one thread) and www/pkg-threads/
// (threaded, absent with WEBVLM_NO_THREADS=1): dist/index.js, its modules, worker.js,
// thread-worker.js, index.d.ts, pkg/ and pkg-threads/ (webvlm.js, webvlm_bg.wasm, snippets),
// README.md and a package.json named `webvlm`. `npm pack ./dist` then gives the tarball.
// Without the threaded build, threaded.js is replaced by a module whose import fails with that
// reason (the engine then runs on one thread; bundlers still resolve the import) and
// thread-worker.js is left out. The same files are copied to www/webvlm/, with files.json (every
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
    files: ['*.js', 'index.d.ts', 'pkg', 'pkg-threads', 'README.md'],
    sideEffects: ['./worker.js'],
    keywords: ['llm', 'vlm', 'llava', 'webgpu', 'wasm', 'openai', 'browser'],
  };
}

const NO_THREADS_MODULE = `// This webvlm package was built without the threaded wasm build (WEBVLM_NO_THREADS=1):
// importing this module fails, and the engine runs on the one-thread build.
throw new Error('this webvlm package was built without the threaded wasm build');
`;

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
  const threaded = (await readdir(path.join(ROOT, 'www/pkg-threads')).catch(() => [])).includes('webvlm_bg.wasm');
  for (const f of await readdir(path.join(ROOT, 'js'))) {
    if (!threaded && f === 'thread-worker.js') continue;
    if (f.endsWith('.js') || f.endsWith('.d.ts')) await cp(path.join(ROOT, 'js', f), path.join(DIST, f));
  }
  if (!threaded) await writeFile(path.join(DIST, 'threaded.js'), NO_THREADS_MODULE);
  // www/pkg and www/pkg-threads (the wasm-bindgen builds).
  for (const d of threaded ? ['pkg', 'pkg-threads'] : ['pkg']) {
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
