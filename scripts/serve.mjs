#!/usr/bin/env node
// Static server for the demo, no dependencies: www/ at `/`, converted models at `/models/`
// (from .cache/models/, or WEBVLM_MODELS_DIR). Listens on 127.0.0.1:$PORT (default 8080;
// PORT=0 picks a free port). Sends COOP/COEP (cross-origin isolation, needed for threads
// and precise timers), correct MIME types (application/wasm for streaming compilation),
// single-range `Range` requests, ETag revalidation, and refuses paths outside its roots.
// WEBVLM_ISOLATION=0 leaves out COOP/COEP (a plain static host: the page then runs the
// single-threaded wasm build; tests/browser/threads.test.mjs checks that).
//
// Usage: node scripts/serve.mjs        (prints "serving http://127.0.0.1:PORT/")
import { createServer } from 'node:http';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Content-Type by file extension (also used by the tests' package server). */
export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.gguf': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

const SECURITY_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  // Same policy as the page's <meta>; as a header it also covers the module worker.
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; " +
    "style-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'none'",
};

if (process.env.WEBVLM_ISOLATION === '0') {
  delete SECURITY_HEADERS['Cross-Origin-Opener-Policy'];
  delete SECURITY_HEADERS['Cross-Origin-Embedder-Policy'];
}

/** Map a URL path to a file under one of the roots, or null when it escapes / is invalid. */
export function resolvePath(urlPath, roots) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  // Each mount: [prefix, directory]; the longest matching prefix wins.
  for (const [prefix, dir] of roots) {
    if (!decoded.startsWith(prefix)) continue;
    const rel = decoded.slice(prefix.length);
    if (rel.split('/').some((seg) => seg === '..')) return null;
    const full = path.resolve(dir, '.' + path.posix.normalize('/' + rel));
    if (full !== dir && !full.startsWith(dir + path.sep)) return null;
    return { dir, full };
  }
  return null;
}

/** Parse a single `bytes=a-b` range against `size`: {start, end} | 'unsatisfiable' | null. */
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // multi-range or garbage: send it all
  let start;
  let end;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', ...headers });
  res.end(body);
}

/** Real path of `full` if it stays inside the real `dir` (symlinks may not lead out). */
async function realInside(dir, full) {
  const [realDir, realFull] = await Promise.all([fsp.realpath(dir), fsp.realpath(full)]);
  return realFull === realDir || realFull.startsWith(realDir + path.sep) ? realFull : null;
}

async function exists(file) {
  try {
    await fsp.stat(file);
    return true;
  } catch {
    return false;
  }
}

async function handle(req, res, roots) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
  }
  const urlPath = new URL(req.url, 'http://localhost').pathname;
  let target = resolvePath(urlPath, roots);
  if (!target) return send(res, 403, 'forbidden\n');
  // A path missing under its mount falls through to the next matching one: /models/X is served from
  // the converted-models folder first, then from www/models/ (the models committed with the page).
  const later = roots.slice(roots.findIndex(([, dir]) => dir === target.dir) + 1);
  const fallback = later.length ? resolvePath(urlPath, later) : null;
  if (fallback && !(await exists(target.full))) target = fallback;
  let file = target.full;
  let stat;
  try {
    stat = await fsp.stat(file);
    if (stat.isDirectory()) {
      if (!urlPath.endsWith('/')) {
        return send(res, 301, '', { Location: urlPath + '/' });
      }
      file = path.join(file, 'index.html');
      stat = await fsp.stat(file);
    }
    file = await realInside(target.dir, file);
    if (!file || !stat.isFile()) return send(res, 403, 'forbidden\n');
  } catch {
    return send(res, 404, 'not found\n');
  }
  const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
  const headers = {
    ...SECURITY_HEADERS,
    'Content-Type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'no-cache',
    ETag: etag,
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    return res.end();
  }
  let start = 0;
  let end = stat.size - 1;
  let status = 200;
  if (req.headers.range) {
    const r = parseRange(req.headers.range, stat.size);
    if (r === 'unsatisfiable') {
      return send(res, 416, 'range not satisfiable\n', { 'Content-Range': `bytes */${stat.size}` });
    }
    if (r) {
      ({ start, end } = r);
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`;
    }
  }
  headers['Content-Length'] = String(stat.size === 0 ? 0 : end - start + 1);
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || stat.size === 0) return res.end();
  const stream = createReadStream(file, { start, end });
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

/** Start the server; resolves to { server, port, url }. */
export async function startServer({ port = 8080, host = '127.0.0.1', wwwDir, modelsDir } = {}) {
  const www = path.resolve(wwwDir || path.join(ROOT, 'www'));
  const models = path.resolve(modelsDir || process.env.WEBVLM_MODELS_DIR || path.join(ROOT, '.cache/models'));
  const roots = [['/models/', models], ['/', www]];
  const server = createServer((req, res) => {
    handle(req, res, roots).catch((e) => {
      if (!res.headersSent) send(res, 500, `internal error: ${e.message}\n`);
      else res.destroy();
    });
  });
  // Clients keep connections idle while they hash and decode a shard; a short keep-alive
  // lets the server close a socket just as the client reuses it ("other side closed").
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actual = server.address().port;
  return { server, port: actual, url: `http://${host}:${actual}/` };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const port = process.env.PORT === undefined ? 8080 : Number(process.env.PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`serve: PORT must be an integer 0-65535, got ${process.env.PORT}`);
    process.exit(2);
  }
  const { url } = await startServer({ port });
  console.log(`serving ${url}`);
}
