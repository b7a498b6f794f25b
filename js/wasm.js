// The one place the package imports the wasm-bindgen glue (`pkg/`, built by scripts/build.sh
// with `--target web`): initialised once per JavaScript realm (the worker, or the page when
// the engine runs in-thread). A bundler sees `new URL('webvlm_bg.wasm', import.meta.url)`
// inside the glue and emits the wasm file as an asset.
import init, * as glue from './pkg/webvlm.js';

let ready = null;

/**
 * Initialise the module; resolves to its exports (`WasmLoader`, `WasmEngine`, ...).
 * @param {{ wasmUrl?: string | URL }} [opts] where the `.wasm` file is, when not beside the glue
 */
export function loadWasm(opts = {}) {
  if (!ready) {
    const arg = opts.wasmUrl ? { module_or_path: opts.wasmUrl } : undefined;
    ready = init(arg).then(
      () => glue,
      (e) => {
        ready = null;
        throw e;
      },
    );
  }
  return ready;
}
