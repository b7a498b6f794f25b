// A small, safe Markdown renderer for model answers: it builds DOM nodes with createElement and
// text nodes and never parses model text as HTML, so `<img onerror=…>` in an answer stays text.
// Supported (a subset of CommonMark, https://spec.commonmark.org/): paragraphs (a single newline
// is a line break), ATX headings, fenced code blocks (an unclosed fence runs to the end, as while
// an answer streams), bullet and numbered lists (one level), block quotes, horizontal rules,
// code spans, **strong**, *emphasis* / _emphasis_, [links](url) and bare http(s) URLs. A link is
// made only for an absolute http: or https: URL (parsed with URL, checked by protocol) and opens
// with rel="noopener noreferrer"; any other target (javascript:, data:, relative) is shown as
// plain text, with no href.

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;

/** `href` if it is an absolute http(s) URL, else null. */
export function safeHref(href) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
}

/** Render `text` into a DocumentFragment of `doc` (default: the current document). */
export function renderMarkdown(text, doc = globalThis.document) {
  const frag = doc.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) i = renderBlock(lines, i, frag, doc);
  return frag;
}

/** Render the block starting at line `i` into `parent`; returns the index of the next line. */
function renderBlock(lines, i, parent, doc) {
  const line = lines[i];
  if (!line.trim()) return i + 1;
  const fence = FENCE.exec(line);
  if (fence) return renderFence(lines, i, fence, parent, doc);
  const h = HEADING.exec(line);
  if (h) {
    // Headings sit inside a chat bubble: h1 -> h3 … h4+ -> h6.
    const el = doc.createElement(`h${Math.min(6, h[1].length + 2)}`);
    appendInline(el, h[2], doc);
    parent.append(el);
    return i + 1;
  }
  if (RULE.test(line)) {
    parent.append(doc.createElement('hr'));
    return i + 1;
  }
  if (BULLET.test(line) || ORDERED.test(line)) return renderList(lines, i, parent, doc);
  if (QUOTE.test(line)) {
    const quoted = [];
    while (i < lines.length && QUOTE.test(lines[i])) quoted.push(QUOTE.exec(lines[i++])[1]);
    const el = doc.createElement('blockquote');
    let j = 0;
    while (j < quoted.length) j = renderBlock(quoted, j, el, doc);
    parent.append(el);
    return i;
  }
  return renderParagraph(lines, i, parent, doc);
}

function startsBlock(line) {
  return !line.trim() || FENCE.test(line) || HEADING.test(line) || RULE.test(line) || BULLET.test(line)
    || ORDERED.test(line) || QUOTE.test(line);
}

function renderParagraph(lines, i, parent, doc) {
  const p = doc.createElement('p');
  let first = true;
  do {
    if (!first) p.append(doc.createElement('br'));
    appendInline(p, lines[i].trim(), doc);
    first = false;
    i += 1;
  } while (i < lines.length && !startsBlock(lines[i]));
  parent.append(p);
  return i;
}

function renderFence(lines, i, fence, parent, doc) {
  const marker = fence[1];
  const body = [];
  i += 1;
  while (i < lines.length && !(lines[i].trim().startsWith(marker) && lines[i].trim().replace(/[`~]/g, '') === '')) {
    body.push(lines[i]);
    i += 1;
  }
  const pre = doc.createElement('pre');
  const code = doc.createElement('code');
  if (fence[2]) code.dataset.lang = fence[2];
  code.textContent = body.join('\n');
  pre.append(code);
  parent.append(pre);
  return i + 1; // past the closing fence (or the end)
}

function renderList(lines, i, parent, doc) {
  const ordered = !BULLET.test(lines[i]);
  const re = ordered ? ORDERED : BULLET;
  const list = doc.createElement(ordered ? 'ol' : 'ul');
  if (ordered) {
    const start = Number(ORDERED.exec(lines[i])[1]);
    if (start !== 1) list.start = start;
  }
  let item = null;
  while (i < lines.length) {
    const m = re.exec(lines[i]);
    if (m) {
      item = doc.createElement('li');
      appendInline(item, ordered ? m[2] : m[1], doc);
      list.append(item);
    } else if (lines[i].trim() && /^\s+/.test(lines[i]) && item) {
      item.append(doc.createElement('br')); // an indented continuation line
      appendInline(item, lines[i].trim(), doc);
    } else {
      break;
    }
    i += 1;
  }
  parent.append(list);
  return i;
}

// Inline spans, tried in order at each position: code span, link, bare URL, strong, emphasis.
const INLINE = [
  { re: /^(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/, make: (m, doc) => el(doc, 'code', m[2].trim() || m[2]) },
  { re: /^\[([^\]\n]+)\]\(\s*<?([^\s)>]*)>?(?:\s+"[^"]*")?\s*\)/, make: (m, doc) => link(doc, m[1], m[2]) },
  { re: /^https?:\/\/[^\s<>()]*[^\s<>().,;:!?'"*_]/, make: (m, doc) => link(doc, m[0], m[0], false) },
  { re: /^(\*\*|__)(?=\S)([\s\S]*?\S)\1/, make: (m, doc) => nest(doc, 'strong', m[2]) },
  { re: /^([*_])(?=[^\s*_])([\s\S]*?[^\s*_])\1(?![*_\w])/, make: (m, doc) => nest(doc, 'em', m[2]) },
];

/** Append `text`'s inline Markdown to `parent` (text nodes and a few safe elements). */
export function appendInline(parent, text, doc = globalThis.document) {
  let plain = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length && /[\\`*_[\]()#+\-.!>~]/.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    const span = '`[h*_'.includes(c) && matchInline(text.slice(i), i === 0 || /[\s(]/.test(text[i - 1]), doc);
    if (span) {
      if (plain) parent.append(doc.createTextNode(plain));
      plain = '';
      parent.append(span.node);
      i += span.length;
    } else {
      plain += c;
      i += 1;
    }
  }
  if (plain) parent.append(doc.createTextNode(plain));
}

function matchInline(rest, atWordStart, doc) {
  for (const { re, make } of INLINE) {
    const m = re.exec(rest);
    // Bare URLs and emphasis only start at a word boundary (snake_case stays text).
    if (m && (atWordStart || re === INLINE[0].re || re === INLINE[1].re)) return { node: make(m, doc), length: m[0].length };
  }
  return null;
}

function el(doc, tag, text) {
  const e = doc.createElement(tag);
  e.textContent = text;
  return e;
}

function nest(doc, tag, inner) {
  const e = doc.createElement(tag);
  appendInline(e, inner, doc);
  return e;
}

/** A link to an http(s) URL, or (any other target) the label as plain text with the target. */
function link(doc, label, target, inlineLabel = true) {
  const href = safeHref(target);
  if (!href) {
    const span = doc.createElement('span');
    span.className = 'unsafe-link';
    span.title = 'link not followed (only http and https links are)';
    if (inlineLabel) appendInline(span, label, doc);
    else span.textContent = label;
    return span;
  }
  const a = doc.createElement('a');
  a.href = href;
  a.rel = 'noopener noreferrer';
  a.target = '_blank';
  if (inlineLabel) appendInline(a, label, doc);
  else a.textContent = label;
  return a;
}
