// Model files in Cache Storage (https://w3c.github.io/ServiceWorker/#cache-interface), shared by
// the engine worker (which stores what it downloads) and the page (which lists and deletes).
// Keyed as the npm package's loader (js/loader.js) keys them, so either can read the other's:
// one cache per model named `webvlm-model:<absolute manifest URL>`, one entry per file, keyed by
// the file's absolute URL (the manifest, the tokenizer, each shard). Only complete, successful
// (200) responses are stored: `cache.put` rejects when the body fails mid-way, so a broken
// download leaves no entry. Interim until the page loads models through the package.

export const CACHE_PREFIX = 'webvlm-model:';

const hasCaches = () => typeof caches !== 'undefined';

/** The absolute manifest URL of a model folder (ending in `/`) or manifest URL. */
export function manifestUrlOf(model, base = globalThis.location?.href) {
  const url = new URL(String(model), base);
  url.search = '';
  url.hash = '';
  if (url.pathname.endsWith('/')) url.pathname += 'manifest.json';
  return url.href;
}

/** The folder URL (ending in `/`) of a model folder or manifest URL. */
export function modelFolder(model, base = globalThis.location?.href) {
  const m = manifestUrlOf(model, base);
  return m.slice(0, m.lastIndexOf('/') + 1);
}

/**
 * A `fetch` that answers GETs under `model`'s folder from its cache and stores what it
 * downloads there. `log.puts` collects the pending `cache.put` promises (await them before
 * listing the cache); `log.calls` counts the model files asked for.
 */
export function cachingFetch(model, realFetch, log = { puts: [], calls: 0 }) {
  const folder = modelFolder(model);
  const name = CACHE_PREFIX + manifestUrlOf(model);
  return async (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input.url, folder).href;
    const method = (init && init.method) || (typeof input === 'string' ? 'GET' : input.method);
    if (!hasCaches() || method !== 'GET' || !url.startsWith(folder)) return realFetch(input, init);
    log.calls += 1;
    const cache = await caches.open(name);
    const hit = await cache.match(url);
    if (hit) return hit;
    const resp = await realFetch(input, init);
    if (resp.status === 200) {
      log.puts.push(cache.put(url, resp.clone()).catch(() => {})); // quota / cut download: not kept
    }
    return resp;
  };
}

/** Bytes of a cached response: its Content-Length, else its body's size. */
async function entrySize(resp) {
  const n = Number(resp.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : (await resp.clone().blob()).size;
}

/** Whether every file the cached manifest names (tokenizer, shards) is in `have`. */
async function isComplete(cache, manifestUrl, have) {
  const m = await cache.match(manifestUrl);
  if (!m) return false;
  try {
    const manifest = await m.json();
    const files = [manifest.tokenizer.file, ...manifest.shards.map((s) => s.file)];
    return files.every((f) => have.has(new URL(f, manifestUrl).href));
  } catch {
    return false;
  }
}

/** Cached models: [{ url (the manifest URL), cacheName, bytes, files, complete }]. */
export async function listCachedModels() {
  if (!hasCaches()) return [];
  const out = [];
  for (const cacheName of await caches.keys()) {
    if (!cacheName.startsWith(CACHE_PREFIX)) continue;
    const url = cacheName.slice(CACHE_PREFIX.length);
    const cache = await caches.open(cacheName);
    const have = new Set();
    let bytes = 0;
    for (const req of await cache.keys()) {
      const resp = await cache.match(req);
      if (!resp) continue;
      have.add(req.url);
      bytes += await entrySize(resp);
    }
    out.push({ url, cacheName, bytes, files: have.size, complete: await isComplete(cache, url, have) });
  }
  return out.sort((a, b) => a.url.localeCompare(b.url));
}

/** Delete a model's cache (its folder or manifest URL); resolves to whether it existed. */
export async function deleteCachedModel(model) {
  if (!hasCaches()) return false;
  return caches.delete(CACHE_PREFIX + manifestUrlOf(model));
}
