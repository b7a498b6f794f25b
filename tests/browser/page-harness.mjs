// Shared by the browser tests: the static server as a child process, headless Debian Chromium
// with the flags this machine needs (no background networking, which the closed network
// refuses), and the chat-page tests' prologue (server, browser, a watched page) and wait for
// the page to settle. Not a test file itself (the runner picks *.test.mjs).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Spawn `node scripts/serve.mjs` on a free port with `env` added; resolves once it prints its URL. */
export function startServe(env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'scripts/serve.mjs')], {
      env: { ...process.env, PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /serving (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1] });
    });
    child.on('exit', (code) => reject(new Error(`serve.mjs exited with ${code} before listening`)));
    child.on('error', reject);
  });
}

/** Open the page's settings panel (a <details>), so its inputs can be filled. */
export const openSettings = (page) => page.locator('#settings').evaluate((d) => { d.open = true; });

/** Headless Chromium ($CHROMIUM or /usr/bin/chromium); `webgpu` adds `--enable-unsafe-webgpu`
 * (SwiftShader), otherwise the GPU is off and `requestAdapter()` returns null (the CPU path). */
export function launchChromium({ webgpu = false } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', webgpu ? '--enable-unsafe-webgpu' : '--disable-gpu',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-quic'],
  });
}

/** Default limit for a model load or an answer: CI runs on two slow shared cores. */
export const PAGE_TIMEOUT = 8 * 60_000;

/**
 * Record what goes wrong on `page` as strings in `errors`: uncaught exceptions, console errors
 * (unless `console: false`), HTTP responses >= 400 (unless `http: false`) and, with `origin`,
 * requests to anything but `origin` or its own blob: URLs.
 */
export function watchPage(page, errors, { origin, console = true, http = true } = {}) {
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  if (console) page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  if (http) page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
  if (origin) {
    const own = new URL(origin).origin;
    page.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(own + '/') && !url.startsWith(`blob:${own}/`)) errors.push(`unexpected request: ${url}`);
    });
  }
}

/**
 * The chat-page tests' prologue: scripts/serve.mjs with `env`, Chromium (`webgpu`) and a page
 * of `viewport` watched by watchPage (`watch`: its options; origin: the server).
 * Resolves to { server (the child process), baseUrl, browser, page, errors }.
 */
export async function openChatPage({ env = {}, webgpu = false, viewport = { width: 1000, height: 900 },
  watch = {} } = {}) {
  const { child: server, url: baseUrl } = await startServe(env);
  const browser = await launchChromium({ webgpu });
  const page = await browser.newPage({ viewport });
  const errors = [];
  watchPage(page, errors, { origin: baseUrl, ...watch });
  return { server, baseUrl, browser, page, errors };
}

/** Wait until the chat page has loaded its model or failed (body data-state 'ready' | 'error'). */
export function waitSettled(page, { timeout = PAGE_TIMEOUT, polling = 100 } = {}) {
  const settled = () => ['ready', 'error'].includes(document.body.dataset.state);
  return page.waitForFunction(settled, null, { timeout, polling });
}
