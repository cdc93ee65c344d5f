#!/usr/bin/env bash
# Pub/Sub for launch-supervisor: a topic, the daemon's subscription, and log sinks that route
# watchdog events, Cloud Run execution outcomes and Vertex AI CustomJob creations and cancels to the
# topic: state changes only, never training output or the daemon's own reads.
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
# Each sink delivers state changes, never output: no training lines (resource.type="ml_job"), and no
# reads (the daemon's own List/Get calls, in Data Access audit logs when those are on). The filters
# keep to the part of the Logging query language that tests/supervisor/model/logging_query.py
# evaluates against the fixtures the event parser is tested with.
#
# Watchdog event lines (structured jsonPayload) from the launcher executions.
filters[watchdog]="resource.type=\"cloud_run_job\" AND resource.labels.job_name=$job_list AND jsonPayload.event:\"watchdog.\""
# An execution's outcome: the end of its RunJob operation. Cloud Run's audit logging page
# (https://cloud.google.com/run/docs/audit-logging) lists Jobs.RunJob as a long-running operation,
# which writes one audit entry when it starts and one when it ends; the end entry has
# operation.last=true ("Audit logs for long-running operations" in Cloud Audit Logs). Public code
# and alerts match an execution's completion in the System Event audit log instead (methodName
# "/Jobs.RunJob", resourceName namespaces/P/executions/E), with no word on operation.last; Google
# documents neither shape fully, so both are taken. The start entry (Data Access, when those logs
# are on) is not: it says nothing the daemon does not know. If ends do not arrive, see
# docs/runbook.md (Data Access audit logs for Cloud Run).
filters[executions]="logName:\"cloudaudit.googleapis.com\" AND protoPayload.serviceName=\"run.googleapis.com\" AND protoPayload.methodName:\"Jobs.RunJob\" AND (operation.last=true OR logName:\"cloudaudit.googleapis.com%2Fsystem_event\") AND resource.labels.job_name=$job_list"
# CustomJobs created or cancelled: Admin Activity audit entries (always on; Vertex AI's audit logging
# page, https://cloud.google.com/vertex-ai/docs/general/audit-logging, lists customJobs.create and
# customJobs.cancel there). Google documents no log entry for a CustomJob's other state changes, so
# its end is found by the Vertex loop's polling.
filters[vertex]="logName:\"cloudaudit.googleapis.com%2Factivity\" AND protoPayload.serviceName=\"aiplatform.googleapis.com\" AND protoPayload.methodName=(\"google.cloud.aiplatform.v1.JobService.CreateCustomJob\" OR \"google.cloud.aiplatform.v1.JobService.CancelCustomJob\")"

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
