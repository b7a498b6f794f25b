// scripts/serve.mjs: MIME types, cross-origin isolation headers, Range requests, and
// refusal of paths that leave the served folders.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm, symlink } from 'node:fs/promises';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startServer, parseRange } from '../../scripts/serve.mjs';

let tmp;
let srv;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'webvlm-serve-'));
  await mkdir(path.join(tmp, 'www/pkg'), { recursive: true });
  await mkdir(path.join(tmp, 'models/m'), { recursive: true });
  await writeFile(path.join(tmp, 'www/index.html'), '<!doctype html><title>t</title>');
  await writeFile(path.join(tmp, 'www/pkg/x_bg.wasm'), Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]));
  await writeFile(path.join(tmp, 'models/m/shard.safetensors'), Buffer.from('0123456789'));
  await writeFile(path.join(tmp, 'secret.txt'), 'secret');
  await symlink(path.join(tmp, 'secret.txt'), path.join(tmp, 'www/leak.txt'));
  srv = await startServer({ port: 0, wwwDir: path.join(tmp, 'www'), modelsDir: path.join(tmp, 'models') });
});

after(async () => {
  srv?.server.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Raw GET (no URL normalization, unlike fetch) -> { status, headers, body }. */
function get(rawPath, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path: rawPath, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('serves index.html at / with COOP/COEP and CSP', async () => {
  const r = await get('/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp');
  assert.match(r.headers['content-security-policy'], /'wasm-unsafe-eval'/);
  assert.match(r.body.toString(), /<title>t<\/title>/);
});

test('wasm is served as application/wasm', async () => {
  const r = await get('/pkg/x_bg.wasm');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/wasm');
  assert.equal(r.body.length, 8);
});

test('models are served from the models folder, with ranges', async () => {
  const full = await get('/models/m/shard.safetensors');
  assert.equal(full.status, 200);
  assert.equal(full.body.toString(), '0123456789');
  const part = await get('/models/m/shard.safetensors', { Range: 'bytes=2-5' });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], 'bytes 2-5/10');
  assert.equal(part.body.toString(), '2345');
  const suffix = await get('/models/m/shard.safetensors', { Range: 'bytes=-3' });
  assert.equal(suffix.body.toString(), '789');
  const bad = await get('/models/m/shard.safetensors', { Range: 'bytes=20-' });
  assert.equal(bad.status, 416);
});

test('directory traversal and symlinks out of the root are refused', async () => {
  for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/models/..%2f..%2fsecret.txt', '/models/m/%2e%2e/%2e%2e/secret.txt', '/%00']) {
    const r = await get(p);
    assert.ok([403, 404].includes(r.status), `${p} gave ${r.status}`);
    assert.ok(!r.body.toString().includes('secret'), `${p} leaked the file`);
  }
  const link = await get('/leak.txt');
  assert.equal(link.status, 403);
});

test('missing files are 404 and other methods 405', async () => {
  assert.equal((await get('/nope.js')).status, 404);
  const r = await new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path: '/', method: 'POST' }, resolve);
    req.end();
  });
  assert.equal(r.statusCode, 405);
  r.resume();
});

test('parseRange handles the single-range forms', () => {
  assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, end: 0 });
  assert.deepEqual(parseRange('bytes=5-', 10), { start: 5, end: 9 });
  assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  assert.equal(parseRange('bytes=9-2', 10), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,3-4', 10), null);
});
