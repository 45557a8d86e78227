#!/usr/bin/env bash
# Creates (or brings up to date) the production lms-bridge on GCP: APIs, least-privilege
# service accounts, Firestore with its indexes and TTL, the LMS secret, the Cloud Run backend,
# the Pub/Sub topic + dead-letter topic + push subscription, and the sweep's scheduler job.
# Idempotent: what exists is left alone or updated. `--dry-run` prints every command and
# changes nothing.
#
#   PROJECT=my-project REGION=us-central1 TALENTLMS_URL=https://acme.talentlms.com \
#   TALENTLMS_API_KEY=... deploy/gcp.sh [--dry-run]
set -euo pipefail

DRY_RUN=false
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=true ;;
    *) echo "gcp.sh: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
  esac
done

: "${PROJECT:?set PROJECT to the GCP project id}"
: "${TALENTLMS_URL:?set TALENTLMS_URL, e.g. https://acme.talentlms.com}"
REGION=${REGION:-us-central1}
SERVICE=${SERVICE:-lms-bridge}
TOPIC=${TOPIC:-lms-bridge-events}
DEAD_LETTER_TOPIC=${DEAD_LETTER_TOPIC:-lms-bridge-dead-letters}
SUBSCRIPTION=${SUBSCRIPTION:-lms-bridge-push}
SECRET=${SECRET:-talentlms-api-key}
SCHEDULE=${SCHEDULE:-*/5 * * * *}
REPOSITORY=${REPOSITORY:-lms-bridge}
IMAGE="$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/lms-bridge:${IMAGE_TAG:-latest}"
# Pub/Sub waits this long for the push answer: the backend's 45 s budget plus margin.
ACK_DEADLINE=60
MAX_DELIVERY_ATTEMPTS=10

EDGE_SA="lms-bridge-edge@$PROJECT.iam.gserviceaccount.com"
PUSH_SA="lms-bridge-push@$PROJECT.iam.gserviceaccount.com"
RUN_SA="lms-bridge-run@$PROJECT.iam.gserviceaccount.com"

run() {
  if $DRY_RUN; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
# exists CMD...: true when the describe command succeeds (always false in a dry run, so the
# plan shows every create).
exists() { ! $DRY_RUN && "$@" >/dev/null 2>&1; }
g() { run gcloud --project="$PROJECT" --quiet "$@"; }
gq() { exists gcloud --project="$PROJECT" --quiet "$@"; }

echo "== APIs"
g services enable run.googleapis.com pubsub.googleapis.com firestore.googleapis.com \
  secretmanager.googleapis.com cloudscheduler.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com iam.googleapis.com

echo "== service accounts"
for sa in lms-bridge-edge:"edge: publishes to one topic" lms-bridge-push:"Pub/Sub push and scheduler: invokes the backend" lms-bridge-run:"backend runtime"; do
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

echo "== TalentLMS API key in Secret Manager"
gq secrets describe "$SECRET" || g secrets create "$SECRET" --replication-policy=automatic
if [ -n "${TALENTLMS_API_KEY:-}" ]; then
  if $DRY_RUN; then
    echo "+ printf %s \"\$TALENTLMS_API_KEY\" | gcloud --project=$PROJECT secrets versions add $SECRET --data-file=-"
  else
    printf %s "$TALENTLMS_API_KEY" | gcloud --project="$PROJECT" secrets versions add "$SECRET" --data-file=-
  fi
fi
g secrets add-iam-policy-binding "$SECRET" --member="serviceAccount:$RUN_SA" --role=roles/secretmanager.secretAccessor

echo "== backend image and Cloud Run service"
gq artifacts repositories describe "$REPOSITORY" --location="$REGION" ||
  g artifacts repositories create "$REPOSITORY" --location="$REGION" --repository-format=docker
g builds submit --config=deploy/cloudbuild.yaml --substitutions="_IMAGE=$IMAGE" .
g run deploy "$SERVICE" --image="$IMAGE" --region="$REGION" --service-account="$RUN_SA" \
  --no-allow-unauthenticated --timeout="${ACK_DEADLINE}s" --concurrency=20 --cpu=1 --memory=512Mi \
  --set-env-vars="GCP_PROJECT=$PROJECT,PUSH_AUTH=cloud-run,PUSH_SERVICE_ACCOUNT=$PUSH_SA,LMS=talentlms,TALENTLMS_URL=$TALENTLMS_URL" \
  --set-secrets="TALENTLMS_API_KEY=$SECRET:latest"
if $DRY_RUN; then
  URL="https://$SERVICE-PROJECTHASH-$REGION.a.run.app"
else
  URL=$(gcloud --project="$PROJECT" run services describe "$SERVICE" --region="$REGION" --format='value(status.url)')
fi
# Tokens must name the service URL as their audience; it is known only after the first deploy.
g run services update "$SERVICE" --region="$REGION" --update-env-vars="PUSH_AUDIENCE=$URL"
g run services add-iam-policy-binding "$SERVICE" --region="$REGION" --member="serviceAccount:$PUSH_SA" --role=roles/run.invoker

echo "== Pub/Sub"
if $DRY_RUN; then NUMBER=PROJECT_NUMBER; else NUMBER=$(gcloud projects describe "$PROJECT" --format='value(projectNumber)'); fi
PUBSUB_AGENT="service-$NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
for topic in "$TOPIC" "$DEAD_LETTER_TOPIC"; do
  gq pubsub topics describe "$topic" || g pubsub topics create "$topic"
done
# The edge may publish to the events topic and nothing else.
g pubsub topics add-iam-policy-binding "$TOPIC" --member="serviceAccount:$EDGE_SA" --role=roles/pubsub.publisher
# Pub/Sub itself moves undeliverable messages: it must publish to the dead-letter topic,
# subscribe to the source subscription, and mint the push OIDC token.
g pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher
g iam service-accounts add-iam-policy-binding "$PUSH_SA" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/iam.serviceAccountTokenCreator
push_flags=(--push-endpoint="$URL/pubsub/push" --push-auth-service-account="$PUSH_SA" --push-auth-token-audience="$URL"
  --ack-deadline="$ACK_DEADLINE" --min-retry-delay=10s --max-retry-delay=600s
  --dead-letter-topic="$DEAD_LETTER_TOPIC" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS")
if gq pubsub subscriptions describe "$SUBSCRIPTION"; then
  g pubsub subscriptions update "$SUBSCRIPTION" "${push_flags[@]}"
else
  g pubsub subscriptions create "$SUBSCRIPTION" --topic="$TOPIC" --enable-message-ordering "${push_flags[@]}"
fi
g pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber
gq pubsub subscriptions describe "$DEAD_LETTER_TOPIC" ||
  g pubsub subscriptions create "$DEAD_LETTER_TOPIC" --topic="$DEAD_LETTER_TOPIC" --message-retention-duration=7d

echo "== Cloud Scheduler: the sweep"
sweep_flags=(--location="$REGION" --schedule="$SCHEDULE" --uri="$URL/tasks/sweep" --http-method=POST
  --oidc-service-account-email="$PUSH_SA" --oidc-token-audience="$URL")
if gq scheduler jobs describe lms-bridge-sweep --location="$REGION"; then
  g scheduler jobs update http lms-bridge-sweep "${sweep_flags[@]}"
else
  g scheduler jobs create http lms-bridge-sweep "${sweep_flags[@]}"
fi

cat <<NEXT

Backend: $URL
Now the edge (run from the repository, after \`source scripts/tools.sh\`):
  gcloud --project=$PROJECT iam service-accounts keys create edge-key.json --iam-account=$EDGE_SA
  npx wrangler queues create lms-bridge-events
  npx wrangler queues create lms-bridge-events-dlq
  npx wrangler secret put GCP_SERVICE_ACCOUNT_KEY < edge-key.json && rm edge-key.json
  npx wrangler secret put HOTMART_HOTTOK
  npx wrangler deploy --var GCP_PROJECT:$PROJECT --var PUBSUB_TOPIC:$TOPIC
NEXT
