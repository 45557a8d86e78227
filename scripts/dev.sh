#!/usr/bin/env bash
# `make dev`: the whole system on this machine — Pub/Sub and Firestore emulators, topic and
# push subscription, the LMS sandbox, the backend, a sample mapping, the edge in workerd, and
# the admin console (ADMIN_AUTH=none: local only).
# `make dev LMS=moodle`: the Moodle sandbox instead of the TalentLMS one (LMS=moodle,
# MOODLE_URL, MOODLE_TOKEN for the backend; a sample mapping with Moodle course ids).
# Each runs in its own process group; Ctrl-C stops them all. Logs: .dev/logs/.
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/tools.sh"
cd "$ROOT"
scripts/setup.sh
LMS=${LMS:-talentlms}
case "$LMS" in
  talentlms) sandbox_bin=lms-sandbox ;;
  moodle) sandbox_bin=moodle-sandbox ;;
  *) echo "dev: LMS=$LMS? (talentlms or moodle)" >&2; exit 1 ;;
esac
cargo build -q -p lms-bridge-backend -p lms-bridge-tools --bin lms-bridge --bin "$sandbox_bin"

PUBSUB_PORT=${PUBSUB_PORT:-8085}
FIRESTORE_PORT=${FIRESTORE_PORT:-8086}
SANDBOX_PORT=${SANDBOX_PORT:-8087}
BACKEND_PORT=${BACKEND_PORT:-8088}
EDGE_PORT=${EDGE_PORT:-8787}
ADMIN_PORT=${ADMIN_PORT:-8089}
HOTTOK=${HOTTOK:-dev-hottok}
export GCP_PROJECT=lms-bridge-local
export PUBSUB_EMULATOR_HOST=127.0.0.1:$PUBSUB_PORT
export FIRESTORE_EMULATOR_HOST=127.0.0.1:$FIRESTORE_PORT
export LMS
if [ "$LMS" = moodle ]; then
  # The sandbox's wwwroot, exactly: Moodle redirects any other host (localhost included).
  export MOODLE_URL=http://127.0.0.1:$SANDBOX_PORT
  export MOODLE_TOKEN=${MOODLE_TOKEN:-sandbox-moodle-token-0123456789abcdef}
  sandbox=(target/debug/moodle-sandbox --port "$SANDBOX_PORT" --token "$MOODLE_TOKEN" --wwwroot "$MOODLE_URL"
    --courses "2,3,4,5")
  # Moodle course ids are numbers; the fixtures' product gets course 2.
  mappings=.dev/mappings.moodle.toml
else
  export TALENTLMS_URL=http://127.0.0.1:$SANDBOX_PORT
  export TALENTLMS_API_KEY=sandbox-api-key-0123456789abcdef
  sandbox=(target/debug/lms-sandbox --port "$SANDBOX_PORT" --api-key "$TALENTLMS_API_KEY")
  mappings=deploy/mappings.example.toml
fi
export CLOUDSDK_CORE_DISABLE_PROMPTS=1

mkdir -p .dev/logs
if [ "$LMS" = moodle ]; then
  cat >"$mappings" <<'TOML'
[[product]]
source = "hotmart"
product_id = "4774438"
courses = ["2"]
policy = { type = "lifetime" }

[[product]]
source = "hotmart"
product_id = "4774439"
courses = ["3"]
policy = { type = "subscription", grace_days = 3 }

[[product]]
source = "hotmart"
product_id = "4774440"
courses = ["4"]
policy = { type = "fixed_days", days = 365 }
TOML
fi
groups=()
stop_all() {
  trap - EXIT INT TERM
  echo; step "stopping everything"
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 2
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'stop_all; exit 0' INT TERM
start() { # NAME COMMAND...: a new process group, output to .dev/logs/NAME.log
  local name=$1; shift
  setsid "$@" >".dev/logs/$name.log" 2>&1 &
  groups+=($!)
}
wait_http() { # URL NAME
  for _ in $(seq 600); do curl -fs "$1" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "dev: $2 did not come up; see .dev/logs/$2.log" >&2; exit 1
}
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in $PUBSUB_PORT $FIRESTORE_PORT $SANDBOX_PORT $BACKEND_PORT $EDGE_PORT $ADMIN_PORT; do
  if in_use "$port"; then echo "dev: port $port is in use (another make dev?); set *_PORT to move" >&2; exit 1; fi
done

step "emulators"
start pubsub gcloud beta emulators pubsub start --quiet --host-port="$PUBSUB_EMULATOR_HOST" --project="$GCP_PROJECT"
start firestore gcloud emulators firestore start --quiet --host-port="$FIRESTORE_EMULATOR_HOST"
start sandbox "${sandbox[@]}"
wait_http "http://127.0.0.1:$SANDBOX_PORT/_sandbox/state" sandbox
wait_http "http://$PUBSUB_EMULATOR_HOST/" pubsub
wait_http "http://$FIRESTORE_EMULATOR_HOST/" firestore

step "backend (PUSH_AUTH=none: unauthenticated, local only)"
PUSH_AUTH=none PORT=$BACKEND_PORT LISTEN_ADDR=127.0.0.1 start backend target/debug/lms-bridge serve
wait_http "http://127.0.0.1:$BACKEND_PORT/healthz" backend
target/debug/lms-bridge pubsub setup --push-endpoint "http://127.0.0.1:$BACKEND_PORT/pubsub/push" --min-backoff-seconds 1
target/debug/lms-bridge mappings import "$mappings"

step "admin console (ADMIN_AUTH=none: everyone is an operator, local only)"
ADMIN_AUTH=none PORT=$ADMIN_PORT LISTEN_ADDR=127.0.0.1 start admin target/debug/lms-bridge admin
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" admin

step "edge in workerd (wrangler dev)"
start edge wrangler dev --ip 127.0.0.1 --port "$EDGE_PORT" --persist-to .dev/wrangler \
  --var "HOTMART_HOTTOK:$HOTTOK" --var "PUBSUB_EMULATOR_HOST:$PUBSUB_EMULATOR_HOST" --var LMS_BRIDGE_LOCAL:1 \
  --var "GCP_PROJECT:$GCP_PROJECT" --var "PUBSUB_TOPIC:lms-bridge-events"
wait_http "http://127.0.0.1:$EDGE_PORT/healthz" edge

cat <<INFO

lms-bridge is running (LMS=$LMS). Edge: http://127.0.0.1:$EDGE_PORT/webhooks/hotmart  (hottok: $HOTTOK)
Admin console: http://127.0.0.1:$ADMIN_PORT/

Post a sample purchase:
  curl -s -X POST http://127.0.0.1:$EDGE_PORT/webhooks/hotmart -H 'content-type: application/json' \\
    -H 'X-HOTMART-HOTTOK: $HOTTOK' --data-binary @tests/fixtures/hotmart/purchase_approved.json

Then find the student in the admin console (ana.souza@example.com), or from the terminal
(and the sandbox's view of the LMS):
  GCP_PROJECT=$GCP_PROJECT FIRESTORE_EMULATOR_HOST=$FIRESTORE_EMULATOR_HOST target/debug/lms-bridge student show ana.souza@example.com
  curl -s http://127.0.0.1:$SANDBOX_PORT/_sandbox/state
INFO
if [ "$LMS" = moodle ]; then
  cat <<INFO
The Moodle sandbox (wwwroot $MOODLE_URL, courses 2-5; mappings in $mappings): users,
enrolments with their timeend and whether active now, and every call the bridge made:
  curl -s http://127.0.0.1:$SANDBOX_PORT/_sandbox/state | jq '{enrolments, counts}'
Move its clock past an end date (Moodle ends the access itself):
  curl -s -X POST http://127.0.0.1:$SANDBOX_PORT/_sandbox/clock -d '{"advance_secs":86400}'
INFO
fi
cat <<INFO

Logs in .dev/logs/. Ctrl-C stops everything.
INFO
wait
