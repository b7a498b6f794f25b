// Model files in Cache Storage (https://w3c.github.io/ServiceWorker/#cache-interface), shared by
// the engine worker (which stores what it downloads) and the page (which lists and deletes).
// Keying: one cache named MODEL_CACHE; each entry is a GET of the file's absolute URL
// (`<model folder>/manifest.json`, the tokenizer, each shard); a model is the set of entries
// under its folder URL. Only complete, successful (200) responses are stored: `cache.put`
// rejects when the body fails mid-way, so a broken download leaves no entry.
// Interim until the npm package's loader (js/) takes over downloading and caching.

export const MODEL_CACHE = 'webvlm-models-v1';

const hasCaches = () => typeof caches !== 'undefined';

/** The folder URL of a model (absolute, ending in `/`) from its folder or manifest URL. */
export function modelFolder(url, base = globalThis.location?.href) {
  const u = new URL(url, base);
  u.search = '';
  u.hash = '';
  return u.href.endsWith('/') ? u.href : u.href.slice(0, u.href.lastIndexOf('/') + 1);
}

/**
 * A `fetch` that answers GETs under `folder` from the cache and stores what it downloads there.
 * `log.puts` collects the pending `cache.put` promises (await them before listing the cache);
 * `log.calls` counts the model files asked for.
 */
export function cachingFetch(folder, realFetch, log = { puts: [], calls: 0 }) {
  return async (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input.url, folder).href;
    const method = (init && init.method) || (typeof input === 'string' ? 'GET' : input.method);
    if (!hasCaches() || method !== 'GET' || !url.startsWith(folder)) return realFetch(input, init);
    log.calls += 1;
    const cache = await caches.open(MODEL_CACHE);
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
  return Number.isFinite(n) && n > 0 ? n : (await resp.blob()).size;
}

/** Cached models: [{ url, files, bytes }] (url: the folder), sorted by url. */
export async function listCachedModels() {
  if (!hasCaches() || !(await caches.has(MODEL_CACHE))) return [];
  const cache = await caches.open(MODEL_CACHE);
  const models = new Map();
  for (const req of await cache.keys()) {
    const url = modelFolder(req.url);
    const resp = await cache.match(req);
    if (!resp) continue;
    const m = models.get(url) || { url, files: 0, bytes: 0 };
    m.files += 1;
    m.bytes += await entrySize(resp);
    models.set(url, m);
  }
  return [...models.values()].sort((a, b) => a.url.localeCompare(b.url));
}

/** Delete every cached file of the model in folder `url`; resolves to how many were deleted. */
export async function deleteCachedModel(url) {
  if (!hasCaches() || !(await caches.has(MODEL_CACHE))) return 0;
  const folder = modelFolder(url);
  const cache = await caches.open(MODEL_CACHE);
  let n = 0;
  for (const req of await cache.keys()) {
    if (modelFolder(req.url) === folder && (await cache.delete(req))) n += 1;
  }
  return n;
}
