#!/usr/bin/env bash
# Builds the edge Worker (edge/build/) with worker-build and the local tools from setup.sh.
# wrangler runs this as the `[build]` command of wrangler.toml, on every `wrangler dev`: when
# nothing the Worker is built from changed, the previous build is reused (wasm-opt alone
# takes tens of seconds here).
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"
stamp=edge/build/.inputs.sha256
inputs=$(find edge/src shared/src edge/Cargo.toml shared/Cargo.toml Cargo.toml Cargo.lock wrangler.toml -type f -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ -f edge/build/index_bg.wasm ] && [ -f edge/build/worker/shim.mjs ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
  echo "edge build is up to date"
  exit 0
fi
cd edge
worker-build --release
echo "$inputs" > "$ROOT/$stamp"
