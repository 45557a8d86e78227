#!/usr/bin/env bash
# Writes the committed seed corpus (fuzz/corpus/<target>/) from the project's fixtures. Run it
# again when the fixtures change; libFuzzer grows its own corpus from these out of git
# (scripts/fuzz.sh). Needs the lms-bridge binary (built here if missing) for the events.
set -euo pipefail
# shellcheck source=scripts/tools.sh
source "$(dirname "$0")/../scripts/tools.sh"
cd "$ROOT"
corpus=fuzz/corpus

step "building lms-bridge (its normalize command makes the push seeds' events)"
cargo build -q -p lms-bridge-backend --bin lms-bridge
bridge=target/debug/lms-bridge

rm -rf "$corpus"
mkdir -p "$corpus"/{hotmart_normalize,pubsub_push,mappings_toml,sales_csv,stripe_webhook,std_webhook}

# Hotmart bodies: the fixtures as they are.
cp tests/fixtures/hotmart/*.json "$corpus/hotmart_normalize/"

# Push bodies: each fixture's event as Pub/Sub pushes it (both id spellings, as Pub/Sub sends),
# plus data that is not base64 and base64 that is not an event.
push() { # NAME DATA
  printf '{"message":{"attributes":{"schema":"lms-bridge.event.v2"},"data":"%s","messageId":"%s","message_id":"%s","publishTime":"2026-01-01T00:00:00Z","publish_time":"2026-01-01T00:00:00Z"},"subscription":"projects/p/subscriptions/lms-bridge-events","deliveryAttempt":1}' \
    "$2" "$n" "$n" >"$corpus/pubsub_push/$1.json"
}
n=1000
for fixture in tests/fixtures/hotmart/*.json; do
  n=$((n + 1))
  event=$("$bridge" normalize --source hotmart <"$fixture" | tr -d '\n')
  push "$(basename "$fixture" .json)" "$(printf '%s' "$event" | base64 -w0)"
done
push not_base64 'not base64!'
push not_an_event "$(printf '{"schema":"other"}' | base64 -w0)"

# Mappings files: the example, and the tables of docs/contracts.md and docs/access-rules.md.
cp deploy/mappings.example.toml "$corpus/mappings_toml/example.toml"
for doc in contracts access-rules; do
  awk '/^```toml$/ { on = 1; next } /^```$/ { on = 0 } on' "docs/$doc.md" >"$corpus/mappings_toml/$doc.toml"
done
cat >"$corpus/mappings_toml/every_policy.toml" <<'TOML'
[[product]]
source = "hotmart"
product_id = "1"
courses = ["101"]
policy = { type = "lifetime" }

[[product]]
source = "hotmart"
product_id = "2"
courses = []
policy = { type = "fixed_days", days = 365 }
dispute = "suspend"
chargeback = "revoke_charge"
plans = { "7" = ["102", "103"] }
TOML

# Sales exports: the backend's fixture (BOM, `;`, quotes, bad rows), and the tests' small ones
# with `,` + CRLF, tab, and latin-1.
cp backend/tests/fixtures/hotmart-sales-export.csv "$corpus/sales_csv/export.csv"
small='Código da transação;Status da transação;Código do produto;Comprador(a);Email do(a) Comprador(a)
HP1;Aprovado;4774438;João Brandão;joao@example.com
"HP2";Aprovado;1;"Ana
Souza";ana@example.com
HP3C2;Reembolsado;1;Bia;bia@example.com
'
printf '%s' "$small" >"$corpus/sales_csv/small.csv"
printf '%s' "$small" | tr ';' '\t' >"$corpus/sales_csv/tab.csv"
printf '%s' "$small" | iconv -f UTF-8 -t LATIN1 >"$corpus/sales_csv/latin1.csv"
printf '"código da transação" , STATUS DA TRANSAÇÃO,Código do produto,email do(a)  comprador(a),Produto,Data da transação,Confirmação do pagamento,Valor de compra com impostos,Moeda de compra,Tipo de cobrança\r\nHP1,Aprovado,4774438,ana@example.com,"Curso; com, vírgula",01/02/2026,01/02/2026 10:00,"1.234,56",brl,Recuperador Inteligente\r\n' \
  >"$corpus/sales_csv/comma_crlf.csv"

# Webhook requests are signed as at the targets' clock (fuzz/src/lib.rs: received_at and the
# secrets), so the seeds verify; the fuzzer then mutates headers and bodies apart.
now=1767225600
hmac_hex() { # KEYHEX: HMAC-SHA256 of stdin, hex
  openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" -binary | od -An -v -tx1 | tr -d ' \n'
}

# Stripe requests: the first line is the Stripe-Signature value, the rest the body (every
# fixture: each mapped type in both API renderings). The secret is the HMAC key as written.
stripe_key=$(printf '%s' 'whsec_fuzz-stripe' | od -An -v -tx1 | tr -d ' \n')
for fixture in shared/tests/fixtures/stripe/*.json; do
  sig=$({ printf '%s.' "$now"; cat "$fixture"; } | hmac_hex "$stripe_key")
  { printf 't=%s,v1=%s,v0=%s\n' "$now" "$sig" "$sig"; cat "$fixture"; } \
    >"$corpus/stripe_webhook/$(basename "$fixture" .json).txt"
done
# A roll (two v1, one of them of another secret) with spaces, and a thin event.
fixture=shared/tests/fixtures/stripe/invoice.paid.2025-03-31.basil.json
sig=$({ printf '%s.' "$now"; cat "$fixture"; } | hmac_hex "$stripe_key")
{ printf 't=%s, v1=%s, v1=%s\n' "$now" "$(printf '0%.0s' {1..64})" "$sig"; cat "$fixture"; } \
  >"$corpus/stripe_webhook/roll.txt"
printf 't=%s,v1=%s\n{"id":"evt_1","object":"v2.core.event","type":"v1.invoice.paid","created":"2026-01-01T00:00:00.000Z"}' \
  "$now" "$(printf 'f%.0s' {1..64})" >"$corpus/stripe_webhook/thin_event.txt"

# Standard Webhooks requests from sender acme: the first three lines are webhook-id,
# webhook-timestamp and webhook-signature, the rest the body. The key is the secret's base64.
std_key=$(printf '%s' 'ZnV6ei1zdGQta2V5' | base64 -d | od -An -v -tx1 | tr -d ' \n')
std() { # NAME BODY
  local id="msg_$1" sig
  sig=$(printf '%s.%s.%s' "$id" "$now" "$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$std_key" -binary | base64)
  printf '%s\n%s\nv1,%s\n%s' "$id" "$now" "$sig" "$2" >"$corpus/std_webhook/$1.txt"
}
# The body of docs/std-webhooks-senders.md, then one per type (and its variants).
std docs_example "$(awk '/^```json$/ { on = 1; next } /^```$/ { on = 0 } on' docs/std-webhooks-senders.md)"
data='"email":"ana@example.com","name":"Ana Souza","product":"course-101","grant":"sub_42","charge":"ch_7","occurred_at":"2025-03-01T11:59:00Z"'
for case in \
  'access_granted access.granted ,"paid_through":"2025-04-01T11:59:00Z"' \
  'access_granted_once access.granted' \
  'access_revoked_refunded access.revoked ,"reason":"refunded"' \
  'access_revoked_chargeback access.revoked ,"reason":"chargeback"' \
  'charge_failed charge.failed' \
  'subscription_ends subscription.ends ,"paid_through":"2025-03-31T00:00:00Z"' \
  'dispute_opened dispute.opened' \
  'dispute_closed_won dispute.closed ,"outcome":"won"' \
  'dispute_closed_lost dispute.closed ,"outcome":"lost"' \
  'info invoice.created'; do
  read -r name kind extra <<<"$case"
  std "$name" "{\"type\":\"$kind\",\"timestamp\":\"2025-03-01T11:59:59Z\",\"data\":{$data${extra:-}}}"
done
std epoch_millis '{"type":"charge.failed","data":{"email":"a@b.c","product":"p","grant":"g","charge":"c","occurred_at":1740830340000}}'
std ping '{"type":"ping"}'
# The specification's test vector body, signed with two entries (a decoy of another version).
printf 'msg_p5jXN8AQM9LWM0D4loKWxJek\n%s\nv1a,abc v1,%s\n{"test": 2432232314}' "$now" \
  "$(printf '%s.%s.%s' msg_p5jXN8AQM9LWM0D4loKWxJek "$now" '{"test": 2432232314}' | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$std_key" -binary | base64)" \
  >"$corpus/std_webhook/spec_vector.txt"

step "seed corpus written"
for dir in "$corpus"/*/; do printf '%s: %s files\n' "$(basename "$dir")" "$(find "$dir" -type f | wc -l)"; done
