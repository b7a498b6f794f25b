// Safety of the chat page in headless Chromium: model text is shown inert. Hostile Markdown /
// HTML (an <img onerror>, <script>, javascript: and data: links, an inline event handler) is fed
// to the page's Markdown renderer (www/markdown.js, imported in the page) and shown as an
// assistant message in the chat log (the page's answer rendering path, webvlmDebug.showAnswer);
// no element gets an event-handler attribute, no script runs (a global flag stays unset), the
// links have no href and clicking them does nothing, and the text stays readable. The page's
// Content-Security-Policy (header from scripts/serve.mjs and <meta>) allows no inline script,
// and an inline <script> added to the DOM is refused by it. Safe Markdown still renders.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openChatPage, waitSettled } from './page-harness.mjs';

const TIMEOUT = 5 * 60_000;
// Each payload, if it ran, would set window.__pwned.
const HOSTILE = [
  'Here is a picture: <img src=x onerror="window.__pwned = \'img\'">',
  '<script>window.__pwned = "script"</script>',
  '[click me](javascript:window.__pwned=\'link\')',
  '[mixed case](JaVaScRiPt:window.__pwned=\'case\')',
  '[spaced]( javascript:window.__pwned=\'space\' )',
  '[data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0xPC9zY3JpcHQ+) and [vb](vbscript:msgbox)',
  '<a href="javascript:window.__pwned=\'a\'">raw anchor</a>',
  '**bold <b onmouseover="window.__pwned=\'b\'">x</b>** and `<svg onload=window.__pwned=1>`',
  '```html\n<img src=x onerror="window.__pwned=\'code\'">\n```',
].join('\n\n');

let server;
let baseUrl;
let browser;
let page;
let cspHeader;
let pageErrors;

before(async () => {
  ({ server, baseUrl, browser, page, errors: pageErrors } = await openChatPage({ watch: { console: false } }));
  page.on('dialog', (d) => {
    pageErrors.push(`dialog: ${d.message()}`);
    d.dismiss();
  });
  const resp = await page.goto(`${baseUrl}?model=models/llava15-llama-fixture/`);
  cspHeader = resp.headers()['content-security-policy'];
  await waitSettled(page, { timeout: TIMEOUT, polling: 200 });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

/** What a container holding rendered hostile text looks like (evaluated in the page). */
function inspect(selector) {
  return page.evaluate(async (sel) => {
    await new Promise((r) => setTimeout(r, 300)); // an <img onerror> would fire by now
    const root = document.querySelector(sel);
    const all = [...root.querySelectorAll('*')];
    return {
      pwned: window.__pwned ?? null,
      handlerAttrs: all.flatMap((el) => [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name)),
      tags: [...new Set(all.map((el) => el.tagName.toLowerCase()))].sort(),
      hrefs: [...root.querySelectorAll('[href], [src]')].map((el) => el.getAttribute('href') || el.getAttribute('src')),
      unsafeLinks: root.querySelectorAll('.unsafe-link').length,
      text: root.textContent,
    };
  }, selector);
}

function assertInert(r) {
  assert.equal(r.pwned, null, 'no hostile script ran');
  assert.deepEqual(r.handlerAttrs, [], 'no event-handler attributes');
  for (const tag of ['img', 'script', 'svg', 'iframe', 'b', 'a']) assert.ok(!r.tags.includes(tag), `no <${tag}> element`);
  assert.deepEqual(r.hrefs, [], 'no href or src at all');
  assert.equal(r.unsafeLinks, 5, 'the five non-http links are shown as inert text');
  // The hostile markup is still visible, as text.
  assert.match(r.text, /<img src=x onerror="window.__pwned = 'img'">/);
  assert.match(r.text, /<script>window.__pwned = "script"<\/script>/);
  assert.match(r.text, /click me/);
}

test('the Markdown renderer, imported in the page, builds inert nodes from hostile text', async () => {
  await page.evaluate(async (text) => {
    const { renderMarkdown } = await import('./markdown.js');
    const box = document.createElement('div');
    box.id = 'direct';
    box.append(renderMarkdown(text));
    document.body.append(box);
  }, HOSTILE);
  const r = await inspect('#direct');
  assertInert(r);
  assert.ok(r.tags.includes('pre') && r.tags.includes('code') && r.tags.includes('strong'), r.tags.join());
});

test('a hostile assistant message in the chat log is shown inert; its links do nothing', async () => {
  await page.evaluate((text) => window.webvlmDebug.showAnswer(text), HOSTILE);
  const r = await inspect('#log .msg.assistant:last-child .body');
  assertInert(r);
  const url = page.url();
  for (const link of await page.locator('#log .unsafe-link').all()) await link.click();
  await page.waitForTimeout(300);
  assert.equal(page.url(), url, 'clicking an inert link navigates nowhere');
  assert.equal(await page.evaluate(() => window.__pwned ?? null), null);
  assert.equal(await page.evaluate(() => document.querySelector('#log .msg.assistant:last-child').dataset.text),
    HOSTILE, 'the raw answer is kept as data, not markup');
});

test('safe Markdown renders: emphasis, code, lists, http(s) links with rel=noopener', async () => {
  const md = 'A *b* **c** `d`\n\n- one\n- two\n\n1. x\n2. y\n\nSee [docs](https://example.com/a?b=1) or http://example.org/x.';
  await page.evaluate((text) => window.webvlmDebug.showAnswer(text), md);
  const r = await page.evaluate(() => {
    const body = document.querySelector('#log .msg.assistant:last-child .body');
    return {
      html: body.innerHTML,
      links: [...body.querySelectorAll('a')].map((a) => ({ href: a.href, rel: a.rel, target: a.target, text: a.textContent })),
    };
  });
  assert.match(r.html, /<p>A <em>b<\/em> <strong>c<\/strong> <code>d<\/code><\/p>/);
  assert.match(r.html, /<ul><li>one<\/li><li>two<\/li><\/ul>/);
  assert.match(r.html, /<ol><li>x<\/li><li>y<\/li><\/ol>/);
  assert.deepEqual(r.links, [
    { href: 'https://example.com/a?b=1', rel: 'noopener noreferrer', target: '_blank', text: 'docs' },
    { href: 'http://example.org/x', rel: 'noopener noreferrer', target: '_blank', text: 'http://example.org/x' },
  ]);
});

/** The script-src directive of a CSP string (or default-src when it has none). */
function scriptSrc(csp) {
  const dirs = Object.fromEntries(csp.split(';').map((d) => d.trim().split(/\s+/)).filter((d) => d[0])
    .map(([name, ...values]) => [name, values]));
  return dirs['script-src'] || dirs['default-src'];
}

test('the Content-Security-Policy allows no inline script, and enforces it', async () => {
  const meta = await page.evaluate(() =>
    document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.getAttribute('content'));
  for (const [where, csp] of [['header', cspHeader], ['meta', meta]]) {
    assert.ok(csp, `a CSP ${where}`);
    const src = scriptSrc(csp);
    assert.ok(src, `${where}: script-src or default-src`);
    assert.ok(!src.includes("'unsafe-inline'"), `${where}: no 'unsafe-inline' in ${src.join(' ')}`);
    assert.ok(!src.includes("'unsafe-eval'"), `${where}: no 'unsafe-eval'`);
    assert.ok(!src.includes('*') && !src.includes('data:') && !src.includes('blob:'), `${where}: ${src.join(' ')}`);
  }
  // No inline script or handler in the page itself.
  const inline = await page.evaluate(() => ({
    scripts: [...document.querySelectorAll('script')].filter((s) => !s.src).length,
    handlers: [...document.querySelectorAll('*')].flatMap((el) => [...el.attributes]).filter((a) => /^on/i.test(a.name)).length,
  }));
  assert.deepEqual(inline, { scripts: 0, handlers: 0 });
  // An inline script added to the DOM is refused (and reported as a violation).
  const r = await page.evaluate(async () => {
    const violation = new Promise((resolve) => {
      document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true });
    });
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true';
    document.body.append(s);
    return { violated: await violation, ran: window.__inlineRan ?? false };
  });
  assert.equal(r.ran, false);
  assert.match(r.violated, /^script-src/);
});

test('no page errors or dialogs', () => {
  assert.deepEqual(pageErrors, []);
});
