// The chat page: model picker (models.json), download progress, a multi-turn conversation with
// images (file picker, paste, drop), streamed answers rendered as safe Markdown, stop /
// regenerate / new chat, settings kept in localStorage, the models stored in this browser, and
// a service worker (sw.js) that keeps the page usable offline.
// Every engine call goes through engine-client.js, a thin adapter over the webvlm npm package
// (www/webvlm/: its worker engine, cached shard loader and thread chooser).
// Nothing the user types or attaches leaves the page: the only network traffic is the page's
// own files, models.json and the model's files. Model text is shown only through markdown.js.

import { openEngine, listCachedModels, deleteCachedModel, modelFolder } from './engine-client.js';
import { bindSettings, initialBackend, loadSettings, readParams, saveSettings } from './settings.js';
import { BACKEND_NAMES, addMessage, addMeta, progressText, renderAttachments, renderCachedModels, setAnswer }
  from './view.js';
import { renderSamples } from './samples.js';

const FALLBACK_MODELS = { default: 'models/smollm2-135m-int4/',
  models: [{ name: 'SmolLM2 135M Instruct (int4)', url: 'models/smollm2-135m-int4/' }] };
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];

const $ = (id) => document.getElementById(id);
const ui = {
  progress: $('load-progress'), loadText: $('load-text'), modelName: $('model-name'), status: $('status'),
  notice: $('notice'), log: $('log'), form: $('chat-form'), prompt: $('prompt'), send: $('send'), stop: $('stop'),
  regenerate: $('regenerate'), reset: $('reset'), model: $('model'), maxTokens: $('max-tokens'),
  temperature: $('temperature'), topP: $('top-p'), backend: $('backend'), attach: $('attach'),
  imageInput: $('image-input'), attachments: $('attachments'), cachedModels: $('cached-models'),
  cacheTotal: $('cache-total'), cacheEmpty: $('cache-empty'), cachePanel: $('cache-panel'),
  samples: $('samples'), sampleList: $('sample-list'),
};

let engine = null;
let backendLabel = '';
let models = FALLBACK_MODELS.models;
let abort = null; // AbortController of the answer being generated
const history = []; // [{ role, content, images?: [{ file, url }] }]
let pendingImages = []; // [{ file, url }] attached to the next message

const supportsImages = () => Boolean(engine?.info.supportsImages);
const state = () => document.body.dataset.state;

function setState(s) {
  document.body.dataset.state = s;
  const ready = s === 'ready';
  ui.prompt.disabled = !(ready || s === 'generating');
  ui.send.disabled = !ready;
  ui.reset.disabled = !ready;
  ui.stop.disabled = s !== 'generating';
  ui.regenerate.disabled = !(ready && canRegenerate());
  ui.backend.disabled = !(ready || s === 'error');
  ui.model.disabled = !(ready || s === 'error');
  ui.imageInput.disabled = !(supportsImages() && (ready || s === 'generating'));
}

/** The last turn is an answer that finished (so the user turn before it can be re-run). */
function canRegenerate() {
  const last = ui.log.lastElementChild;
  return history.at(-1)?.role === 'assistant' && Boolean(last?.classList.contains('assistant') && last.dataset.ids);
}

function fail(e) {
  setState('error');
  ui.status.textContent = `Error: ${e.message || e}`;
}

function showNotice(text) {
  ui.notice.textContent = text || '';
  ui.notice.hidden = !text;
}

/** The label of a loaded backend, with the adapter's name and features on WebGPU. */
function describeBackend(backend, adapter) {
  const name = BACKEND_NAMES[backend] || backend;
  if (backend !== 'webgpu' || !adapter) return name;
  const feats = [adapter.shader_f16 && 'f16', adapter.subgroups && `subgroups ${adapter.subgroup_min_size}`]
    .filter(Boolean).join(', ');
  return `${name} (${adapter.name}${feats ? `; ${feats}` : ''})`;
}

/** A model folder URL on this site, as an absolute URL (other origins are refused). */
function sameSiteModel(raw) {
  const url = new URL(raw.endsWith('/') ? raw : raw + '/', location.href);
  if (url.origin !== location.origin) {
    throw new Error(`model URL must be on this site (${location.origin}), got ${url.origin}`);
  }
  return url.href;
}

/** Fill the model picker from models.json; selects `?model=`, else the stored one, else the default. */
async function initModels() {
  let list = FALLBACK_MODELS;
  try {
    const resp = await fetch('models.json');
    if (resp.ok) list = await resp.json();
  } catch {
    // Offline without a cached models.json: the built-in default.
  }
  models = list.models.map((m) => ({ ...m, url: modelFolder(m.url) }));
  const wanted = new URLSearchParams(location.search).get('model');
  let current = sameSiteModel(wanted || loadSettings().model || list.default || models[0].url);
  if (!models.some((m) => m.url === current)) {
    if (wanted) models.push({ name: `${new URL(current).pathname} (from the link)`, url: current });
    else current = models[0].url;
  }
  ui.model.replaceChildren(...models.map((m) => new Option(m.name, m.url)));
  ui.model.value = current;
}

const modelName = (url) => models.find((m) => m.url === url)?.name || new URL(url).pathname;

/** Close any engine and load the picked model on the picked backend (a new conversation). */
async function loadModel() {
  engine?.close();
  engine = null;
  clearConversation();
  const url = ui.model.value;
  ui.modelName.textContent = modelName(url);
  ui.status.textContent = 'Loading model…';
  ui.progress.value = 0;
  ui.loadText.textContent = 'starting…';
  ui.attach.hidden = true;
  showNotice('');
  setState('loading');
  const onProgress = (p) => {
    if (p.phase !== 'download') return; // then 'build' and 'ready': the status line says it
    ui.progress.max = p.total || 1;
    ui.progress.value = p.loaded;
    ui.loadText.textContent = progressText(p);
  };
  const threadsParam = new URLSearchParams(location.search).get('threads'); // a number, or absent = auto
  const threads = threadsParam && Number(threadsParam) > 0 ? Number(threadsParam) : 'auto';
  engine = await openEngine({ model: url, backend: ui.backend.value, threads, onProgress });
  const info = engine.info;
  backendLabel = describeBackend(info.backend, info.adapter);
  if (info.fallbackReason) showNotice(`Running on the CPU: ${info.fallbackReason}`);
  ui.attach.hidden = !info.supportsImages;
  const samples = info.supportsImages ? models.find((m) => m.url === url)?.samples : null;
  renderSamples(ui.samples, ui.sampleList, samples, (file, question) => {
    attachFiles([file]);
    ui.prompt.value = question;
    ui.prompt.focus();
  });
  const cpuThreads = `${info.threads} CPU thread${info.threads === 1 ? '' : 's'}`;
  ui.status.textContent = `Ready · backend: ${backendLabel} · ${cpuThreads} · loaded in ${(info.loadMs / 1000).toFixed(1)} s`;
  ui.status.title = info.threadsReason ? `one CPU thread: ${info.threadsReason}` : '';
  setState('ready');
  ui.prompt.focus();
  refreshCache();
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || state() !== 'ready') return;
  ui.prompt.value = '';
  const images = pendingImages;
  pendingImages = [];
  showAttachments();
  history.push({ role: 'user', content: text, images });
  addMessage(ui.log, 'user', text, images.map((im) => im.url));
  await answer();
}

/** Re-run the last user turn: its answer is dropped from the page and the history. */
async function regenerate() {
  if (state() !== 'ready' || !canRegenerate()) return;
  history.pop();
  ui.log.lastElementChild.remove();
  await answer();
}

/** Generate the answer to the conversation (which ends with a user turn), streamed into a new bubble. */
async function answer() {
  const { li, body } = addMessage(ui.log, 'assistant', '');
  li.setAttribute('aria-busy', 'true');
  let text = '';
  let tokens = 0;
  let ttftMs = null;
  let frame = 0;
  const t0 = performance.now();
  abort = new AbortController();
  setState('generating');
  ui.status.textContent = `Generating · backend: ${backendLabel}`;
  const onToken = (piece) => {
    if (ttftMs === null) ttftMs = performance.now() - t0;
    text += piece;
    tokens += 1;
    // One re-render per animation frame, however fast the tokens come.
    frame ||= requestAnimationFrame(() => {
      frame = 0;
      setAnswer(li, body, text);
    });
    const s = (performance.now() - t0) / 1000;
    ui.status.textContent = `Generating · backend: ${backendLabel} · ${tokens} tokens · ${(tokens / s).toFixed(1)} tokens/s`;
    li.scrollIntoView({ block: 'end' });
  };
  const messages = history.map((m) => ({ role: m.role, content: m.content, images: (m.images || []).map((im) => im.file) }));
  try {
    const result = await engine.generate({ messages, params: { ...readParams(ui), seed: Date.now() % 2 ** 32 },
      onToken, signal: abort.signal });
    cancelAnimationFrame(frame);
    setAnswer(li, body, result.text);
    history.push({ role: 'assistant', content: result.text });
    showResult(li, result, result.ttft_ms ?? ttftMs);
  } catch (e) {
    cancelAnimationFrame(frame);
    history.pop(); // the user turn had no answer; drop it so the history stays well-formed
    // The engine outlives a failed request (a bad image, a too-long prompt): say why, stay usable.
    li.dataset.text = '';
    body.textContent = '(no answer)';
    setState('ready');
    ui.status.textContent = `Error: ${e.message || e}`;
  } finally {
    abort = null;
    li.removeAttribute('aria-busy');
  }
  if (state() === 'ready') ui.prompt.focus();
}

/** The finished answer's figures: under the bubble and in the status line. */
function showResult(li, result, ttftMs) {
  addMeta(li, result, ttftMs);
  const t = result.timings;
  if (result.fallback_reason) {
    backendLabel = BACKEND_NAMES[result.backend] || result.backend;
    showNotice(`The GPU failed during this answer (${result.fallback_reason}); the conversation continues on the CPU.`);
  }
  // Where this run's new images went through the vision tower (absent: all from the cache).
  const where = { gpu: ' on WebGPU', cpu: ' on the CPU' }[t.image_encoder] || '';
  const img = result.image_tokens
    ? ` · ${result.image_tokens} image tokens, encoded in ${t.image_encode_ms.toFixed(0)} ms${where}` : '';
  const how = result.finish_reason === 'aborted' ? 'Stopped' : 'Done';
  setState('ready');
  ui.status.textContent = `${how} · backend: ${backendLabel} · ${result.ids.length} tokens · ` +
    `${t.decode_tokens_per_s.toFixed(1)} tokens/s decode · prefill ${t.prefill_tokens} tokens in ` +
    `${t.prefill_ms.toFixed(0)} ms${img}`;
}

function stop() {
  abort?.abort();
  ui.stop.disabled = true;
}

/** Drop the conversation from the page (the engine's cache follows the new prompt's prefix). */
function clearConversation() {
  for (const m of history) for (const im of m.images || []) URL.revokeObjectURL(im.url);
  history.length = 0;
  ui.log.replaceChildren();
}

function showAttachments() {
  renderAttachments(ui.attachments, pendingImages, (i) => {
    URL.revokeObjectURL(pendingImages[i].url);
    pendingImages.splice(i, 1);
    showAttachments();
    ui.prompt.focus();
  });
}

/** Queue image files for the next message (other file types are reported, not sent). */
function attachFiles(files) {
  if (!supportsImages()) return;
  for (const file of files) {
    if (!IMAGE_TYPES.includes(file.type)) {
      ui.status.textContent = `Not attached: ${file.name || 'file'} is not a PNG, JPEG or WebP image`;
      continue;
    }
    pendingImages.push({ file, url: URL.createObjectURL(file) });
  }
  showAttachments();
}

async function refreshCache() {
  try {
    renderCachedModels(ui, await listCachedModels(), (url) => modelName(modelFolder(url)), async (url) => {
      await deleteCachedModel(url);
      await refreshCache();
    });
  } catch (e) {
    ui.cacheTotal.textContent = '';
    ui.cacheEmpty.hidden = false;
    ui.cacheEmpty.textContent = `Cannot read the stored models: ${e.message || e}`;
  }
}

/** Record a choice in the URL and in storage, then reload the engine. */
function reloadWith(param, value) {
  const params = new URLSearchParams(location.search);
  params.set(param, param === 'model' ? new URL(value).pathname : value);
  window.history.replaceState(null, '', `?${params}`);
  saveSettings({ [param]: param === 'model' ? new URL(value).pathname : value });
  loadModel().catch(fail);
}

function bindEvents() {
  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    send().catch(fail);
  });
  ui.prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send().catch(fail);
    }
  });
  ui.stop.addEventListener('click', stop);
  ui.regenerate.addEventListener('click', () => regenerate().catch(fail));
  ui.reset.addEventListener('click', () => {
    clearConversation();
    setState('ready');
    ui.status.textContent = `Ready · backend: ${backendLabel}`;
    ui.prompt.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && abort) stop();
  });
  ui.backend.addEventListener('change', () => reloadWith('backend', ui.backend.value));
  ui.model.addEventListener('change', () => reloadWith('model', ui.model.value));
  ui.cachePanel.addEventListener('toggle', () => ui.cachePanel.open && refreshCache());
  bindImageEvents();
}

function bindImageEvents() {
  ui.imageInput.addEventListener('change', () => {
    attachFiles([...ui.imageInput.files]);
    ui.imageInput.value = '';
  });
  ui.prompt.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (supportsImages() && files.length) {
      e.preventDefault();
      attachFiles(files);
    }
  });
  document.addEventListener('dragover', (e) => {
    if (!supportsImages() || !e.dataTransfer?.types.includes('Files')) return;
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', (e) => {
    if (e.relatedTarget === null) document.body.classList.remove('dragging');
  });
  document.addEventListener('drop', (e) => {
    document.body.classList.remove('dragging');
    if (!supportsImages() || !e.dataTransfer?.files.length) return;
    e.preventDefault();
    attachFiles([...e.dataTransfer.files]);
  });
}

async function main() {
  bindSettings(ui);
  ui.backend.value = initialBackend();
  bindEvents();
  // Offline after the first visit: the service worker keeps the page's files (not the models).
  navigator.serviceWorker?.register('sw.js').catch(() => {});
  await initModels();
  await loadModel();
}

// Testing and diagnostic hooks: loseDevice destroys the engine's WebGPU device (as a lost GPU
// would), mid-answer or between answers, and resolves to whether there was a device;
// showAnswer(text) adds an assistant bubble through the same rendering path as a model answer.
window.webvlmDebug = {
  loseDevice: () => engine.loseDevice(),
  showAnswer: (text) => { addMessage(ui.log, 'assistant', text); },
};

main().catch(fail);
