#!/usr/bin/env bash
# Load run of the edge in workerd (wrangler dev) on loopback, recorded in BENCHMARKS.md:
#   (a) GET /healthz               — the runtime floor, no work
#   (b) POST /webhooks/hotmart     — verify + normalize + publish to the Pub/Sub emulator
#   (c) POST /webhooks/hotmart     — the same with publish answered by an instant local sink
# 2 connections per core, bounded duration. Needs wrk (apt-get install wrk).
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"
DURATION=${DURATION:-20s}
CONNECTIONS=$(( 2 * $(nproc) ))
command -v wrk >/dev/null || { echo "bench-edge: wrk is missing: apt-get install wrk" >&2; exit 1; }
scripts/setup.sh
scripts/build-edge.sh >/dev/null
cargo build -q -p lms-bridge-tools --bin pubsub-sink

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { setsid "$@" >"$work/$(basename "$1").$RANDOM.log" 2>&1 & pids+=($!); }
wait_http() { for _ in $(seq 300); do curl -fs "$1" >/dev/null && return; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

emu=$(port); sink=$(port); edge_b=$(port); edge_c=$(port)
start gcloud beta emulators pubsub start --quiet --host-port="127.0.0.1:$emu" --project=bench
wait_http "http://127.0.0.1:$emu/"
curl -fs -X PUT "http://127.0.0.1:$emu/v1/projects/bench/topics/bench" >/dev/null
start target/debug/pubsub-sink "$sink"
vars=(--var HOTMART_HOTTOK:bench-hottok --var GCP_PROJECT:bench --var PUBSUB_TOPIC:bench --var LMS_BRIDGE_LOCAL:1)
start wrangler dev --ip 127.0.0.1 --port "$edge_b" --persist-to "$work/b" "${vars[@]}" --var "PUBSUB_EMULATOR_HOST:127.0.0.1:$emu"
start wrangler dev --ip 127.0.0.1 --port "$edge_c" --persist-to "$work/c" "${vars[@]}" --var "PUBSUB_EMULATOR_HOST:127.0.0.1:$sink"
wait_http "http://127.0.0.1:$edge_b/healthz"
wait_http "http://127.0.0.1:$edge_c/healthz"

run() {
  echo "### $1"
  shift
  HOTTOK=bench-hottok wrk --latency -t2 -c"$CONNECTIONS" -d"$DURATION" "$@" | grep -E "Requests/sec|50%|99%|requests in|Non-2xx"
}
run "(a) GET /healthz" "http://127.0.0.1:$edge_b/healthz"
run "(b) full path, Pub/Sub emulator" -s scripts/bench/webhook.lua "http://127.0.0.1:$edge_b/webhooks/hotmart"
run "(c) full path, instant sink" -s scripts/bench/webhook.lua "http://127.0.0.1:$edge_c/webhooks/hotmart"
echo "### bundle"
echo "wasm raw: $(stat -c %s edge/build/index_bg.wasm) bytes, gzip -9: $(gzip -9c edge/build/index_bg.wasm | wc -c) bytes"
