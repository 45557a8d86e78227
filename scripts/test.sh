#!/usr/bin/env bash
# Every check a change must pass: formatting, clippy (native and wasm32), the edge build, and
# every test. Run through `make test` (which runs setup.sh first).
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (wasm32: shared and edge)"
cargo clippy -p lms-bridge-shared -p lms-bridge-edge --target wasm32-unknown-unknown --locked -- -D warnings

step "edge bundle (wrangler deploy --dry-run: builds with worker-build, no network)"
wrangler deploy --dry-run --outdir target/edge-dry-run
gzip_bytes=$(gzip -9c edge/build/index_bg.wasm | wc -c)
echo "edge wasm: $(stat -c %s edge/build/index_bg.wasm) bytes raw, $gzip_bytes gzip"
# The Workers free plan limit is 3 MiB gzip; we hold ourselves to 400 KiB.
[ "$gzip_bytes" -le $((400 * 1024)) ] || { echo "edge bundle over 400 KiB gzip" >&2; exit 1; }

step "tests"
# The binaries the tests start (the backend, and the LMS sandboxes and Hotmart fake from
# `tools/`), built once here: the tests use these instead of each building them again with
# other features.
cargo build --locked -p lms-bridge-backend -p lms-bridge-tools --bin lms-bridge --bin lms-sandbox --bin moodle-sandbox --bin hotmart-fake
export LMS_BRIDGE_BIN="$ROOT/target/debug/lms-bridge"
export LMS_SANDBOX_BIN="$ROOT/target/debug/lms-sandbox"
export MOODLE_SANDBOX_BIN="$ROOT/target/debug/moodle-sandbox"
export HOTMART_FAKE_BIN="$ROOT/target/debug/hotmart-fake"
cargo test --workspace --locked
