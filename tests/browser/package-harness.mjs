// Shared by the package tests (loading, package-vite): an in-process static server over
// several roots that records every request (path, Range header, bytes sent) and can cut the
// connection partway through a file, as a dropped network does. Not a test file itself.
import { createServer } from 'node:http';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { MIME, parseRange } from '../../scripts/serve.mjs';

/**
 * Start a server. `roots`: [[urlPrefix, dir]] (longest prefix first); `pages`: { urlPath: html }
 * (sent with `pageHeaders`, e.g. a Content-Security-Policy).
 * Returns { url, log, faults, close }: `log` gets { path, range, status, sent, cut } per
 * request; set `faults.cut = { file: 'name', after: bytes, times: n }` to drop the connection
 * after `after` bytes of that file's body, `times` times (Infinity: until cleared);
 * `faults.stall = { file, after }` sends `after` bytes of it and then nothing (a tab closed
 * mid-download is simulated by closing the page meanwhile); `faults.slow = { file, bytesPerSecond }`
 * paces that file's body (a slow network).
 */
export async function startPackageServer({ roots, pages = {}, rangeSupport = true, pageHeaders = {} }) {
  const log = [];
  const faults = { cut: null, stall: null, slow: null };
  const server = createServer((req, res) => {
    serve(req, res, { roots, pages, rangeSupport, pageHeaders, log, faults }).catch((e) => {
      if (!res.headersSent) res.writeHead(500).end(String(e));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    log,
    faults,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(resolve);
    }),
  };
}

async function serve(req, res, { roots, pages, rangeSupport, pageHeaders, log, faults }) {
  const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const entry = { path: urlPath, range: req.headers.range || null, status: 0, sent: 0, cut: false };
  log.push(entry);
  const headers = { 'Cache-Control': 'no-cache', 'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp' };
  if (pages[urlPath] !== undefined) {
    entry.status = 200;
    res.writeHead(200, { ...headers, ...pageHeaders, 'Content-Type': 'text/html; charset=utf-8' });
    return res.end(pages[urlPath]);
  }
  const root = roots.find(([prefix]) => urlPath.startsWith(prefix));
  const rel = root && urlPath.slice(root[0].length);
  if (!root || rel.split('/').includes('..')) {
    entry.status = 404;
    return res.writeHead(404).end('not found');
  }
  let file = path.join(root[1], rel);
  let stat = await fsp.stat(file).catch(() => null);
  if (stat?.isDirectory()) {
    file = path.join(file, 'index.html');
    stat = await fsp.stat(file).catch(() => null);
  }
  if (!stat?.isFile()) {
    entry.status = 404;
    return res.writeHead(404).end('not found');
  }
  let start = 0;
  let end = stat.size - 1;
  entry.status = 200;
  const r = rangeSupport && req.headers.range ? parseRange(req.headers.range, stat.size) : null;
  if (r && r !== 'unsatisfiable') {
    ({ start, end } = r);
    entry.status = 206;
    headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`;
  }
  if (rangeSupport) headers['Accept-Ranges'] = 'bytes';
  headers['Content-Type'] = MIME[path.extname(file)] || 'application/octet-stream';
  headers['Content-Length'] = String(end - start + 1);
  res.writeHead(entry.status, headers);
  const cut = faults.cut && path.basename(file) === faults.cut.file && faults.cut.times > 0 ? faults.cut : null;
  if (cut) cut.times -= 1;
  const stall = faults.stall && path.basename(file) === faults.stall.file ? faults.stall : null;
  const slow = faults.slow && path.basename(file) === faults.slow.file ? faults.slow : null;
  const stream = createReadStream(file, { start, end, highWaterMark: slow ? 256 << 10 : undefined });
  stream.on('data', (chunk) => {
    if (stall && entry.sent + chunk.length >= stall.after) {
      const n = Math.max(0, stall.after - entry.sent);
      entry.sent += n;
      stream.destroy();
      res.write(chunk.subarray(0, n)); // and never end: the client hangs until it goes away
      return;
    }
    if (cut && entry.sent + chunk.length >= cut.after) {
      const n = Math.max(0, cut.after - entry.sent);
      entry.sent += n;
      entry.cut = true;
      stream.destroy();
      res.write(chunk.subarray(0, n), () => res.destroy());
      return;
    }
    entry.sent += chunk.length;
    if (slow) {
      res.write(chunk);
      stream.pause();
      setTimeout(() => stream.resume(), (chunk.length * 1000) / slow.bytesPerSecond);
    } else if (!res.write(chunk)) {
      stream.pause();
      res.once('drain', () => stream.resume());
    }
  });
  stream.on('end', () => res.end());
  stream.on('error', () => res.destroy());
}

/**
 * A new page of `target` (a browser or a browser context) at `url`, a packagePage, once the
 * package is imported (`window.webvlm`); its uncaught errors are printed.
 */
export async function openPackagePage(target, url) {
  const page = await target.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  await page.goto(url);
  await page.waitForFunction(() => window.webvlmReady === true);
  return page;
}

/** The page that loads the package from `pkgPath` and exposes it as `window.webvlm`. */
export function packagePage(pkgPath) {
  return `<!doctype html><meta charset="utf-8"><title>webvlm package test</title>
<script type="module">
import * as webvlm from '${pkgPath}';
window.webvlm = webvlm;
window.webvlmReady = true;
</script>`;
}
