#!/usr/bin/env bash
# `make chaos N=…`: the chaos run (tests/src/chaos/) with N webhooks (default 10,000). Builds
# the binaries it starts, then prints the report; exits non-zero unless nothing mismatched,
# nothing was lost and no side effect happened twice. Extra arguments go to the tool
# (--seed S, --rate PER_SECOND, --senders K).
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"
webhooks=${1:-10000}
shift || true
step "building the backend, the LMS sandbox and the chaos tool"
cargo build --locked -p lms-bridge-backend -p lms-bridge-tools -p lms-bridge-tests --bin lms-bridge --bin lms-sandbox --bin chaos
export LMS_BRIDGE_BIN="$ROOT/target/debug/lms-bridge"
export LMS_SANDBOX_BIN="$ROOT/target/debug/lms-sandbox"
step "chaos run: $webhooks webhooks"
"$ROOT/target/debug/chaos" --webhooks "$webhooks" "$@"
