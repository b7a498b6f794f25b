// OpenAI chat messages -> the engine's messages `{ role, content: string, images: ArrayBuffer[] }`.
// Image parts become encoded image bytes here, in the calling thread (a blob: URL belongs to
// the page that made it; under a CSP that forbids fetching it, it is read through an <img>
// and re-encoded as PNG); they are decoded inside wasm (JPEG, PNG, WebP). Every image gets a
// fresh ArrayBuffer, so transferring it to the worker never detaches the caller's buffers.
// Reference: OpenAI Chat Completions API (message content parts `text` and `image_url`).

const ROLES = new Set(['system', 'user', 'assistant']);

/** Bytes of a `data:` URL (base64 or percent-encoded). */
function dataUrlBytes(url) {
  const comma = url.indexOf(',');
  if (comma < 0) throw new TypeError('malformed data: URL');
  const meta = url.slice(5, comma);
  const body = url.slice(comma + 1);
  if (/;base64$/i.test(meta)) {
    const bin = atob(decodeURIComponent(body));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  return new TextEncoder().encode(decodeURIComponent(body)).buffer;
}

/** Encode anything `createImageBitmap` takes (ImageBitmap, ImageData, canvas, <img>) as PNG. */
async function pngOf(source) {
  if (typeof OffscreenCanvas === 'undefined') throw new TypeError('encoding an ImageBitmap needs OffscreenCanvas');
  const bmp = typeof ImageBitmap !== 'undefined' && source instanceof ImageBitmap ? source : await createImageBitmap(source);
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  canvas.getContext('2d').drawImage(bmp, 0, 0);
  return (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer();
}

/**
 * A blob: URL read through an <img> (img-src) and re-encoded as PNG: a page whose CSP has
 * `connect-src 'self'` may not fetch() blob: URLs, but may show them.
 */
async function blobUrlViaImage(url) {
  const img = new Image();
  img.src = url;
  await img.decode();
  return pngOf(img);
}

/** A fresh ArrayBuffer of encoded image bytes from a URL string, Blob, buffer or bitmap. */
export async function imageBytes(src) {
  if (src instanceof URL) src = src.href;
  if (typeof src === 'string') {
    if (src.startsWith('data:')) return dataUrlBytes(src);
    let resp;
    try {
      resp = await fetch(src);
    } catch (e) {
      if (src.startsWith('blob:') && typeof Image !== 'undefined') return blobUrlViaImage(src);
      throw new Error(`image ${src.slice(0, 80)}: ${e.message}`, { cause: e });
    }
    if (!resp.ok) throw new Error(`image ${src.slice(0, 80)}: HTTP ${resp.status}`);
    return resp.arrayBuffer();
  }
  if (typeof Blob !== 'undefined' && src instanceof Blob) return src.arrayBuffer();
  if (src instanceof ArrayBuffer) return src.slice(0);
  if (ArrayBuffer.isView(src)) return new Uint8Array(src.buffer, src.byteOffset, src.byteLength).slice().buffer;
  if (src && typeof src === 'object' && typeof createImageBitmap === 'function') return pngOf(src);
  throw new TypeError('an image must be a URL (data:, blob:, http:), a Blob, an ArrayBuffer, a typed array or an ImageBitmap');
}

/** The image source of a content part, or undefined when the part is not an image. */
function imageSource(part) {
  if (part.type === 'image_url') {
    const u = part.image_url;
    return typeof u === 'string' ? u : u?.url;
  }
  if (part.type === 'image') return part.image;
  return undefined;
}

/** One OpenAI message -> `{ role, content, images }`; images before text, as LLaVA orders them. */
async function normalizeMessage(msg, i) {
  if (!msg || typeof msg !== 'object') throw new TypeError(`messages[${i}] is not an object`);
  const role = msg.role === 'developer' ? 'system' : msg.role;
  if (!ROLES.has(role)) throw new TypeError(`messages[${i}].role must be system, user or assistant, got ${msg.role}`);
  const { content } = msg;
  if (content == null || typeof content === 'string') return { role, content: content ?? '', images: [] };
  if (!Array.isArray(content)) throw new TypeError(`messages[${i}].content must be a string or an array of parts`);
  const texts = [];
  const images = [];
  for (const [j, part] of content.entries()) {
    if (part?.type === 'text') texts.push(String(part.text ?? ''));
    else if (part?.type === 'image_url' || part?.type === 'image') {
      const src = imageSource(part);
      if (src == null) throw new TypeError(`messages[${i}].content[${j}] has no image`);
      images.push(imageBytes(src));
    } else throw new TypeError(`messages[${i}].content[${j}].type must be text, image_url or image`);
  }
  return { role, content: texts.join('\n'), images: await Promise.all(images) };
}

/** Every message normalised; rejects with a TypeError naming the bad message or part. */
export async function normalizeMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new TypeError('messages must be a non-empty array');
  return Promise.all(messages.map(normalizeMessage));
}

/** OpenAI request fields -> the engine's generation parameters. */
export function generationParams(body) {
  const temperature = body.temperature ?? 0;
  let seed = body.seed;
  if (seed == null) seed = temperature > 0 ? crypto.getRandomValues(new Uint32Array(1))[0] : 0;
  const stop = body.stop == null ? [] : Array.isArray(body.stop) ? body.stop.map(String) : [String(body.stop)];
  return {
    max_new_tokens: body.max_completion_tokens ?? body.max_tokens ?? 256,
    sampling: { temperature, top_p: body.top_p ?? 1, seed },
    stop,
  };
}

/** The engine's finish reason -> OpenAI's (`abort` is webvlm's own, for a stopped stream). */
export function finishReason(reason) {
  switch (reason) {
    case 'eos':
    case 'stop_string':
      return 'stop';
    case 'max_new_tokens':
    case 'context_full':
      return 'length';
    case 'aborted':
      return 'abort';
    default:
      return reason;
  }
}

/**
 * `messages` without its oldest non-system turn (that message, and the assistant answers
 * right after it), or null when only the last message and system messages are left.
 */
export function dropOldestTurn(messages) {
  const i = messages.findIndex((m) => m.role !== 'system');
  if (i < 0 || i >= messages.length - 1) return null;
  let j = i + 1;
  while (j < messages.length - 1 && messages[j].role !== 'user' && messages[j].role !== 'system') j++;
  return [...messages.slice(0, i), ...messages.slice(j)];
}
