#!/usr/bin/env bash
# Creates (or brings up to date) the production lms-bridge on GCP: APIs, least-privilege
# service accounts, Firestore with its indexes and TTL, the secrets, the Cloud Run backend,
# the Pub/Sub topic + dead-letter topic + push subscription, the sweep's scheduler job, and the
# admin console (`lms-bridge admin`, the same image) as a second Cloud Run service behind
# Identity-Aware Proxy, open to the emails of ADMIN_OPERATORS and ADMIN_VIEWERS only.
# Idempotent: what exists is brought to the settings below, and the Pub/Sub ones are those of
# deploy/pubsub.env (`lms-bridge pubsub setup` is built from the same file). `--dry-run` prints
# every command (secrets as <secret>) and changes nothing.
#
#   PROJECT=my-project REGION=us-central1 TALENTLMS_URL=https://acme.talentlms.com \
#   TALENTLMS_API_KEY=... ADMIN_OPERATORS=ops@example.com [ADMIN_VIEWERS=...] \
#   deploy/gcp.sh [--dry-run] [--max-instances N] [--edge-key]
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/gcp.sh [--dry-run] [--max-instances N] [--edge-key]
  --dry-run          print every command, change nothing
  --max-instances N  upper bound of Cloud Run instances (default 2); each instance paces
                     TalentLMS at TALENTLMS_CALLS_PER_SECOND / N calls per second
  --edge-key         also give the edge a new service-account key: stored as the Worker's
                     GCP_SERVICE_ACCOUNT_KEY secret (wrangler), then the older keys deleted
environment: PROJECT (required), TALENTLMS_URL (required with LMS=talentlms), ADMIN_OPERATORS (required: the
emails, comma-separated, that may act in the admin console; at least one), ADMIN_VIEWERS
(emails that may only look), TALENTLMS_API_KEY (first run, or to change it), REGION
(us-central1), TALENTLMS_CALLS_PER_SECOND (30: lms-bridge's share of the portal's 40 calls/s,
all instances together), DEACTIVATE_IDLE_USERS (false), PROJECT_NUMBER
(looked up when absent), SERVICE, TOPIC, SUBSCRIPTION, DEAD_LETTER_TOPIC,
DEAD_LETTER_SUBSCRIPTION (default names in deploy/pubsub.env), IMAGE_TAG; HOTMART_CLIENT_ID and
HOTMART_CLIENT_SECRET (both, first run or to change them: they turn on the hourly reconcile),
RECONCILE_SCHEDULE (0 * * * *); STRIPE_API_KEY (first run or to change it: a restricted
read-only key for Stripe look-ups, docs/stripe.md), STRIPE_KEY_SECRET (stripe-api-key); ADMIN_SERVICE (SERVICE-admin), ADMIN_CSRF_SECRET
(admin-csrf-key); LMS (talentlms, or moodle with MOODLE_URL (required), MOODLE_TOKEN (first run,
or to change it), MOODLE_CALLS_PER_SECOND (20, all instances together), MOODLE_SECRET
(moodle-token); TALENTLMS_* are then not needed). ADMIN_OPERATORS and ADMIN_VIEWERS are the whole IAP access list of the
console: an email taken out of them loses its access at the next run.
USAGE
}

die() { echo "gcp.sh: $*" >&2; exit 1; }

DRY_RUN=false
EDGE_KEY=false
MAX_INSTANCES=${MAX_INSTANCES:-2}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=true ;;
    --edge-key) EDGE_KEY=true ;;
    --max-instances) [ $# -ge 2 ] || { usage >&2; exit 2; }; MAX_INSTANCES=$2; shift ;;
    --max-instances=*) MAX_INSTANCES=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gcp.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

: "${PROJECT:?set PROJECT to the GCP project id}"
LMS=${LMS:-talentlms}
case "$LMS" in
  talentlms) : "${TALENTLMS_URL:?set TALENTLMS_URL, e.g. https://acme.talentlms.com}" ;;
  moodle) : "${MOODLE_URL:?set MOODLE_URL to the exact wwwroot of the Moodle site, e.g. https://school.example/moodle}" ;;
  *) die "LMS must be talentlms or moodle, not '$LMS'" ;;
esac
REGION=${REGION:-us-central1}
SERVICE=${SERVICE:-lms-bridge}
ADMIN_SERVICE=${ADMIN_SERVICE:-$SERVICE-admin}
# The Pub/Sub plan (PUBSUB_*): its values are used as they are, never repeated here. The backend
# build checks each value; this only keeps a mistyped line from being run as a command.
PUBSUB_PLAN="$(dirname "${BASH_SOURCE[0]}")/pubsub.env"
if bad=$(grep -nvE '^(#.*|[A-Z_]+=[A-Za-z0-9._-]+|)$' "$PUBSUB_PLAN"); then
  die "$PUBSUB_PLAN: not KEY=value (letters, digits, '.', '_', '-'): $bad"
fi
# shellcheck source=deploy/pubsub.env
source "$PUBSUB_PLAN"
TOPIC=${TOPIC:-$PUBSUB_TOPIC}
SUBSCRIPTION=${SUBSCRIPTION:-$PUBSUB_SUBSCRIPTION}
DEAD_LETTER_TOPIC=${DEAD_LETTER_TOPIC:-$PUBSUB_DEAD_LETTER_TOPIC}
DEAD_LETTER_SUBSCRIPTION=${DEAD_LETTER_SUBSCRIPTION:-$PUBSUB_DEAD_LETTER_SUBSCRIPTION}
SECRET=${SECRET:-talentlms-api-key}
MOODLE_SECRET=${MOODLE_SECRET:-moodle-token}
TOKEN_SECRET=${TOKEN_SECRET:-push-verification-token}
PEPPER_SECRET=${PEPPER_SECRET:-student-key-pepper}
HOTMART_ID_SECRET=${HOTMART_ID_SECRET:-hotmart-client-id}
HOTMART_SECRET_SECRET=${HOTMART_SECRET_SECRET:-hotmart-client-secret}
STRIPE_KEY_SECRET=${STRIPE_KEY_SECRET:-stripe-api-key}
ADMIN_CSRF_SECRET=${ADMIN_CSRF_SECRET:-admin-csrf-key}
RECONCILE_SCHEDULE=${RECONCILE_SCHEDULE:-0 * * * *}
SCHEDULE=${SCHEDULE:-*/5 * * * *}
REPOSITORY=${REPOSITORY:-lms-bridge}
DEACTIVATE_IDLE_USERS=${DEACTIVATE_IDLE_USERS:-false}
IMAGE="$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/lms-bridge:${IMAGE_TAG:-latest}"

# Pacing. TalentLMS allows 200 calls per 5 s per portal (40/s); every Cloud Run instance paces
# its own calls, so the per-instance pace is lms-bridge's share divided by the instance bound.
PORTAL_CALLS_PER_SECOND=40
TALENTLMS_CALLS_PER_SECOND=${TALENTLMS_CALLS_PER_SECOND:-30}
# Moodle has no rate limit of its own: its share is what the site can take (20 calls/s in all
# by default, split between the instances the same way).
MOODLE_CALLS_PER_SECOND=${MOODLE_CALLS_PER_SECOND:-20}
case "$MOODLE_CALLS_PER_SECOND" in '' | *[!0-9]*) die "MOODLE_CALLS_PER_SECOND must be a positive integer" ;; esac
[ "$LMS" = moodle ] && TALENTLMS_CALLS_PER_SECOND=$MOODLE_CALLS_PER_SECOND PORTAL_CALLS_PER_SECOND=100
case "$MAX_INSTANCES" in '' | *[!0-9]*) die "--max-instances must be a positive integer, not '$MAX_INSTANCES'" ;; esac
case "$TALENTLMS_CALLS_PER_SECOND" in '' | *[!0-9]*) die "TALENTLMS_CALLS_PER_SECOND must be a positive integer" ;; esac
[ "$MAX_INSTANCES" -ge 1 ] || die "--max-instances must be at least 1"
[ "$TALENTLMS_CALLS_PER_SECOND" -le "$PORTAL_CALLS_PER_SECOND" ] ||
  die "TALENTLMS_CALLS_PER_SECOND=$TALENTLMS_CALLS_PER_SECOND is over the portal's $PORTAL_CALLS_PER_SECOND calls/s"
PACE=$((TALENTLMS_CALLS_PER_SECOND / MAX_INSTANCES))
[ "$PACE" -ge 1 ] ||
  die "$MAX_INSTANCES instances cannot share $TALENTLMS_CALLS_PER_SECOND calls/s (at least 1 each): lower --max-instances"
[ "$PACE" -le 35 ] || PACE=35 # the backend's own ceiling per process

# The admin console's people: who may act (operators) and who may only look (viewers). The
# same lists go to the console (its allowlists) and to IAP (who may reach it at all).
# email_list NAME: the emails of variable NAME (comma-separated), trimmed and lowercased,
# joined by commas; anything that is not an email stops the script, naming it.
email_list() {
  local name=$1 item emails=()
  local -a items
  IFS=, read -r -a items <<<"${!name:-}"
  for item in "${items[@]}"; do
    item=${item#"${item%%[![:space:]]*}"}
    item=${item%"${item##*[![:space:]]}"}
    [ -n "$item" ] || continue
    [[ "$item" =~ ^[^@[:space:]:\;^=\"\'/]+@[^@[:space:]:\;^=\"\'/]+\.[^@[:space:]:\;^=\"\'/]+$ ]] ||
      die "$name: '$item' is not an email address (comma-separated emails, e.g. ops@example.com,lead@example.com)"
    emails+=("${item,,}")
  done
  local IFS=,
  printf '%s' "${emails[*]}"
}
ADMIN_OPERATORS_LIST=$(email_list ADMIN_OPERATORS)
ADMIN_VIEWERS_LIST=$(email_list ADMIN_VIEWERS)
[ -n "$ADMIN_OPERATORS_LIST" ] ||
  die "set ADMIN_OPERATORS to the emails that may act in the admin console (comma-separated, at least one, e.g. ADMIN_OPERATORS=ops@example.com); ADMIN_VIEWERS may add emails that only look"
# The IAP principals: every email of both lists once (a service account as itself).
IAP_MEMBERS=()
IFS=, read -r -a admin_emails <<<"$ADMIN_OPERATORS_LIST,$ADMIN_VIEWERS_LIST"
for email in "${admin_emails[@]}"; do
  [ -n "$email" ] || continue
  case "$email" in *.gserviceaccount.com) member="serviceAccount:$email" ;; *) member="user:$email" ;; esac
  case " ${IAP_MEMBERS[*]} " in *" $member "*) ;; *) IAP_MEMBERS+=("$member") ;; esac
done

EDGE_SA="lms-bridge-edge@$PROJECT.iam.gserviceaccount.com"
PUSH_SA="lms-bridge-push@$PROJECT.iam.gserviceaccount.com"
RUN_SA="lms-bridge-run@$PROJECT.iam.gserviceaccount.com"
ADMIN_SA="lms-bridge-admin@$PROJECT.iam.gserviceaccount.com"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

run() {
  if $DRY_RUN; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
# exists CMD...: true when the describe command succeeds. A dry run shows what a first run
# does (every create), or with PLAN_EXISTING=true what a re-run does (every update).
PLAN_EXISTING=${PLAN_EXISTING:-false}
case "$PLAN_EXISTING" in true | false) ;; *) die "PLAN_EXISTING must be true or false" ;; esac
exists() {
  if $DRY_RUN; then $PLAN_EXISTING; else "$@" >/dev/null 2>&1; fi
}
g() { run gcloud --project="$PROJECT" --quiet "$@"; }
gq() { exists gcloud --project="$PROJECT" --quiet "$@"; }
# gout ARGS...: a read-only gcloud call whose output the script needs (never in a dry run).
gout() { gcloud --project="$PROJECT" --quiet "$@"; }
# g_stdin WHAT ARGS...: gcloud reading a secret on stdin; the plan names it, never shows it.
g_stdin() {
  local what=$1
  shift
  if $DRY_RUN; then
    printf '+ gcloud'; printf ' %q' "--project=$PROJECT" --quiet "$@"; printf ' # stdin: %s\n' "$what"
  else
    gcloud --project="$PROJECT" --quiet "$@"
  fi
}

# The deterministic service URL, https://SERVICE-PROJECT_NUMBER.REGION.run.app, is known
# before the first deploy, so the service gets its complete settings (PUSH_AUDIENCE included)
# at once.
if [ -n "${PROJECT_NUMBER:-}" ]; then
  NUMBER=$PROJECT_NUMBER
elif $DRY_RUN; then
  NUMBER=PROJECT_NUMBER
else
  NUMBER=$(gout projects describe "$PROJECT" --format='value(projectNumber)')
fi
if [ "$NUMBER" = PROJECT_NUMBER ]; then
  number_length=12 # the placeholder of a dry run
else
  case "$NUMBER" in '' | *[!0-9]*) die "project number '$NUMBER' is not a number" ;; esac
  number_length=${#NUMBER}
fi
# Cloud Run gives the deterministic URL only while SERVICE-NUMBER fits a 63-character label.
[ $((${#SERVICE} + 1 + number_length)) -le 63 ] || die "SERVICE '$SERVICE' is too long for a deterministic run.app URL"
[ $((${#ADMIN_SERVICE} + 1 + number_length)) -le 63 ] ||
  die "ADMIN_SERVICE '$ADMIN_SERVICE' is too long for a deterministic run.app URL"
URL="https://$SERVICE-$NUMBER.$REGION.run.app"
ADMIN_URL="https://$ADMIN_SERVICE-$NUMBER.$REGION.run.app"
# The audience of the JWT IAP signs for a Cloud Run service it fronts directly.
ADMIN_IAP_AUDIENCE="/projects/$NUMBER/locations/$REGION/services/$ADMIN_SERVICE"
PUBSUB_AGENT="service-$NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
IAP_AGENT="service-$NUMBER@gcp-sa-iap.iam.gserviceaccount.com"

echo "== APIs"
g services enable run.googleapis.com pubsub.googleapis.com firestore.googleapis.com \
  secretmanager.googleapis.com cloudscheduler.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com iam.googleapis.com iap.googleapis.com

echo "== service accounts"
for sa in lms-bridge-edge:"edge: publishes to one topic" lms-bridge-push:"Pub/Sub push and scheduler: invokes the backend" \
  lms-bridge-run:"backend runtime" lms-bridge-admin:"admin console runtime"; do
  name=${sa%%:*}
  gq iam service-accounts describe "$name@$PROJECT.iam.gserviceaccount.com" ||
    g iam service-accounts create "$name" --display-name="lms-bridge ${sa#*:}"
done

echo "== Firestore (native mode), indexes, TTL"
gq firestore databases describe --database='(default)' ||
  g firestore databases create --location="$REGION" --type=firestore-native
# The sweep's query: access == active AND access_until <= now (deploy/firestore.indexes.json).
g firestore indexes composite create --collection-group=enrollments --query-scope=COLLECTION \
  --field-config=field-path=access,order=ascending --field-config=field-path=access_until,order=ascending ||
  true # ALREADY_EXISTS on later runs
g firestore fields ttls update expire_at --collection-group=events --enable-ttl
g projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$RUN_SA" --role=roles/datastore.user --condition=None

echo "== secrets: the LMS credentials, the push verification token"
# has_version SECRET: true when the secret has an enabled version (false in a dry run).
has_version() {
  local versions
  $DRY_RUN && return 1
  versions=$(gout secrets versions list "$1" --filter=state:ENABLED --limit=1 --format='value(name)') ||
    die "cannot list the versions of secret $1"
  [ -n "$versions" ]
}
if [ "$LMS" = talentlms ]; then
  gq secrets describe "$SECRET" || g secrets create "$SECRET" --replication-policy=automatic
  if [ -n "${TALENTLMS_API_KEY:-}" ]; then
    # A new version only when the key changed: re-runs add nothing.
    current=
    if ! $DRY_RUN && has_version "$SECRET"; then
      current=$(gout secrets versions access latest --secret="$SECRET")
    fi
    if $DRY_RUN || [ "$current" != "$TALENTLMS_API_KEY" ]; then
      if $DRY_RUN; then
        g_stdin 'the TalentLMS API key, from TALENTLMS_API_KEY' secrets versions add "$SECRET" --data-file=-
      else
        printf %s "$TALENTLMS_API_KEY" | g_stdin '' secrets versions add "$SECRET" --data-file=-
      fi
    fi
  elif ! $DRY_RUN && ! has_version "$SECRET"; then
    die "secret $SECRET has no version yet: set TALENTLMS_API_KEY"
  fi
fi
# PUSH_VERIFICATION_TOKEN: a second factor beside the OIDC token, carried as ?token= on the
# push endpoint and the sweep URL. Generated once; rotate by adding a version and re-running.
gq secrets describe "$TOKEN_SECRET" || g secrets create "$TOKEN_SECRET" --replication-policy=automatic
if $DRY_RUN; then
  g_stdin 'a new token, openssl rand -hex 32, only when the secret has no version' \
    secrets versions add "$TOKEN_SECRET" --data-file=-
  TOKEN='<secret>'
else
  if ! has_version "$TOKEN_SECRET"; then
    openssl rand -hex 32 | tr -d '\n' | g_stdin '' secrets versions add "$TOKEN_SECRET" --data-file=-
  fi
  TOKEN=$(gout secrets versions access latest --secret="$TOKEN_SECRET")
  [ -n "$TOKEN" ] || die "secret $TOKEN_SECRET is empty"
fi
# STUDENT_KEY_PEPPER: student keys are HMACs of the email under it (edge and backend alike),
# so logs and document ids cannot be matched against an email list. Generated once, never
# rotated: another pepper would give every student another key.
gq secrets describe "$PEPPER_SECRET" || g secrets create "$PEPPER_SECRET" --replication-policy=automatic
if $DRY_RUN; then
  g_stdin 'a new pepper, openssl rand -hex 32, only when the secret has no version' \
    secrets versions add "$PEPPER_SECRET" --data-file=-
elif ! has_version "$PEPPER_SECRET"; then
  openssl rand -hex 32 | tr -d '\n' | g_stdin '' secrets versions add "$PEPPER_SECRET" --data-file=-
fi
# put_secret SECRET VALUE WHAT: a new version only when VALUE changed (re-runs add nothing).
put_secret() {
  local current=
  gq secrets describe "$1" || g secrets create "$1" --replication-policy=automatic
  if $DRY_RUN; then
    g_stdin "$3" secrets versions add "$1" --data-file=-
    return
  fi
  if has_version "$1"; then
    current=$(gout secrets versions access latest --secret="$1")
  fi
  [ "$current" = "$2" ] || printf %s "$2" | g_stdin '' secrets versions add "$1" --data-file=-
}
# The Moodle web service token: given once (MOODLE_TOKEN), later runs find it.
if [ "$LMS" = moodle ]; then
  if [ -n "${MOODLE_TOKEN:-}" ]; then
    echo "== secrets: the Moodle web service token"
    put_secret "$MOODLE_SECRET" "$MOODLE_TOKEN" 'the Moodle token, from MOODLE_TOKEN'
  elif ! $DRY_RUN && ! { gq secrets describe "$MOODLE_SECRET" && has_version "$MOODLE_SECRET"; }; then
    die "secret $MOODLE_SECRET has no version yet: set MOODLE_TOKEN"
  fi
fi
# Hotmart API credentials turn on the hourly reconcile (webhooks lost before the edge are
# found again through Hotmart's REST API). Given once; later runs find them in Secret Manager.
RUNTIME_SECRETS=("$TOKEN_SECRET" "$PEPPER_SECRET")
if [ "$LMS" = moodle ]; then RUNTIME_SECRETS+=("$MOODLE_SECRET"); else RUNTIME_SECRETS+=("$SECRET"); fi
RECONCILE=false
if [ -n "${HOTMART_CLIENT_ID:-}" ] || [ -n "${HOTMART_CLIENT_SECRET:-}" ]; then
  { [ -n "${HOTMART_CLIENT_ID:-}" ] && [ -n "${HOTMART_CLIENT_SECRET:-}" ]; } ||
    die "set both HOTMART_CLIENT_ID and HOTMART_CLIENT_SECRET, or neither"
  echo "== secrets: the Hotmart API credentials (reconcile)"
  put_secret "$HOTMART_ID_SECRET" "$HOTMART_CLIENT_ID" 'the Hotmart client id, from HOTMART_CLIENT_ID'
  put_secret "$HOTMART_SECRET_SECRET" "$HOTMART_CLIENT_SECRET" 'the Hotmart client secret, from HOTMART_CLIENT_SECRET'
  RECONCILE=true
elif ! $DRY_RUN && gq secrets describe "$HOTMART_ID_SECRET" && has_version "$HOTMART_ID_SECRET" &&
  gq secrets describe "$HOTMART_SECRET_SECRET" && has_version "$HOTMART_SECRET_SECRET"; then
  RECONCILE=true
fi
$RECONCILE && RUNTIME_SECRETS+=("$HOTMART_ID_SECRET" "$HOTMART_SECRET_SECRET")
# A restricted, read-only Stripe key lets the backend find what newer Stripe events leave out
# (the invoice of a refunded payment, a Checkout Session's product): docs/stripe.md. Given
# once; later runs find it in Secret Manager.
STRIPE_LOOKUPS=false
if [ -n "${STRIPE_API_KEY:-}" ]; then
  echo "== secrets: the Stripe restricted API key"
  put_secret "$STRIPE_KEY_SECRET" "$STRIPE_API_KEY" 'the Stripe restricted key, from STRIPE_API_KEY'
  STRIPE_LOOKUPS=true
elif ! $DRY_RUN && gq secrets describe "$STRIPE_KEY_SECRET" && has_version "$STRIPE_KEY_SECRET"; then
  STRIPE_LOOKUPS=true
fi
$STRIPE_LOOKUPS && RUNTIME_SECRETS+=("$STRIPE_KEY_SECRET")
for secret in "${RUNTIME_SECRETS[@]}"; do
  g secrets add-iam-policy-binding "$secret" --member="serviceAccount:$RUN_SA" --role=roles/secretmanager.secretAccessor
done

echo "== backend image and Cloud Run service"
gq artifacts repositories describe "$REPOSITORY" --location="$REGION" ||
  g artifacts repositories create "$REPOSITORY" --location="$REGION" --repository-format=docker
g builds submit --config=deploy/cloudbuild.yaml --substitutions="_IMAGE=$IMAGE" .
# Every setting, every time: --set-env-vars replaces the whole set. The request timeout is the
# ack deadline: Pub/Sub redelivers what is answered later anyway.
ENV_VARS="GCP_PROJECT=$PROJECT,PUSH_AUTH=cloud-run,PUSH_AUDIENCE=$URL,PUSH_SERVICE_ACCOUNT=$PUSH_SA"
if [ "$LMS" = moodle ]; then
  ENV_VARS+=",PUBSUB_SUBSCRIPTION=$SUBSCRIPTION,LMS=moodle,MOODLE_URL=$MOODLE_URL"
  ENV_VARS+=",MOODLE_MAX_CALLS_PER_SECOND=$PACE,DEACTIVATE_IDLE_USERS=$DEACTIVATE_IDLE_USERS,PUBSUB_TOPIC=$TOPIC"
  SECRET_VARS="MOODLE_TOKEN=$MOODLE_SECRET:latest"
else
  ENV_VARS+=",PUBSUB_SUBSCRIPTION=$SUBSCRIPTION,LMS=talentlms,TALENTLMS_URL=$TALENTLMS_URL"
  ENV_VARS+=",TALENTLMS_MAX_CALLS_PER_SECOND=$PACE,DEACTIVATE_IDLE_USERS=$DEACTIVATE_IDLE_USERS,PUBSUB_TOPIC=$TOPIC"
  SECRET_VARS="TALENTLMS_API_KEY=$SECRET:latest"
fi
SECRET_VARS+=",PUSH_VERIFICATION_TOKEN=$TOKEN_SECRET:latest,STUDENT_KEY_PEPPER=$PEPPER_SECRET:latest"
if $RECONCILE; then
  SECRET_VARS+=",HOTMART_CLIENT_ID=$HOTMART_ID_SECRET:latest,HOTMART_CLIENT_SECRET=$HOTMART_SECRET_SECRET:latest"
fi
$STRIPE_LOOKUPS && SECRET_VARS+=",STRIPE_API_KEY=$STRIPE_KEY_SECRET:latest"
g run deploy "$SERVICE" --image="$IMAGE" --region="$REGION" --service-account="$RUN_SA" \
  --no-allow-unauthenticated --invoker-iam-check --timeout="${PUBSUB_ACK_DEADLINE_SECONDS}s" --concurrency=20 --cpu=1 --memory=512Mi \
  --max-instances="$MAX_INSTANCES" \
  --set-env-vars="$ENV_VARS" \
  --set-secrets="$SECRET_VARS"
if ! $DRY_RUN; then
  actual=$(gout run services describe "$SERVICE" --region="$REGION" --format='value(status.url)')
  [ "$actual" = "$URL" ] ||
    die "the service's URL is $actual, not $URL: push tokens and PUSH_AUDIENCE would not match"
fi
g run services add-iam-policy-binding "$SERVICE" --region="$REGION" --member="serviceAccount:$PUSH_SA" --role=roles/run.invoker
# refuse_public SERVICE: stops the run when the Cloud Run service's IAM policy lets anyone in.
refuse_public() {
  local members
  if $DRY_RUN; then
    g run services get-iam-policy "$1" --region="$REGION" --flatten=bindings[].members --format='value(bindings.members)'
    return
  fi
  members=$(gout run services get-iam-policy "$1" --region="$REGION" --flatten='bindings[].members' --format='value(bindings.members)')
  if printf '%s\n' "$members" | grep -qxE 'allUsers|allAuthenticatedUsers'; then
    echo "gcp.sh: DANGER: Cloud Run service $1 is public: its IAM policy grants allUsers or allAuthenticatedUsers." >&2
    echo "gcp.sh: remove that binding (gcloud run services remove-iam-policy-binding $1 --region=$REGION --member=allUsers --role=roles/run.invoker) and run again." >&2
    exit 1
  fi
}
# Claims-only token checks (PUSH_AUTH=cloud-run) are sound only while Cloud Run IAM stands in
# front: a public service would accept forged tokens.
refuse_public "$SERVICE"

echo "== Pub/Sub"
if gq pubsub topics describe "$TOPIC"; then
  g pubsub topics update "$TOPIC" --message-retention-duration="${PUBSUB_TOPIC_RETENTION_SECONDS}s"
else
  g pubsub topics create "$TOPIC" --message-retention-duration="${PUBSUB_TOPIC_RETENTION_SECONDS}s"
fi
gq pubsub topics describe "$DEAD_LETTER_TOPIC" || g pubsub topics create "$DEAD_LETTER_TOPIC"
# The edge may publish to the events topic and nothing else; the backend's reconcile publishes
# the facts it finds there too (one intake path).
g pubsub topics add-iam-policy-binding "$TOPIC" --member="serviceAccount:$EDGE_SA" --role=roles/pubsub.publisher
if $RECONCILE; then
  g pubsub topics add-iam-policy-binding "$TOPIC" --member="serviceAccount:$RUN_SA" --role=roles/pubsub.publisher
fi
# Pub/Sub itself moves undeliverable messages: it must publish to the dead-letter topic,
# subscribe to the source subscription, and mint the push OIDC token.
g pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher
g iam service-accounts add-iam-policy-binding "$PUSH_SA" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/iam.serviceAccountTokenCreator
# Shared by both subscriptions: dead letters are kept as long, and as safe from expiry, as live ones.
EXPIRATION=$PUBSUB_SUBSCRIPTION_EXPIRATION
[ "$EXPIRATION" = never ] || EXPIRATION=${EXPIRATION}s
subscription_flags=(--ack-deadline="$PUBSUB_ACK_DEADLINE_SECONDS" --expiration-period="$EXPIRATION"
  --message-retention-duration="${PUBSUB_MESSAGE_RETENTION_SECONDS}s")
# --format=none: gcloud would print the endpoint, and it carries the token.
push_flags=(--push-endpoint="$URL/pubsub/push?token=$TOKEN" --push-auth-service-account="$PUSH_SA" --push-auth-token-audience="$URL"
  --min-retry-delay="${PUBSUB_MIN_RETRY_DELAY_SECONDS}s" --max-retry-delay="${PUBSUB_MAX_RETRY_DELAY_SECONDS}s"
  --dead-letter-topic="$DEAD_LETTER_TOPIC" --max-delivery-attempts="$PUBSUB_MAX_DELIVERY_ATTEMPTS"
  "${subscription_flags[@]}" --format=none)
if gq pubsub subscriptions describe "$SUBSCRIPTION"; then
  # Topic and ordering cannot change on an existing subscription.
  if ! $DRY_RUN; then
    topic=$(gout pubsub subscriptions describe "$SUBSCRIPTION" --format='value(topic)')
    ordering=$(gout pubsub subscriptions describe "$SUBSCRIPTION" --format='value(enableMessageOrdering)')
    if [ "$topic" != "projects/$PROJECT/topics/$TOPIC" ] || [ "${ordering,,}" != true ]; then
      die "subscription $SUBSCRIPTION has topic '$topic' and message ordering '$ordering', which cannot be changed (want projects/$PROJECT/topics/$TOPIC, True): drain it, delete it and run again"
    fi
  fi
  g pubsub subscriptions update "$SUBSCRIPTION" "${push_flags[@]}"
else
  g pubsub subscriptions create "$SUBSCRIPTION" --topic="$TOPIC" --enable-message-ordering "${push_flags[@]}"
fi
g pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber
# Dead letters need a subscription of their own, or Pub/Sub drops them.
if gq pubsub subscriptions describe "$DEAD_LETTER_SUBSCRIPTION"; then
  g pubsub subscriptions update "$DEAD_LETTER_SUBSCRIPTION" "${subscription_flags[@]}"
else
  g pubsub subscriptions create "$DEAD_LETTER_SUBSCRIPTION" --topic="$DEAD_LETTER_TOPIC" "${subscription_flags[@]}"
fi

echo "== Cloud Scheduler: the sweep"
sweep_flags=(--location="$REGION" --schedule="$SCHEDULE" --uri="$URL/tasks/sweep?token=$TOKEN" --http-method=POST
  --oidc-service-account-email="$PUSH_SA" --oidc-token-audience="$URL" --format=none)
if gq scheduler jobs describe lms-bridge-sweep --location="$REGION"; then
  g scheduler jobs update http lms-bridge-sweep "${sweep_flags[@]}"
else
  g scheduler jobs create http lms-bridge-sweep "${sweep_flags[@]}"
fi
if $RECONCILE; then
  echo "== Cloud Scheduler: the reconcile"
  reconcile_flags=(--location="$REGION" --schedule="$RECONCILE_SCHEDULE" --uri="$URL/tasks/reconcile?token=$TOKEN"
    --http-method=POST --oidc-service-account-email="$PUSH_SA" --oidc-token-audience="$URL" --format=none)
  if gq scheduler jobs describe lms-bridge-reconcile --location="$REGION"; then
    g scheduler jobs update http lms-bridge-reconcile "${reconcile_flags[@]}"
  else
    g scheduler jobs create http lms-bridge-reconcile "${reconcile_flags[@]}"
  fi
fi

echo "== the admin console: its account, its CSRF key, a Cloud Run service behind IAP"
# Its own account, and only: Firestore (state, mappings, audit), publishing admin events to the
# events topic, the pepper (student keys) and its CSRF key. Nothing of the LMS or Hotmart, and
# no way into the backend.
g projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$ADMIN_SA" --role=roles/datastore.user --condition=None
g pubsub topics add-iam-policy-binding "$TOPIC" --member="serviceAccount:$ADMIN_SA" --role=roles/pubsub.publisher
# ADMIN_CSRF_KEY: the key of the forms' CSRF tokens, one for every instance. Generated once;
# rotate by adding a version and re-running (forms open at that moment are refused once).
gq secrets describe "$ADMIN_CSRF_SECRET" || g secrets create "$ADMIN_CSRF_SECRET" --replication-policy=automatic
if $DRY_RUN; then
  g_stdin 'a new key, openssl rand -hex 32, only when the secret has no version' \
    secrets versions add "$ADMIN_CSRF_SECRET" --data-file=-
elif ! has_version "$ADMIN_CSRF_SECRET"; then
  openssl rand -hex 32 | tr -d '\n' | g_stdin '' secrets versions add "$ADMIN_CSRF_SECRET" --data-file=-
fi
for secret in "$PEPPER_SECRET" "$ADMIN_CSRF_SECRET"; do
  g secrets add-iam-policy-binding "$secret" --member="serviceAccount:$ADMIN_SA" --role=roles/secretmanager.secretAccessor
done
# IAP directly on the service (no load balancer): every ingress path, the run.app URL included,
# passes IAP first; Cloud Run IAM then admits IAP's service agent alone. `--iap` is a beta flag
# in gcloud 528 (the GA flag came later; beta keeps it). The operator lists hold commas, so the
# variables are separated by ';' (gcloud's ^;^ form). One instance: the console's publish pace
# (PUBLISH_PER_SECOND, per process) is then the whole pace.
ADMIN_ENV="GCP_PROJECT=$PROJECT;PUBSUB_TOPIC=$TOPIC;ADMIN_AUTH=iap;ADMIN_IAP_AUDIENCE=$ADMIN_IAP_AUDIENCE"
ADMIN_ENV+=";ADMIN_OPERATORS=$ADMIN_OPERATORS_LIST"
[ -z "$ADMIN_VIEWERS_LIST" ] || ADMIN_ENV+=";ADMIN_VIEWERS=$ADMIN_VIEWERS_LIST"
g beta run deploy "$ADMIN_SERVICE" --image="$IMAGE" --region="$REGION" --service-account="$ADMIN_SA" --args=admin \
  --ingress=all --no-allow-unauthenticated --invoker-iam-check --iap \
  --concurrency=20 --cpu=1 --memory=512Mi --max-instances=1 \
  --set-env-vars="^;^$ADMIN_ENV" \
  --set-secrets="STUDENT_KEY_PEPPER=$PEPPER_SECRET:latest,ADMIN_CSRF_KEY=$ADMIN_CSRF_SECRET:latest"
# IAP calls the service as its service agent (created here if the project has none yet).
g beta services identity create --service=iap.googleapis.com
g run services add-iam-policy-binding "$ADMIN_SERVICE" --region="$REGION" --member="serviceAccount:$IAP_AGENT" --role=roles/run.invoker
refuse_public "$ADMIN_SERVICE"
# Who passes IAP: exactly the emails of ADMIN_OPERATORS and ADMIN_VIEWERS.
iap_web=(--resource-type=cloud-run --service="$ADMIN_SERVICE" --region="$REGION")
for member in "${IAP_MEMBERS[@]}"; do
  g beta iap web add-iam-policy-binding "${iap_web[@]}" --member="$member" --role=roles/iap.httpsResourceAccessor --condition=None
done
if $DRY_RUN; then
  g beta iap web get-iam-policy "${iap_web[@]}" --flatten=bindings[].members \
    --filter=bindings.role=roles/iap.httpsResourceAccessor --format='value(bindings.members)'
  printf '# then, for every member not in ADMIN_OPERATORS or ADMIN_VIEWERS:\n'
  g beta iap web remove-iam-policy-binding "${iap_web[@]}" --member=OTHER_MEMBER --role=roles/iap.httpsResourceAccessor --all
else
  holders=$(gout beta iap web get-iam-policy "${iap_web[@]}" --flatten='bindings[].members' \
    --filter='bindings.role=roles/iap.httpsResourceAccessor' --format='value(bindings.members)')
  for holder in $holders; do
    case " ${IAP_MEMBERS[*],,} " in
      *" ${holder,,} "*) ;;
      *) g beta iap web remove-iam-policy-binding "${iap_web[@]}" --member="$holder" --role=roles/iap.httpsResourceAccessor --all ;;
    esac
  done
fi

if $EDGE_KEY; then
  echo "== the edge's key: a new one into the Worker's secret, then the older ones deleted"
  # The key exists on disk only in a private temporary file, removed on every exit path; a
  # key created in GCP but not stored in the Worker is deleted again.
  KEY_FILE=
  NEW_KEY=
  KEY_STORED=false
  cleanup_key() {
    [ -z "$KEY_FILE" ] || rm -f "$KEY_FILE"
    if [ -n "$NEW_KEY" ] && ! $KEY_STORED; then
      gcloud --project="$PROJECT" --quiet iam service-accounts keys delete "$NEW_KEY" --iam-account="$EDGE_SA" >/dev/null 2>&1 ||
        echo "gcp.sh: could not delete the unused key $NEW_KEY of $EDGE_SA: delete it by hand" >&2
    fi
  }
  trap cleanup_key EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ -z "${WRANGLER:-}" ]; then
    # shellcheck source=scripts/tools.sh
    source scripts/tools.sh
    WRANGLER=wrangler
  fi
  if $DRY_RUN; then
    g iam service-accounts keys create "${TMPDIR:-/tmp}/lms-bridge-edge-key.XXXXXX" --iam-account="$EDGE_SA"
    printf '+ %s secret put GCP_SERVICE_ACCOUNT_KEY # stdin: the key file, then rm -f it\n' "$WRANGLER"
    g iam service-accounts keys list --iam-account="$EDGE_SA" --managed-by=user --format='value(name.basename())'
    g iam service-accounts keys delete OLDER_KEY_ID --iam-account="$EDGE_SA"
  else
    KEY_FILE=$(mktemp "${TMPDIR:-/tmp}/lms-bridge-edge-key.XXXXXX")
    g iam service-accounts keys create "$KEY_FILE" --iam-account="$EDGE_SA"
    NEW_KEY=$(sed -n 's/.*"private_key_id": *"\([^"]*\)".*/\1/p' "$KEY_FILE")
    [ -n "$NEW_KEY" ] || die "the new key file names no private_key_id"
    $WRANGLER secret put GCP_SERVICE_ACCOUNT_KEY <"$KEY_FILE"
    KEY_STORED=true
    rm -f "$KEY_FILE"
    keys=$(gout iam service-accounts keys list --iam-account="$EDGE_SA" --managed-by=user --format='value(name.basename())')
    for old in $keys; do
      [ "$old" = "$NEW_KEY" ] || g iam service-accounts keys delete "$old" --iam-account="$EDGE_SA"
    done
  fi
fi

cat <<NEXT

Backend: $URL (at most $MAX_INSTANCES instances, $PACE $LMS calls/s each)
Admin console: $ADMIN_URL (IAP access for ${#IAP_MEMBERS[@]}: operators $ADMIN_OPERATORS_LIST${ADMIN_VIEWERS_LIST:+; viewers $ADMIN_VIEWERS_LIST})
Now the edge (run from the repository, after \`source scripts/tools.sh\`):
  npx wrangler queues create lms-bridge-events
  npx wrangler queues create lms-bridge-events-dlq
  deploy/gcp.sh --edge-key    # $( $EDGE_KEY && echo "done: " )a key of $EDGE_SA into GCP_SERVICE_ACCOUNT_KEY
  npx wrangler secret put HOTMART_HOTTOK
  gcloud --project=$PROJECT secrets versions access latest --secret=$PEPPER_SECRET | npx wrangler secret put STUDENT_KEY_PEPPER
  npx wrangler deploy --var GCP_PROJECT:$PROJECT --var PUBSUB_TOPIC:$TOPIC
NEXT
