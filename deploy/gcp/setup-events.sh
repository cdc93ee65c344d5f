#!/usr/bin/env bash
# Pub/Sub for launch-supervisor: a topic, the daemon's subscription, and log sinks that route
# watchdog events, Cloud Run execution changes and Vertex AI CustomJob changes to the topic.
#
#   deploy/gcp/setup-events.sh --project P --job vertex-ai-launcher [--job other-launcher] \
#       [--topic launch-supervisor-events] [--subscription launch-supervisor] \
#       [--daemon-sa launch-supervisor@P.iam.gserviceaccount.com] [--dry-run]
#
# Re-running is safe: every step checks first and changes only what differs (a sink whose filter
# differs is updated). --dry-run prints the gcloud commands only. deploy/gcp/setup.sh runs this.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

project="" topic="launch-supervisor-events" subscription="launch-supervisor" daemon_sa="" dry_run=0
jobs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --project) project="$2"; shift 2 ;;
        --job) jobs+=("$2"); shift 2 ;;
        --topic) topic="$2"; shift 2 ;;
        --subscription) subscription="$2"; shift 2 ;;
        --daemon-sa) daemon_sa="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "setup-events.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$project" ] || [ ${#jobs[@]} -eq 0 ]; then
    echo "setup-events.sh: --project and at least one --job (the launcher Cloud Run job) are required" >&2
    exit 2
fi
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

job_list=$(printf ' OR "%s"' "${jobs[@]}"); job_list="(${job_list# OR })"
destination="pubsub.googleapis.com/projects/$project/topics/$topic"

declare -A filters
# Watchdog event lines (structured jsonPayload) from the launcher executions.
filters[watchdog]="resource.type=\"cloud_run_job\" AND resource.labels.job_name=$job_list AND jsonPayload.event:\"watchdog.\""
# Execution lifecycle (started, completed, failed) as Cloud Run reports it.
filters[executions]="resource.type=\"cloud_run_job\" AND resource.labels.job_name=$job_list AND logName:\"run.googleapis.com%2Fvarlog%2Fsystem\""
# Vertex AI CustomJob state changes.
filters[vertex]="resource.type=\"ml_job\" OR (protoPayload.serviceName=\"aiplatform.googleapis.com\" AND protoPayload.methodName:\"CustomJob\")"

exists gcloud pubsub topics describe "$topic" --project "$project" || \
    run gcloud pubsub topics create "$topic" --project "$project"
exists gcloud pubsub subscriptions describe "$subscription" --project "$project" || \
    run gcloud pubsub subscriptions create "$subscription" --project "$project" --topic "$topic" \
        --ack-deadline 10 --message-retention-duration 1h --expiration-period never

for sink in watchdog executions vertex; do
    name="launch-supervisor-$sink"
    filter="${filters[$sink]}"
    current=$(query gcloud logging sinks describe "$name" --project "$project" --format 'value(filter)')
    if [ -z "$current" ]; then
        run gcloud logging sinks create "$name" "$destination" --project "$project" --log-filter "$filter"
    elif [ "$current" != "$filter" ]; then
        run gcloud logging sinks update "$name" "$destination" --project "$project" --log-filter "$filter"
    fi
    if [ "$dry_run" = 1 ]; then
        writer="serviceAccount:WRITER-OF-$name"
    else
        writer=$(gcloud logging sinks describe "$name" --project "$project" --format 'value(writerIdentity)')
    fi
    ensure_binding roles/pubsub.publisher "$writer" "pubsub topics" "$topic" --project "$project"
done

if [ -n "$daemon_sa" ]; then
    ensure_binding roles/pubsub.subscriber "serviceAccount:$daemon_sa" "pubsub subscriptions" "$subscription" \
        --project "$project"
fi
echo "config.toml: [pubsub] subscription = \"projects/$project/subscriptions/$subscription\""
echo "enqueuers:   launch-supervisor notify --topic projects/$project/topics/$topic --queue QUEUE"
