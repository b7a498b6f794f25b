// Shared by the page tests (chat, image, webgpu): the static server as a child process and
// headless Debian Chromium with the flags this machine needs (no background networking, which
// the closed network refuses). Not a test file itself (the runner picks *.test.mjs).
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
