#!/usr/bin/env bash
# Pub/Sub for launch-supervisor: a topic, the daemon's subscription, and log sinks that route
# watchdog events, Cloud Run execution changes and Vertex AI CustomJob changes to the topic.
#
#   deploy/gcp/setup-events.sh --project P --job vertex-ai-launcher [--job other-launcher] \
#       [--topic launch-supervisor-events] [--subscription launch-supervisor] \
#       [--daemon-sa launch-supervisor@P.iam.gserviceaccount.com] [--dry-run]
#
# Re-running is safe: what exists is left as it is. --dry-run prints the gcloud commands only.
set -euo pipefail

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

run() {
    if [ "$dry_run" = 1 ]; then
        printf '%q ' "$@"; echo
    else
        "$@"
    fi
}
exists() { [ "$dry_run" = 0 ] && "$@" >/dev/null 2>&1; }

job_list=$(printf ' OR "%s"' "${jobs[@]}"); job_list="(${job_list# OR })"
destination="pubsub.googleapis.com/projects/$project/topics/$topic"

# Watchdog event lines (structured jsonPayload) from the launcher executions.
watchdog_filter="resource.type=\"cloud_run_job\" AND resource.labels.job_name=$job_list AND jsonPayload.event:\"watchdog.\""
# Execution lifecycle (started, completed, failed) as Cloud Run reports it.
executions_filter="resource.type=\"cloud_run_job\" AND resource.labels.job_name=$job_list AND logName:\"run.googleapis.com%2Fvarlog%2Fsystem\""
# Vertex AI CustomJob state changes.
vertex_filter="resource.type=\"ml_job\" OR (protoPayload.serviceName=\"aiplatform.googleapis.com\" AND protoPayload.methodName:\"CustomJob\")"

exists gcloud pubsub topics describe "$topic" --project "$project" || \
    run gcloud pubsub topics create "$topic" --project "$project"
exists gcloud pubsub subscriptions describe "$subscription" --project "$project" || \
    run gcloud pubsub subscriptions create "$subscription" --project "$project" --topic "$topic" \
        --ack-deadline 10 --message-retention-duration 1h --expiration-period never

for sink in watchdog executions vertex; do
    name="launch-supervisor-$sink"
    filter_var="${sink}_filter"
    if ! exists gcloud logging sinks describe "$name" --project "$project"; then
        run gcloud logging sinks create "$name" "$destination" --project "$project" --log-filter "${!filter_var}"
    fi
    if [ "$dry_run" = 1 ]; then
        writer="serviceAccount:WRITER-OF-$name"
    else
        writer=$(gcloud logging sinks describe "$name" --project "$project" --format 'value(writerIdentity)')
    fi
    run gcloud pubsub topics add-iam-policy-binding "$topic" --project "$project" \
        --member "$writer" --role roles/pubsub.publisher
done

if [ -n "$daemon_sa" ]; then
    run gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project "$project" \
        --member "serviceAccount:$daemon_sa" --role roles/pubsub.subscriber
fi
echo "config.toml: [pubsub] subscription = \"projects/$project/subscriptions/$subscription\""
echo "enqueuers:   launch-supervisor notify --topic projects/$project/topics/$topic --queue QUEUE"
