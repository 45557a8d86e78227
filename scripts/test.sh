#!/usr/bin/env bash
# Every check a change must pass: formatting, clippy (native and wasm32), the edge build, and
# every test. Run through `make test` (which runs setup.sh first).
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (wasm32: shared and edge)"
cargo clippy -p lms-bridge-shared -p lms-bridge-edge --target wasm32-unknown-unknown --locked -- -D warnings

step "edge build (worker-build)"
scripts/build-edge.sh

step "tests"
cargo test --workspace --locked
