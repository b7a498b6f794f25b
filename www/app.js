// UI thread: talks to worker.js (which owns the wasm engine) with typed, id-tagged messages.
// Model text is only ever inserted with textContent / text nodes, never as HTML.
// Nothing the user types leaves the page: the only network traffic is the model download.
// Images (models that take them) are read from the file picker, a drop or a paste, shown with
// object URLs, and their bytes go only to the worker (ArrayBuffers, transferred).
// Backend (settings select or `?backend=auto|webgpu|cpu`): chosen at load; changing it reloads
// the engine. Each answer says which backend ran it; a notice tells when the engine fell back
// to the CPU and why.

const DEFAULT_MODEL = 'models/smollm2-135m-int4/';
const BACKEND_NAMES = { cpu: 'CPU (wasm SIMD)', webgpu: 'WebGPU' };
const BACKENDS = ['auto', 'webgpu', 'cpu'];

const $ = (id) => document.getElementById(id);
const ui = {
  progress: $('load-progress'),
  loadText: $('load-text'),
  modelName: $('model-name'),
  status: $('status'),
  log: $('log'),
  form: $('chat-form'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  reset: $('reset'),
  maxTokens: $('max-tokens'),
  temperature: $('temperature'),
  backend: $('backend'),
  notice: $('notice'),
  attach: $('attach'),
  imageInput: $('image-input'),
  attachments: $('attachments'),
};
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];

/** The model folder: `?model=` (same origin only) or the default, as an absolute URL. */
function modelUrl() {
  const raw = new URLSearchParams(location.search).get('model') || DEFAULT_MODEL;
  const url = new URL(raw.endsWith('/') ? raw : raw + '/', location.href);
  if (url.origin !== location.origin) {
    throw new Error(`model URL must be on this site (${location.origin}), got ${url.origin}`);
  }
  return url.href;
}

/** The backend asked for: `?backend=` when valid, else `auto`. */
function initialBackend() {
  const b = new URLSearchParams(location.search).get('backend');
  return BACKENDS.includes(b) ? b : 'auto';
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

let worker = null;
let nextId = 1;
const pending = new Map(); // id -> { onProgress, onToken, resolve, reject }
let backendLabel = '';
let generatingId = null;
const history = []; // [{ role, content, images?: [{ file, url }] }] sent through the chat template
let supportsImages = false;
let pendingImages = []; // [{ file, url }] attached to the next message

function request(msg, handlers = {}, transfer = []) {
  const id = nextId++;
  return {
    id,
    done: new Promise((resolve, reject) => {
      pending.set(id, { ...handlers, resolve, reject });
      worker.postMessage({ ...msg, id }, transfer);
    }),
  };
}

function onWorkerMessage(ev) {
  const msg = ev.data;
  const p = pending.get(msg.id);
  if (!p) return;
  switch (msg.type) {
    case 'progress':
      p.onProgress?.(msg);
      break;
    case 'token':
      p.onToken?.(msg.text, msg.tokenId);
      break;
    case 'loaded':
    case 'done':
    case 'lost':
      pending.delete(msg.id);
      p.resolve(msg);
      break;
    case 'error':
      pending.delete(msg.id);
      p.reject(new Error(msg.message));
      break;
  }
}

function setState(state) {
  document.body.dataset.state = state;
  const ready = state === 'ready';
  ui.prompt.disabled = !(ready || state === 'generating');
  ui.send.disabled = !ready;
  ui.reset.disabled = !ready;
  ui.stop.disabled = state !== 'generating';
  ui.backend.disabled = !(ready || state === 'error');
  ui.imageInput.disabled = !(supportsImages && (ready || state === 'generating'));
}

function fail(e) {
  setState('error');
  ui.status.textContent = `Error: ${e.message || e}`;
}

/** Append a message bubble (with its images' object URLs); returns the element that receives its text. */
function addMessage(role, text, imageUrls = []) {
  const li = document.createElement('li');
  li.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'role';
  who.textContent = role === 'user' ? 'You' : 'Assistant';
  const body = document.createElement('span');
  body.className = 'body';
  body.textContent = text;
  li.append(who);
  if (imageUrls.length) {
    const box = document.createElement('div');
    box.className = 'images';
    imageUrls.forEach((url, i) => {
      const img = document.createElement('img');
      img.src = url;
      img.alt = `attached image ${i + 1}`;
      box.append(img);
    });
    li.append(box);
  }
  li.append(body);
  ui.log.append(li);
  li.scrollIntoView({ block: 'end' });
  return { li, body };
}

/** Show (or with no text, hide) the backend notice. */
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

async function loadModel() {
  const url = modelUrl();
  ui.modelName.textContent = new URL(url).pathname;
  ui.status.textContent = 'Loading model…';
  showNotice('');
  setState('loading');
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
  worker.onerror = (e) => fail(new Error(`worker failed: ${e.message || 'could not start'}`));
  const onProgress = ({ loaded, total, file }) => {
    ui.progress.max = total || 1;
    ui.progress.value = loaded;
    const pct = total ? ` (${Math.floor((100 * loaded) / total)}%)` : '';
    ui.loadText.textContent = `${formatBytes(loaded)} / ${formatBytes(total)}${pct} · ${file}`;
  };
  const { done } = request({ type: 'load', url, backend: ui.backend.value }, { onProgress });
  const loaded = await done;
  backendLabel = describeBackend(loaded.backend, loaded.adapter);
  if (loaded.fallbackReason) showNotice(`Running on the CPU: ${loaded.fallbackReason}`);
  supportsImages = Boolean(loaded.supportsImages);
  ui.attach.hidden = !supportsImages;
  ui.status.textContent = `Ready · backend: ${backendLabel} · loaded in ${(loaded.loadMs / 1000).toFixed(1)} s`;
  setState('ready');
  ui.prompt.focus();
}

function generationParams() {
  const maxTokens = Math.max(1, Math.min(4096, Number(ui.maxTokens.value) || 256));
  const temperature = Math.max(0, Math.min(2, Number(ui.temperature.value) || 0));
  return { max_new_tokens: maxTokens, sampling: { temperature, top_p: temperature > 0 ? 0.9 : 1, seed: Date.now() % 2 ** 32 } };
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || document.body.dataset.state !== 'ready') return;
  ui.prompt.value = '';
  const images = pendingImages;
  pendingImages = [];
  renderAttachments();
  history.push({ role: 'user', content: text, images });
  addMessage('user', text, images.map((im) => im.url));
  const { li, body } = addMessage('assistant', '');
  li.setAttribute('aria-busy', 'true');
  const node = document.createTextNode('');
  body.append(node);
  let tokens = 0;
  const t0 = performance.now();
  setState('generating');
  ui.status.textContent = `Generating · backend: ${backendLabel}`;
  // Every image of the conversation, in order (the engine's feature cache skips re-encoding).
  const files = history.flatMap((m) => (m.images || []).map((im) => im.file));
  const buffers = await Promise.all(files.map((f) => f.arrayBuffer()));
  const messages = history.map((m) => ({ role: m.role, content: m.content, images: (m.images || []).length }));
  const onToken = (piece) => {
    node.appendData(piece);
    tokens += 1;
    const s = (performance.now() - t0) / 1000;
    ui.status.textContent = `Generating · backend: ${backendLabel} · ${tokens} tokens · ${(tokens / s).toFixed(1)} tokens/s`;
    li.scrollIntoView({ block: 'end' });
  };
  const req = request({ type: 'generate', messages, images: buffers, params: generationParams() }, { onToken }, buffers);
  generatingId = req.id;
  try {
    const { result } = await req.done;
    history.push({ role: 'assistant', content: result.text });
    li.dataset.ids = JSON.stringify(result.ids);
    const t = result.timings;
    const ran = BACKEND_NAMES[result.backend] || result.backend;
    addMeta(li, result, ran);
    if (result.fallback_reason) {
      backendLabel = ran;
      showNotice(`The GPU failed during this answer (${result.fallback_reason}); ` +
        'the conversation continues on the CPU.');
    }
    const img = result.image_tokens ? ` · ${result.image_tokens} image tokens, encoded in ${t.image_encode_ms.toFixed(0)} ms` : '';
    const how = result.finish_reason === 'aborted' ? 'Stopped' : 'Done';
    ui.status.textContent = `${how} · backend: ${backendLabel} · ${result.ids.length} tokens · ` +
      `${t.decode_tokens_per_s.toFixed(1)} tokens/s decode · prefill ${t.prefill_tokens} tokens in ${t.prefill_ms.toFixed(0)} ms${img}`;
    setState('ready');
  } catch (e) {
    history.pop(); // the user turn had no answer; drop it so the history stays well-formed
    // The engine outlives a failed request (a bad image, a too-long prompt): say why and
    // stay usable.
    body.textContent = '(no answer)';
    setState('ready');
    ui.status.textContent = `Error: ${e.message || e}`;
  } finally {
    generatingId = null;
    li.removeAttribute('aria-busy');
  }
  if (document.body.dataset.state === 'ready') ui.prompt.focus();
}

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
ui.stop.addEventListener('click', () => {
  if (generatingId !== null) worker.postMessage({ type: 'stop', id: generatingId });
  ui.stop.disabled = true;
});
ui.reset.addEventListener('click', () => {
  clearConversation();
  ui.status.textContent = `Ready · backend: ${backendLabel}`;
  ui.prompt.focus();
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && generatingId !== null) ui.stop.click();
});

/** Under an answer: the backend that finished it and its decode speed. */
function addMeta(li, result, ran) {
  const meta = document.createElement('span');
  meta.className = 'meta';
  const t = result.timings;
  const moved = result.fallback_reason ? ' (moved from WebGPU)' : '';
  const disp = result.dispatches_per_token ? ` · ${result.dispatches_per_token} dispatches/token` : '';
  meta.textContent = `${ran}${moved} · ${t.decode_tokens_per_s.toFixed(1)} tokens/s${disp}`;
  li.dataset.backend = result.backend;
  li.append(meta);
}

/** Drop the conversation from the page. */
function clearConversation() {
  for (const m of history) for (const im of m.images || []) URL.revokeObjectURL(im.url);
  history.length = 0;
  ui.log.replaceChildren();
}

/** Reload the engine on the backend now selected (the conversation starts afresh). */
function switchBackend() {
  const params = new URLSearchParams(location.search);
  params.set('backend', ui.backend.value);
  window.history.replaceState(null, '', `?${params}`);
  pending.clear(); // the select is disabled while a request runs: only a failed load is dropped
  worker?.terminate();
  clearConversation();
  ui.backend.value = initialBackend();
ui.backend.addEventListener('change', switchBackend);

// Testing and diagnostic hook: destroy the engine's WebGPU device (as a lost GPU would),
// mid-answer or between answers; resolves to whether there was a device.
window.webvlmDebug = {
  loseDevice: () => request({ type: 'lose_device' }).done.then((m) => m.destroyed),
};

loadModel().catch(fail);
}

/** Show the images waiting to be sent, each with a remove button. */
function renderAttachments() {
  ui.attachments.replaceChildren(...pendingImages.map((im, i) => {
    const li = document.createElement('li');
    const img = document.createElement('img');
    img.src = im.url;
    img.alt = `image to send: ${im.file.name || 'pasted image'}`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = '×';
    remove.setAttribute('aria-label', `remove ${im.file.name || 'image'}`);
    remove.addEventListener('click', () => {
      URL.revokeObjectURL(im.url);
      pendingImages.splice(i, 1);
      renderAttachments();
    });
    li.append(img, remove);
    return li;
  }));
}

/** Queue image files for the next message (other file types are reported, not sent). */
function attachFiles(files) {
  if (!supportsImages) return;
  for (const file of files) {
    if (!IMAGE_TYPES.includes(file.type)) {
      ui.status.textContent = `Not attached: ${file.name || 'file'} is not a PNG, JPEG or WebP image`;
      continue;
    }
    pendingImages.push({ file, url: URL.createObjectURL(file) });
  }
  renderAttachments();
}

ui.imageInput.addEventListener('change', () => {
  attachFiles([...ui.imageInput.files]);
  ui.imageInput.value = '';
});
ui.prompt.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files || [])];
  if (supportsImages && files.length) {
    e.preventDefault();
    attachFiles(files);
  }
});
document.addEventListener('dragover', (e) => {
  if (!supportsImages || !e.dataTransfer?.types.includes('Files')) return;
  e.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', (e) => {
  if (e.relatedTarget === null) document.body.classList.remove('dragging');
});
document.addEventListener('drop', (e) => {
  document.body.classList.remove('dragging');
  if (!supportsImages || !e.dataTransfer?.files.length) return;
  e.preventDefault();
  attachFiles([...e.dataTransfer.files]);
});

ui.backend.value = initialBackend();
ui.backend.addEventListener('change', switchBackend);

// Testing and diagnostic hook: destroy the engine's WebGPU device (as a lost GPU would),
// mid-answer or between answers; resolves to whether there was a device.
window.webvlmDebug = {
  loseDevice: () => request({ type: 'lose_device' }).done.then((m) => m.destroyed),
};

loadModel().catch(fail);

