// Model download for the webvlm package: manifest.json, the tokenizer and the weight shards,
// several at a time, each sha256-checked with SubtleCrypto before use and kept in Cache
// Storage (one cache per manifest URL), so a second visit loads from disk and a broken
// download resumes where it stopped.
//
// Cache layout (cache name `webvlm-model:` + absolute manifest URL):
//   <manifest URL>                     the manifest text (lets an offline visit start)
//   <file URL>                         a complete file whose sha256 matched the manifest; the
//                                      only entries ever handed to the engine
//   <file URL>?webvlm-part=<sha>&offset=<n>   resume pieces of a partial download (bytes n..);
//                                      never used as a file: the assembled file is hashed
//                                      first, and pieces of another sha are ignored
// A cached file whose bytes no longer match its sha256 is deleted and fetched again alone.
// Resuming sends `Range: bytes=<n>-`; a server answering 200 instead restarts the file.
//
// References: W3C Service Workers (CacheStorage / Cache), WHATWG Storage (estimate, persist),
// W3C WebCrypto (SubtleCrypto.digest), RFC 9110 §14 (Range, Content-Range, 206).

const CACHE_PREFIX = 'webvlm-model:';
const PIECE_BYTES = 8 << 20; // a resume piece is written to the cache every 8 MiB
const PROGRESS_INTERVAL_MS = 100;

/** An error of the loader; `code` tells the kind: 'network' | 'integrity' | 'quota' | 'http' | 'manifest'. */
export class ModelLoadError extends Error {
  constructor(message, code, options) {
    super(message, options);
    this.name = 'ModelLoadError';
    this.code = code;
  }
}

/** The absolute manifest URL of `model` (a manifest URL, or a folder URL ending in `/`). */
export function manifestUrlOf(model, base = globalThis.location?.href) {
  const url = new URL(String(model), base);
  if (url.pathname.endsWith('/')) url.pathname += 'manifest.json';
  return url.href;
}

/** The Cache Storage name of a model. */
export function cacheNameOf(model) {
  return CACHE_PREFIX + manifestUrlOf(model);
}

function hasCaches() {
  return typeof caches !== 'undefined' && caches && typeof caches.open === 'function';
}

/** Lower-case hex sha256 of `bytes`. */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

function mb(n) {
  return `${(n / 1e6).toFixed(1)} MB`;
}

function abortError() {
  return new DOMException('The operation was aborted.', 'AbortError');
}

/** Key of the resume piece of `file` starting at `offset`. */
function pieceUrl(fileUrl, sha, offset) {
  const u = new URL(fileUrl);
  u.searchParams.set('webvlm-part', sha.slice(0, 16));
  u.searchParams.set('offset', String(offset));
  return u.href;
}

/**
 * Bytes held as resume pieces in `cache`, per file URL and version: `Map("<url>#<tag>" → bytes)`
 * (from the pieces' Content-Length headers; pieces never overlap).
 */
async function pieceBytes(cache) {
  const out = new Map();
  for (const req of await cache.keys()) {
    const u = new URL(req.url);
    const tag = u.searchParams.get('webvlm-part');
    if (!tag) continue;
    const len = Number((await cache.match(req))?.headers.get('Content-Length'));
    const key = `${u.origin}${u.pathname}#${tag}`;
    if (Number.isFinite(len) && len > 0) out.set(key, (out.get(key) || 0) + len);
  }
  return out;
}

/** `f`'s total in [`pieceBytes`]'s map. */
function piecesOf(map, f) {
  const u = new URL(f.url);
  return map.get(`${u.origin}${u.pathname}#${f.sha256.slice(0, 16)}`) || 0;
}

/**
 * The URL of a file the manifest names, refused (before anything is fetched) unless it is a plain
 * file name that resolves inside the manifest's own folder: no `/`, `\\`, `..`, `.`, percent-encoded
 * dots, control characters, scheme or query (the Rust reader refuses the same names, but only
 * after the JS has fetched them).
 */
function fileUrl(name, manifestUrl) {
  const base = new URL(manifestUrl);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  const bad = typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\?#%:\u0000-\u001f]/.test(name);
  const u = bad ? null : new URL(name, base);
  if (!u || u.origin !== base.origin || !u.pathname.startsWith(folder) || u.pathname.slice(folder.length).includes('/')) {
    throw new ModelLoadError(`${manifestUrl}: file name ${JSON.stringify(name)} is not a plain file name in the ` +
      "manifest's folder; nothing was fetched", 'manifest');
  }
  return u.href;
}

/** The manifest's files to fetch: the tokenizer first, then the shards (`index` set). */
function filesOf(manifest, manifestUrl) {
  if (!manifest || !Array.isArray(manifest.shards) || !manifest.tokenizer?.file) {
    throw new ModelLoadError(`${manifestUrl}: not a webvlm manifest (no shards / tokenizer)`, 'manifest');
  }
  const tokFile = manifest.tokenizer.file;
  const tok = (manifest.files || []).find((f) => f.file === tokFile);
  if (!tok || !tok.sha256 || !Number.isFinite(tok.size)) {
    throw new ModelLoadError(`${manifestUrl}: the manifest gives no size and sha256 for ${tokFile}`, 'manifest');
  }
  const shards = manifest.shards.map((s, index) => {
    if (!s.file || !s.sha256 || !Number.isFinite(s.size)) {
      throw new ModelLoadError(`${manifestUrl}: shard ${index} lacks file, size or sha256`, 'manifest');
    }
    return { index, file: s.file, size: s.size, sha256: s.sha256.toLowerCase() };
  });
  const url = (f) => fileUrl(f, manifestUrl);
  return [
    { index: -1, file: tokFile, size: tok.size, sha256: tok.sha256.toLowerCase(), url: url(tokFile) },
    ...shards.map((s) => ({ ...s, url: url(s.file) })),
  ];
}

/** Fetch the manifest (network first, the cached copy when offline). */
async function fetchManifest(manifestUrl, cache, fetchFn, signal) {
  let text;
  try {
    const resp = await fetchFn(manifestUrl, { cache: 'no-cache', signal });
    if (!resp.ok) throw new ModelLoadError(`${manifestUrl}: HTTP ${resp.status} ${resp.statusText}`, 'http');
    text = await resp.text();
  } catch (e) {
    if (signal?.aborted) throw abortError();
    const cached = cache && (await cache.match(manifestUrl));
    if (!cached) {
      if (e instanceof ModelLoadError) throw e;
      throw new ModelLoadError(`${manifestUrl}: cannot fetch the manifest: ${e.message}`, 'network', { cause: e });
    }
    text = await cached.text();
  }
  let manifest;
  try {
    manifest = JSON.parse(text);
  } catch (e) {
    throw new ModelLoadError(`${manifestUrl}: manifest is not JSON: ${e.message}`, 'manifest');
  }
  return { manifest, text };
}

/** Tracks bytes per file and in total, the download rate and the time left. */
class Progress {
  constructor(files, onProgress) {
    this.files = files.map((f) => ({ file: f.file, total: f.size, loaded: 0, state: 'queued' }));
    this.byFile = new Map(this.files.map((f) => [f.file, f]));
    this.onProgress = onProgress;
    this.t0 = performance.now();
    this.downloaded = 0; // bytes that came over the network in this load
    this.samples = []; // [time, downloaded] over the last few seconds
    this.lastEmit = 0;
  }

  set(file, fields, force = true) {
    Object.assign(this.byFile.get(file), fields);
    this.emit(force);
  }

  received(file, n) {
    this.byFile.get(file).loaded += n;
    this.downloaded += n;
    this.emit(false);
  }

  rate(now) {
    this.samples.push([now, this.downloaded]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 3000) this.samples.shift();
    const [t, d] = this.samples[0];
    return now - t > 200 ? ((this.downloaded - d) * 1000) / (now - t) : 0;
  }

  emit(force) {
    const now = performance.now();
    if (!this.onProgress || (!force && now - this.lastEmit < PROGRESS_INTERVAL_MS)) return;
    this.lastEmit = now;
    const total = this.files.reduce((a, f) => a + f.total, 0);
    const loaded = this.files.reduce((a, f) => a + f.loaded, 0);
    const bytesPerSecond = this.rate(now);
    const left = total - loaded;
    this.onProgress({
      phase: 'download',
      loaded,
      total,
      bytesPerSecond,
      etaSeconds: left === 0 ? 0 : bytesPerSecond > 0 ? left / bytesPerSecond : null,
      elapsedMs: now - this.t0,
      files: this.files.map((f) => ({ ...f })),
    });
  }
}

/** Resume pieces of `f` in the cache, contiguous from 0: { pieces: [{key, offset, bytes}], offset }. */
async function readPieces(cache, f) {
  const tag = f.sha256.slice(0, 16);
  const prefix = new URL(f.url);
  const found = [];
  for (const req of await cache.keys()) {
    const u = new URL(req.url);
    if (u.origin + u.pathname !== prefix.origin + prefix.pathname || !u.searchParams.has('webvlm-part')) continue;
    if (u.searchParams.get('webvlm-part') !== tag) {
      await cache.delete(req); // a piece of an older version of the file
      continue;
    }
    found.push({ key: req.url, offset: Number(u.searchParams.get('offset')) });
  }
  found.sort((a, b) => a.offset - b.offset);
  const pieces = [];
  let offset = 0;
  for (const p of found) {
    const resp = p.offset === offset ? await cache.match(p.key) : null;
    const bytes = resp ? new Uint8Array(await resp.arrayBuffer()) : null;
    if (!bytes || offset + bytes.length > f.size) {
      await cache.delete(p.key); // a gap or an overlong piece: unusable
      continue;
    }
    pieces.push({ key: p.key, offset, bytes });
    offset += bytes.length;
  }
  return { pieces, offset };
}

async function dropPieces(cache, pieces) {
  await Promise.all(pieces.filter((p) => p.key).map((p) => cache.delete(p.key)));
}

/** The start offset a 206 answer covers, or null when it is not the range asked for. */
function rangeStart(resp, size) {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(resp.headers.get('Content-Range') || '');
  if (!m || (m[3] !== '*' && Number(m[3]) !== size)) return null;
  return Number(m[1]);
}

/**
 * One attempt at the rest of `f` from `state.offset`: appends what arrives to `state.chunks`
 * and writes a resume piece every PIECE_BYTES. Returns when the body ends; throws on failure.
 */
async function downloadAttempt(f, state, ctx) {
  const headers = state.offset > 0 ? { Range: `bytes=${state.offset}-` } : {};
  const resp = await ctx.fetch(f.url, { headers, cache: 'no-store', signal: ctx.signal });
  if (resp.status === 206 && rangeStart(resp, f.size) === state.offset) {
    ctx.stats.resumed.push({ file: f.file, offset: state.offset });
  } else if (resp.ok) {
    if (state.offset > 0) await restart(f, state, ctx); // no Range support: from the start
  } else {
    throw new ModelLoadError(`${f.url}: HTTP ${resp.status} ${resp.statusText}`, 'http');
  }
  const reader = resp.body.getReader();
  let unsaved = state.chunks.reduce((a, c) => a + c.length, 0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (state.offset + unsaved + value.length > f.size) {
      throw new ModelLoadError(`${f.file}: the server sent more than the ${f.size} bytes the manifest gives`, 'integrity');
    }
    state.chunks.push(value);
    unsaved += value.length;
    ctx.progress.received(f.file, value.length);
    if (unsaved >= PIECE_BYTES) {
      await savePiece(f, state, ctx);
      unsaved = 0;
    }
  }
}

/** Move the unsaved chunks into one piece at the current offset, written to the cache as a
 * resume point (kept in memory alone when the cache refuses it). */
async function savePiece(f, state, ctx) {
  if (state.chunks.length === 0) return;
  const piece = { key: null, offset: state.offset, bytes: concat(state.chunks) };
  state.pieces.push(piece);
  state.offset += piece.bytes.length;
  state.chunks = [];
  if (!ctx.cache) return;
  const key = pieceUrl(f.url, f.sha256, piece.offset);
  try {
    await ctx.cache.put(key, pieceResponse(piece.bytes));
    piece.key = key;
  } catch {
    // quota or a closing context: the download goes on, it just cannot resume from here
  }
}

function pieceResponse(bytes) {
  return new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) } });
}

async function restart(f, state, ctx) {
  if (ctx.cache) await dropPieces(ctx.cache, state.pieces);
  ctx.progress.set(f.file, { loaded: 0 }, false);
  Object.assign(state, { pieces: [], chunks: [], offset: 0 });
}

function concat(parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Download `f` (resuming from cached pieces), verify it, cache it. Returns its bytes. */
async function download(f, ctx) {
  const resume = ctx.cache ? await readPieces(ctx.cache, f) : { pieces: [], offset: 0 };
  const state = { pieces: resume.pieces, offset: resume.offset, chunks: [] };
  ctx.progress.set(f.file, { loaded: resume.offset, state: 'downloading' });
  for (let attempt = 0; ; attempt++) {
    try {
      await downloadAttempt(f, state, ctx);
      break;
    } catch (e) {
      if (ctx.signal?.aborted) throw abortError();
      if (e instanceof ModelLoadError && e.code !== 'network') throw e;
      await savePiece(f, state, ctx).catch(() => {});
      if (attempt >= ctx.retries) {
        const kept = ctx.cache ? `; ${mb(state.offset)} of ${mb(f.size)} kept, the next load resumes there` : '';
        throw new ModelLoadError(
          `downloading ${f.file} failed after ${attempt + 1} attempt(s): ${e.message}${kept}`, 'network', { cause: e });
      }
    }
  }
  const bytes = concat([...state.pieces.map((p) => p.bytes), ...state.chunks]);
  state.chunks = [];
  ctx.progress.set(f.file, { state: 'verifying' });
  if (bytes.length !== f.size || (await sha256Hex(bytes)) !== f.sha256) {
    if (ctx.cache) await dropPieces(ctx.cache, state.pieces);
    throw new ModelLoadError(`${f.file}: the downloaded bytes do not match the manifest's size and sha256 ` +
      `(${bytes.length} of ${f.size} bytes); its partial download was discarded`, 'integrity');
  }
  if (ctx.cache) await keep(f, bytes, state, ctx);
  ctx.stats.downloaded.push(f.file);
  return bytes;
}

/**
 * Cache a verified download as one entry; where Cache Storage refuses that (Chromium takes no
 * entry of a few hundred MiB: a model whose largest tensor is that big has a shard that big),
 * keep it as its resume pieces, completed with the tail, which later loads read back whole
 * ([`cachedBytes`]). A file neither way can keep is downloaded again next time (stats.notCached).
 */
async function keep(f, bytes, state, ctx) {
  try {
    await ctx.cache.put(f.url, new Response(bytes, {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(f.size), 'X-Webvlm-Sha256': f.sha256 },
    }));
    await dropPieces(ctx.cache, state.pieces);
    return;
  } catch (e) {
    if (ctx.signal?.aborted) throw abortError();
    state.refused = e;
  }
  const pieces = state.pieces.slice();
  let ok = pieces.every((p) => p.key);
  for (let at = state.offset; ok && at < f.size; at += PIECE_BYTES) {
    const piece = { key: pieceUrl(f.url, f.sha256, at), offset: at, bytes: bytes.subarray(at, Math.min(f.size, at + PIECE_BYTES)) };
    pieces.push(piece);
    try {
      await ctx.cache.put(piece.key, pieceResponse(piece.bytes));
    } catch {
      piece.key = null;
      ok = false;
    }
  }
  if (ok) {
    ctx.stats.cachedInPieces.push(f.file);
  } else {
    await dropPieces(ctx.cache, pieces);
    ctx.stats.notCached.push({ file: f.file, reason: String(state.refused?.message ?? state.refused) });
  }
}

/**
 * The verified bytes of `f` in `cache`: its whole entry, or else its resume pieces when they
 * cover the file ([`keep`]); null when absent (partial pieces are left for the download to resume
 * from, unread). `on.verifying()` is called before a copy is hashed; a corrupt entry or piece set
 * is deleted and reported by `on.corrupt()`.
 */
async function cachedBytes(cache, f, on = {}) {
  const resp = await cache.match(f.url);
  if (resp) {
    on.verifying?.();
    const bytes = new Uint8Array(await resp.arrayBuffer());
    if (bytes.length === f.size && (await sha256Hex(bytes)) === f.sha256) return bytes;
    await cache.delete(f.url);
    on.corrupt?.();
    return null;
  }
  if (piecesOf(await pieceBytes(cache), f) !== f.size) return null;
  on.verifying?.();
  const { pieces, offset } = await readPieces(cache, f);
  if (offset !== f.size) return null;
  const bytes = concat(pieces.map((p) => p.bytes));
  if ((await sha256Hex(bytes)) === f.sha256) return bytes;
  await dropPieces(cache, pieces);
  on.corrupt?.();
  return null;
}

/** The cached bytes of `f` if present and intact ([`cachedBytes`]); a corrupt copy is deleted (null). */
async function fromCache(f, ctx) {
  if (!ctx.cache) return null;
  const bytes = await cachedBytes(ctx.cache, f, {
    verifying: () => ctx.progress.set(f.file, { state: 'verifying' }),
    corrupt: () => ctx.stats.corrupt.push(f.file),
  });
  if (bytes) ctx.stats.fromCache.push(f.file);
  return bytes;
}

/** Bytes of `f`: from the cache when intact, else downloaded. Progress marks it done. */
async function obtain(f, ctx) {
  let bytes = await fromCache(f, ctx);
  const cached = bytes !== null;
  if (!cached) bytes = await download(f, ctx);
  ctx.progress.set(f.file, { loaded: f.size, state: cached ? 'cached' : 'done' });
  return bytes;
}

/** Refuse to start when the files still to download do not fit the storage quota. */
async function checkQuota(files, cache) {
  const storage = globalThis.navigator?.storage;
  if (!cache || !storage?.estimate) return;
  let needed = 0;
  const pieces = await pieceBytes(cache);
  for (const f of files) if (!(await cache.match(f.url))) needed += Math.max(0, f.size - piecesOf(pieces, f));
  if (needed === 0) return;
  const { quota, usage } = await storage.estimate();
  if (Number.isFinite(quota) && quota - (usage || 0) < needed) {
    throw new ModelLoadError(`not enough storage for the model: it needs ${mb(needed)} more, but the browser ` +
      `allows this site ${mb(quota)} and ${mb(usage || 0)} is in use (free space with deleteCachedModel(), ` +
      'or clear this site\'s data)', 'quota');
  }
}

/** Run `fn` over `items` with at most `n` in flight; rejects with the first error. */
async function pool(items, n, fn) {
  const queue = items.slice();
  let failed = null;
  const lane = async () => {
    while (queue.length && !failed) {
      const item = queue.shift();
      try {
        await fn(item);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, lane));
  if (failed) throw failed;
}

/**
 * Fetch a converted model. `begin({ manifest, manifestText, tokenizerText, shards })` is
 * called once the tokenizer is in; `consume(shard, bytes)` once per verified shard, in the
 * order they complete (the caller keeps nothing it does not need). Resolves to
 * `{ manifestUrl, manifest, stats: { fromCache, downloaded, corrupt, resumed, cachedInPieces, notCached } }`.
 *
 * @param {string} model manifest URL, or a folder URL ending in `/`
 * @param {object} opts
 * @param {(p: object) => void} [opts.onProgress]
 * @param {number} [opts.concurrency=3] shards downloaded at a time
 * @param {number} [opts.retries=2] resumed retries per file after a network failure
 * @param {AbortSignal} [opts.signal]
 * @param {boolean} [opts.useCache=true] keep files in Cache Storage (when the context has it)
 */
export async function fetchModel(model, { begin, consume, onProgress, concurrency = 3, retries = 2, signal,
  useCache = true, fetch: fetchFn = globalThis.fetch.bind(globalThis) } = {}) {
  const manifestUrl = manifestUrlOf(model);
  const cache = useCache && hasCaches() ? await caches.open(CACHE_PREFIX + manifestUrl) : null;
  const { manifest, text } = await fetchManifest(manifestUrl, cache, fetchFn, signal);
  const [tok, ...shards] = filesOf(manifest, manifestUrl);
  await checkQuota([tok, ...shards], cache);
  if (cache) await cache.put(manifestUrl, new Response(text, { headers: { 'Content-Type': 'application/json' } }));
  const stats = { fromCache: [], downloaded: [], corrupt: [], resumed: [], cachedInPieces: [], notCached: [] };
  const progress = new Progress([tok, ...shards], onProgress);
  const ctx = { cache, fetch: fetchFn, signal, retries, progress, stats };
  const tokBytes = await obtain(tok, ctx);
  const tokenizerText = new TextDecoder().decode(tokBytes);
  await begin?.({ manifest, manifestText: text, tokenizerText, shards: shards.map(({ url, ...s }) => s) });
  await pool(shards, concurrency, async (s) => {
    const bytes = await obtain(s, ctx);
    if (signal?.aborted) throw abortError();
    await consume?.(s, bytes);
  });
  progress.emit(true);
  return { manifestUrl, manifest, stats };
}

/** The verified bytes of shard `index` of a cached model (for the engine's shard source). */
export async function readCachedShard(model, manifest, index) {
  const manifestUrl = manifestUrlOf(model);
  const f = filesOf(manifest, manifestUrl).find((x) => x.index === index);
  if (!f) throw new ModelLoadError(`no shard ${index} in ${manifestUrl}`, 'manifest');
  const cache = hasCaches() ? await caches.open(CACHE_PREFIX + manifestUrl) : null;
  let corrupt = false;
  const bytes = cache && (await cachedBytes(cache, f, { corrupt: () => { corrupt = true; } }));
  if (corrupt) throw new ModelLoadError(`cached shard ${f.file} of ${manifestUrl} is corrupt (deleted)`, 'integrity');
  if (!bytes) throw new ModelLoadError(`shard ${f.file} of ${manifestUrl} is not in the cache`, 'integrity');
  return bytes;
}

/**
 * Models in Cache Storage: `[{ url, cacheName, bytes, files, complete }]` (`url`: the
 * manifest URL; `complete`: every file of the manifest is cached).
 */
export async function listCachedModels() {
  if (!hasCaches()) return [];
  const out = [];
  for (const name of await caches.keys()) {
    if (!name.startsWith(CACHE_PREFIX)) continue;
    const url = name.slice(CACHE_PREFIX.length);
    const cache = await caches.open(name);
    let bytes = 0;
    const have = new Set();
    for (const req of await cache.keys()) {
      const resp = await cache.match(req);
      const len = Number(resp?.headers.get('Content-Length'));
      bytes += Number.isFinite(len) && len > 0 ? len : (await resp.clone().arrayBuffer()).byteLength;
      have.add(req.url);
    }
    let complete = false;
    const m = await cache.match(url);
    if (m) {
      try {
        const pieces = await pieceBytes(cache);
        complete = filesOf(await m.json(), url).every((f) => have.has(f.url) || piecesOf(pieces, f) === f.size);
      } catch {
        complete = false;
      }
    }
    out.push({ url, cacheName: name, bytes, files: have.size, complete });
  }
  return out;
}

/** Delete a model's cache (its manifest URL or folder URL). Resolves to whether it existed. */
export async function deleteCachedModel(model) {
  if (!hasCaches()) return false;
  return caches.delete(cacheNameOf(model));
}
