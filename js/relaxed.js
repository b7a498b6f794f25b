// The one-thread build with wasm relaxed SIMD (`pkg-relaxed/`), imported by wasm.js only when
// threads.js's chooseSimd says so. A package built without it gets, in place of this file, one
// whose import fails with that reason (scripts/build-package.mjs), and runs the SIMD128 build.
export { default } from './pkg-relaxed/webvlm.js';
export * from './pkg-relaxed/webvlm.js';
