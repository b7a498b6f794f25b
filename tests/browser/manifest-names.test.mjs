// The JS loader refuses a manifest whose files lie outside the manifest's folder before it fetches
// anything but the manifest (the Rust reader refuses such names too, but only after the fetch).
// Runs in Node: fetchModel with a fetch that records every URL asked for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fetchModel } from '../../js/loader.js';

const MANIFEST = 'https://models.example/m/smol/manifest.json';
const SHA = 'a'.repeat(64);

function manifestWith({ tokenizer = 'tokenizer.json', shard = 'model-00000.safetensors' } = {}) {
  return { format: 'webvlm', version: 1, tokenizer: { file: tokenizer },
    files: [{ file: tokenizer, size: 2, sha256: SHA }], shards: [{ file: shard, size: 4, sha256: SHA }] };
}

async function load(manifest) {
  const asked = [];
  const fetch = async (url) => {
    asked.push(String(url));
    if (String(url) === MANIFEST) return new Response(JSON.stringify(manifest));
    return new Response('no', { status: 404, statusText: 'Not Found' });
  };
  const error = await fetchModel(MANIFEST, { fetch, useCache: false, retries: 0 }).then(() => null, (e) => e);
  return { asked, error };
}

const HOSTILE = ['../secret.json', '../../etc/passwd', 'sub/tokenizer.json', '%2e%2e/x', '%2E%2E', '..', '.', '',
  'https://evil.example/t.json', '//evil.example/t.json', 'javascript:alert(1)', 'C:tokenizer.json', 'a\\b',
  'x?y=1', 'x#frag', 'tok\u0000.json', 'tok\n.json'];

test('tokenizer and shard names outside the folder are refused before any file is fetched', async () => {
  for (const bad of HOSTILE) {
    for (const m of [manifestWith({ tokenizer: bad }), manifestWith({ shard: bad })]) {
      const { asked, error } = await load(m);
      assert.ok(error, `${JSON.stringify(bad)} was accepted`);
      assert.equal(error.code, 'manifest', `${JSON.stringify(bad)}: ${error.message}`);
      assert.match(error.message, /not a plain file name in the manifest's folder|not a webvlm manifest|lacks file/);
      assert.deepEqual(asked, [MANIFEST], `${JSON.stringify(bad)}: fetched ${asked.join(', ')}`);
    }
  }
});

test('plain names in the folder are fetched from it', async () => {
  const { asked, error } = await load(manifestWith({ tokenizer: 'tokenizer.json' }));
  assert.equal(error.code, 'http', error.message); // the fake server has no tokenizer
  assert.deepEqual(asked.slice(0, 2), [MANIFEST, 'https://models.example/m/smol/tokenizer.json']);
});
