// Service worker: keeps the page's own files (HTML, scripts, style, models.json, the wasm
// engine) in Cache Storage so the page opens offline after the first visit. Network first
// (a deployed update shows at once), the cached copy when the network fails. Model files are
// not handled here: the engine stores them itself (model-cache.js), and nothing else is
// fetched. Reference: the Service Worker spec (https://w3c.github.io/ServiceWorker/),
// install / activate / fetch events and the Cache interface.
const CACHE = 'webvlm-page-v1';
const FILES = ['./', 'index.html', 'app.js', 'view.js', 'settings.js', 'markdown.js', 'engine-client.js',
  'model-cache.js', 'samples.js', 'worker.js', 'threads.js', 'thread-worker.js', 'style.css', 'models.json', 'pkg/webvlm.js',
  'pkg/webvlm_bg.wasm'];
// The threaded build (absent when built with WEBVLM_NO_THREADS=1): cached when present.
const OPTIONAL = ['pkg-threads/webvlm.js', 'pkg-threads/webvlm_bg.wasm'];
const URLS = new Set([...FILES, ...OPTIONAL].map((f) => new URL(f, self.registration.scope).href));
const SNIPPET = /^pkg(-threads)?\/snippets\/[\w.-]+\/[\w.-]+\.js$/; // wasm-bindgen's inline JS (hashed names)
const SAMPLE = /^samples\/[\w.-]+\.png$/; // models.json's sample images: kept once shown

/** The snippet modules a wasm-bindgen glue file imports, as paths under `dir`. */
function snippetsOf(glue, dir) {
  return [...glue.matchAll(/^import .* from ["']\.\/(snippets\/[^"']+\.js)["']/gm)].map((m) => `${dir}/${m[1]}`);
}

/** FILES plus the snippet modules pkg/webvlm.js imports (their names change with each build). */
async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(FILES);
  const glue = await (await cache.match('pkg/webvlm.js')).text();
  await cache.addAll([...new Set(snippetsOf(glue, 'pkg'))]);
  try {
    await cache.addAll(OPTIONAL);
    const threaded = await (await cache.match('pkg-threads/webvlm.js')).text();
    await cache.addAll([...new Set(snippetsOf(threaded, 'pkg-threads'))]);
  } catch {
    // no threaded build deployed: the one-thread build serves offline
  }
}

self.addEventListener('install', (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith('webvlm-page-') && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

/** The page's own file this request is for (a navigation is index.html), or null. */
function pageFile(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  url.search = '';
  url.hash = '';
  if (request.mode === 'navigate' && url.href === self.registration.scope) return url.href;
  const rel = url.href.startsWith(self.registration.scope) ? url.href.slice(self.registration.scope.length) : null;
  return URLS.has(url.href) || SNIPPET.test(rel) || SAMPLE.test(rel) ? url.href : null;
}

self.addEventListener('fetch', (event) => {
  const key = pageFile(event.request);
  if (!key) return; // not ours: the browser fetches it as usual
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const resp = await fetch(event.request);
      if (resp.status === 200) event.waitUntil(cache.put(key, resp.clone()).catch(() => {}));
      return resp;
    } catch (e) {
      const hit = await cache.match(key);
      if (hit) return hit;
      throw e;
    }
  })());
});
