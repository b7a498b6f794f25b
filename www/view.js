// DOM building for the chat page. Model text reaches the page only through renderMarkdown
// (markdown.js: elements and text nodes, never HTML parsing); user text only as text nodes.

import { renderMarkdown } from './markdown.js';

export const BACKEND_NAMES = { cpu: 'CPU (wasm SIMD)', webgpu: 'WebGPU' };

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function formatDuration(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Download progress text from the package's progress: "done / total (pct%) · time left · files". */
export function progressText({ loaded, total, etaSeconds, files = [] }) {
  const pct = total ? Math.floor((100 * loaded) / total) : 0;
  const left = loaded < total && etaSeconds > 0 ? ` · about ${formatDuration(etaSeconds)} left` : '';
  const busy = files.filter((f) => f.state === 'downloading' || f.state === 'verifying').map((f) => f.file);
  const names = busy.length ? ` · ${busy.join(', ')}` : '';
  return `${formatBytes(loaded)} / ${formatBytes(total)} (${pct}%)${left}${names}`;
}

/** Append a message bubble to `log`; returns { li, body } (body receives the text). */
export function addMessage(log, role, text, imageUrls = []) {
  const li = document.createElement('li');
  li.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'role';
  who.textContent = role === 'user' ? 'You' : 'Assistant';
  const body = document.createElement('div');
  body.className = 'body';
  if (role === 'user') body.textContent = text;
  else setAnswer(li, body, text);
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
  log.append(li);
  li.scrollIntoView({ block: 'end' });
  return { li, body };
}

/** Show `text` (Markdown) as the answer in `body`; the raw text stays in li.dataset.text. */
export function setAnswer(li, body, text) {
  li.dataset.text = text;
  body.replaceChildren(renderMarkdown(text));
}

/** Under an answer: backend, decode speed, time to first token, prefill; also as data-*. */
export function addMeta(li, result, ttftMs) {
  li.querySelector('.meta')?.remove();
  const meta = document.createElement('span');
  meta.className = 'meta';
  const t = result.timings;
  const ran = BACKEND_NAMES[result.backend] || result.backend;
  const moved = result.fallback_reason ? ' (moved from WebGPU)' : '';
  const ttft = ttftMs === null ? '' : ` · first token ${Math.round(ttftMs)} ms`;
  const disp = result.dispatches_per_token ? ` · ${result.dispatches_per_token} dispatches/token` : '';
  meta.textContent = `${ran}${moved} · ${t.decode_tokens_per_s.toFixed(1)} tokens/s${ttft}` +
    ` · prefill ${t.prefill_tokens} tokens${disp}`;
  Object.assign(li.dataset, {
    backend: result.backend,
    ids: JSON.stringify(result.ids),
    finish: result.finish_reason,
    prefillTokens: String(t.prefill_tokens),
    promptTokens: String(result.prompt_tokens ?? ''),
    prefillMs: String(Math.round(t.prefill_ms)),
    tokensPerS: t.decode_tokens_per_s.toFixed(2),
  });
  if (ttftMs !== null) li.dataset.ttftMs = String(Math.round(ttftMs));
  li.append(meta);
}

/** The images waiting to be sent, each with a remove button calling onRemove(index). */
export function renderAttachments(list, images, onRemove) {
  list.replaceChildren(...images.map((im, i) => {
    const li = document.createElement('li');
    const img = document.createElement('img');
    img.src = im.url;
    img.alt = `image to send: ${im.file.name || 'pasted image'}`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.textContent = '×';
    remove.setAttribute('aria-label', `remove ${im.file.name || 'pasted image'}`);
    remove.addEventListener('click', () => onRemove(i));
    li.append(img, remove);
    return li;
  }));
}

/** The cached-models panel: one row per model with its size and a delete button. */
export function renderCachedModels(ui, models, nameOf, onDelete) {
  const total = models.reduce((s, m) => s + m.bytes, 0);
  ui.cacheTotal.textContent = models.length ? `(${formatBytes(total)})` : '';
  ui.cacheEmpty.hidden = models.length > 0;
  ui.cachedModels.replaceChildren(...models.map((m) => {
    const li = document.createElement('li');
    li.dataset.url = m.url;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = nameOf(m.url);
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = `${formatBytes(m.bytes)} · ${m.files} files${m.complete ? '' : ' · incomplete'}`;
    const del = document.createElement('button');
    del.type = 'button';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete ${nameOf(m.url)} from this browser`);
    del.addEventListener('click', () => onDelete(m.url));
    li.append(name, size, del);
    return li;
  }));
}
