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
mkdir -p "$corpus"/{hotmart_normalize,pubsub_push,mappings_toml,sales_csv}

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

step "seed corpus written"
for dir in "$corpus"/*/; do printf '%s: %s files\n' "$(basename "$dir")" "$(find "$dir" -type f | wc -l)"; done
