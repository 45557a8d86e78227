#!/usr/bin/env bash
# Installs everything building and testing lms-bridge needs. Idempotent: a second run only
# checks versions and takes seconds.
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown Rust target"
  rustup target add wasm32-unknown-unknown
fi

cargo_tool worker-build worker-build "$WORKER_BUILD_VERSION"
cargo_tool wasm-bindgen-cli wasm-bindgen "$WASM_BINDGEN_VERSION"

# npm ci only when package-lock.json changed since the last install.
stamp=node_modules/.lms-bridge-package-lock.json
if ! cmp -s package-lock.json "$stamp"; then
  step "installing the pinned npm tools (wrangler, esbuild, binaryen, node 22)"
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi

# The tests lint the shell scripts (deploy/gcp.sh among them) with shellcheck.
if ! command -v shellcheck >/dev/null; then
  step "installing shellcheck (Debian package)"
  apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null
fi

# The admin console's browser tests drive headless Chromium through ChromeDriver. Debian's
# two packages move together (chromium-driver depends on the exact chromium version), so
# they are installed as a pair and nothing else is pinned.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  step "installing chromium and chromium-driver (Debian packages)"
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi

for tool in "$WASM_BINDGEN_BIN" "$ESBUILD_BIN" "$WASM_OPT_BIN" "$CARGO_BIN/worker-build"; do
  [ -x "$tool" ] || { echo "setup: $tool is missing after install" >&2; exit 1; }
done
node --version | grep -q '^v22\.' || { echo "setup: node 22 is not first on PATH" >&2; exit 1; }
