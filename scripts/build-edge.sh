#!/usr/bin/env bash
# Builds the edge Worker (edge/build/) with worker-build and the local tools from setup.sh.
# wrangler runs this as the `[build]` command of wrangler.toml.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT/edge"
worker-build --release
