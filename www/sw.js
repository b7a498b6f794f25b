// Service worker: keeps the page's own files (HTML, scripts, style, models.json, the wasm
// engine) in Cache Storage so the page opens offline after the first visit. Network first
// (a deployed update shows at once), the cached copy when the network fails. Model files are
// not handled here: the engine stores them itself (model-cache.js), and nothing else is
// fetched. Reference: the Service Worker spec (https://w3c.github.io/ServiceWorker/),
// install / activate / fetch events and the Cache interface.
const CACHE = 'webvlm-page-v1';
const FILES = ['./', 'index.html', 'app.js', 'view.js', 'settings.js', 'markdown.js', 'engine-client.js',
  'model-cache.js', 'worker.js', 'style.css', 'models.json', 'pkg/webvlm.js', 'pkg/webvlm_bg.wasm'];
const URLS = new Set(FILES.map((f) => new URL(f, self.registration.scope).href));
const SNIPPET = /^pkg\/snippets\/[\w.-]+\/[\w.-]+\.js$/; // wasm-bindgen's inline JS (hashed names)

/** FILES plus the snippet modules pkg/webvlm.js imports (their names change with each build). */
async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(FILES);
  const glue = await (await cache.match('pkg/webvlm.js')).text();
  const snippets = [...glue.matchAll(/^import .* from ["']\.\/(snippets\/[^"']+\.js)["']/gm)].map((m) => `pkg/${m[1]}`);
  await cache.addAll([...new Set(snippets)]);
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
  return URLS.has(url.href) || SNIPPET.test(rel) ? url.href : null;
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
