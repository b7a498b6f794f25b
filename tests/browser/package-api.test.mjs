// The package's pure JavaScript under Node (no model, no browser; seconds): OpenAI messages
// to engine messages (text and image parts, data: URLs, Blobs, buffers copied so a transfer
// to the worker cannot detach the caller's), request fields to generation parameters,
// finish-reason mapping, the drop-oldest context policy, and the chunk stream's ordering,
// ending and abort on `break`. Imports js/ directly (these modules do not touch the wasm).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dropOldestTurn, finishReason, generationParams, imageBytes, normalizeMessages } from '../../js/messages.js';
import { ChunkStream } from '../../js/api.js';
import { manifestUrlOf } from '../../js/loader.js';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];

test('messages: strings, text parts and image parts (images kept per message, in order)', async () => {
  const b64 = Buffer.from(PNG_MAGIC).toString('base64');
  const buf = new Uint8Array([1, 2, 3]).buffer;
  const out = await normalizeMessages([
    { role: 'developer', content: 'Be brief.' },
    { role: 'user', content: [
      { type: 'text', text: 'Compare' },
      { type: 'image_url', image_url: { url: `data:image/png;base64,${b64}` } },
      { type: 'image', image: new Blob([new Uint8Array([9, 8])]) },
      { type: 'text', text: 'these.' },
      { type: 'image', image: buf },
    ] },
    { role: 'assistant', content: null },
  ]);
  assert.deepEqual(out.map((m) => [m.role, m.content, m.images.length]),
    [['system', 'Be brief.', 0], ['user', 'Compare\nthese.', 3], ['assistant', '', 0]]);
  assert.deepEqual([...new Uint8Array(out[1].images[0])], PNG_MAGIC);
  assert.deepEqual([...new Uint8Array(out[1].images[1])], [9, 8]);
  assert.deepEqual([...new Uint8Array(out[1].images[2])], [1, 2, 3]);
  assert.notEqual(out[1].images[2], buf, 'the caller\'s buffer is copied, never transferred');
  structuredClone(out[1].images[2], { transfer: [out[1].images[2]] });
  assert.equal(buf.byteLength, 3);
});

test('messages: clear errors for bad input', async () => {
  await assert.rejects(normalizeMessages([]), /non-empty array/);
  await assert.rejects(normalizeMessages([{ role: 'tool', content: 'x' }]), /messages\[0\]\.role/);
  await assert.rejects(normalizeMessages([{ role: 'user', content: [{ type: 'audio' }] }]),
    /messages\[0\]\.content\[0\]\.type/);
  await assert.rejects(imageBytes(42), /an image must be/);
  assert.deepEqual([...new Uint8Array(await imageBytes('data:text/plain,hi%21'))], [104, 105, 33]);
});

test('request fields map to generation parameters', () => {
  assert.deepEqual(generationParams({ max_tokens: 7, stop: '\n' }),
    { max_new_tokens: 7, sampling: { temperature: 0, top_p: 1, seed: 0 }, stop: ['\n'] });
  const p = generationParams({ temperature: 0.7, top_p: 0.9, seed: 5, stop: ['a', 'b'], max_completion_tokens: 3 });
  assert.deepEqual(p, { max_new_tokens: 3, sampling: { temperature: 0.7, top_p: 0.9, seed: 5 }, stop: ['a', 'b'] });
  assert.equal(generationParams({}).max_new_tokens, 256);
  const seeds = new Set(Array.from({ length: 4 }, () => generationParams({ temperature: 1 }).sampling.seed));
  assert.ok(seeds.size > 1, 'sampling without a seed draws a fresh one');
  assert.deepEqual(['eos', 'stop_string', 'max_new_tokens', 'context_full', 'aborted'].map(finishReason),
    ['stop', 'stop', 'length', 'length', 'abort']);
});

test('drop_oldest removes whole turns and keeps system messages and the last message', () => {
  const s = { role: 'system', content: 's' };
  const u = (c) => ({ role: 'user', content: c });
  const a = (c) => ({ role: 'assistant', content: c });
  assert.deepEqual(dropOldestTurn([s, u(1), a(1), u(2), a(2), u(3)]), [s, u(2), a(2), u(3)]);
  assert.deepEqual(dropOldestTurn([s, u(2), a(2), u(3)]), [s, u(3)]);
  assert.equal(dropOldestTurn([s, u(3)]), null);
  assert.equal(dropOldestTurn([u(3)]), null);
  assert.deepEqual(dropOldestTurn([a(0), u(1), a(1), u(2)]), [u(1), a(1), u(2)]);
});

test('chunk stream: order, end, error, abort on break', async () => {
  const s = new ChunkStream(new AbortController());
  s.push(1);
  const seen = [];
  const consume = (async () => {
    for await (const c of s) seen.push(c);
  })();
  s.push(2);
  await new Promise((r) => setTimeout(r, 5));
  s.push(3);
  s.end();
  await consume;
  assert.deepEqual(seen, [1, 2, 3]);

  const failing = new ChunkStream(new AbortController());
  failing.push('a');
  failing.end(new Error('boom'));
  const got = [];
  await assert.rejects((async () => {
    for await (const c of failing) got.push(c);
  })(), /boom/);
  assert.deepEqual(got, ['a']);

  const ctl = new AbortController();
  const broken = new ChunkStream(ctl);
  broken.push('x');
  for await (const c of broken) {
    assert.equal(c, 'x');
    break;
  }
  assert.equal(ctl.signal.aborted, true, 'leaving the loop aborts the generation');
});

test('model URLs: a folder gets manifest.json, relative URLs resolve against the page', () => {
  assert.equal(manifestUrlOf('/models/m/', 'http://h/app/'), 'http://h/models/m/manifest.json');
  assert.equal(manifestUrlOf('m/manifest.json', 'http://h/app/'), 'http://h/app/m/manifest.json');
});
