// Service worker: keeps the page's own files (HTML, scripts, style, models.json) and the webvlm
// package the page runs on (webvlm/: its modules, workers and both wasm builds, as listed in
// webvlm/files.json by scripts/build-package.mjs) in Cache Storage, so the page opens offline
// after the first visit. Network first (a deployed update shows at once), the cached copy when
// the network fails. Model files are not handled here: the package stores them itself (its
// loader's Cache Storage), and nothing else is fetched. Reference: the Service Worker spec
// (https://w3c.github.io/ServiceWorker/), install / activate / fetch events and the Cache interface.
const CACHE = 'webvlm-page-v2';
const FILES = ['./', 'index.html', 'app.js', 'view.js', 'settings.js', 'markdown.js', 'engine-client.js',
  'samples.js', 'style.css', 'models.json', 'webvlm/files.json'];
const PACKAGE_FILE = /\.(js|wasm)$/; // what the page loads of the package (not its README, types)
const SAMPLE = /^samples\/[\w.-]+\.png$/; // models.json's sample images: kept once shown
const OWN = new Set(FILES.map((f) => new URL(f, self.registration.scope).href));

/** FILES, then the package's files that webvlm/files.json names. */
async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(FILES);
  const list = await (await cache.match('webvlm/files.json')).json();
  await cache.addAll(list.filter((f) => PACKAGE_FILE.test(f)).map((f) => `webvlm/${f}`));
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
  const rel = url.href.startsWith(self.registration.scope) ? url.href.slice(self.registration.scope.length) : '';
  return OWN.has(url.href) || (rel.startsWith('webvlm/') && PACKAGE_FILE.test(rel)) || SAMPLE.test(rel) ? url.href
    : null;
}

async function respond(event, key) {
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
}

self.addEventListener('fetch', (event) => {
  const key = pageFile(event.request);
  if (key) event.respondWith(respond(event, key)); // else not ours: the browser fetches it as usual
});
