// The wasm build (www/pkg, the module the page loads from its package copy) under Node: streamed load through
// WasmEngine.load with progress, a greedy chat turn, streaming, stop from on_token, and
// clear errors. Needs www/pkg (scripts/build.sh) and the converted model (scripts/setup.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runWasmChat, loadWasm } from '../../scripts/bench-wasm.mjs';
import { startServer } from '../../scripts/serve.mjs';

const TIMEOUT = 8 * 60_000; // two slow CI cores

test('wasm engine answers Paris and reports decode speed', { timeout: TIMEOUT }, async () => {
  const r = await runWasmChat({ prompt: 'What is the capital of France?', maxTokens: 48 });
  assert.equal(r.backend, 'cpu');
  assert.match(r.text, /Paris/);
  assert.equal(r.streamed_text, r.text, 'streamed pieces must add up to the final text');
  assert.ok(r.streamed_pieces >= 2);
  assert.ok(r.progress_events >= 2);
  assert.equal(r.last_progress.loaded, r.last_progress.total);
  assert.ok(r.last_progress.total > 1_000_000);
  assert.ok(['eos', 'max_new_tokens'].includes(r.finish_reason), r.finish_reason);
  // One on_token call per generated token; the first comes from prefill, the rest are decode.
  assert.equal(r.generated_ids.length, r.streamed_pieces);
  assert.equal(r.timings.decode_tokens, r.streamed_pieces - 1);
  assert.ok(r.timings.decode_tokens_per_s > 0);
  console.log(`wasm/node decode: ${r.timings.decode_tokens_per_s.toFixed(1)} tokens/s, load ${Math.round(r.load_ms)} ms`);
});

test('on_token returning false stops generation', { timeout: TIMEOUT }, async () => {
  let n = 0;
  const r = await runWasmChat({
    prompt: 'Write a long story about a dragon.',
    maxTokens: 500,
    onToken: () => ++n < 5,
  });
  assert.equal(r.finish_reason, 'aborted');
  assert.equal(r.streamed_pieces, 5);
});

test('load errors are JS Errors naming the file', { timeout: 60_000 }, async () => {
  const glue = await loadWasm();
  const { server, url } = await startServer({ port: 0 });
  try {
    await assert.rejects(
      glue.WasmEngine.load(`${url}models/no-such-model/`, () => {}),
      (e) => e instanceof Error && /manifest\.json/.test(e.message) && /404/.test(e.message),
    );
  } finally {
    server.close();
  }
});
