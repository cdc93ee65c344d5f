#!/usr/bin/env bash
# launch-supervisor on a Google Cloud project, from empty: APIs, service accounts and custom roles,
# the W&B key in Secret Manager, the launcher Cloud Run job, Pub/Sub and log sinks
# (setup-events.sh), and the daemon's VM.
#
#   deploy/gcp/setup.sh --project P --region R --image IMAGE \
#       [--wandb-key-file FILE | --wandb-key-stdin] [--zone ZONE (R-b)] [--job vertex-ai-launcher] \
#       [--training-sa EMAIL] [--vm launch-supervisor] [--network default] [--subnet SUBNET] \
#       [--with-nat] [--task-timeout 1800] [--dry-run] [--print-job]
#
# IMAGE is the launcher image (images/launcher), pushed to a registry the project can pull from.
# The W&B key comes from a file or stdin, never from the command line; it is needed on the first
# run and whenever it changes. Every step checks first and changes only what differs, so a second
# run changes nothing. --dry-run prints the gcloud commands a run on an empty project would make
# (and the checks, as "# check:" lines on stderr) and queries nothing. --print-job prints the
# launcher job's spec as it would be applied, and exits.
#
# The VM has no external IP: it needs Cloud NAT to reach W&B and PyPI (--with-nat creates a router
# and NAT for the region on --network) and reaches Google APIs through the NAT or Private Google
# Access; reach it with `gcloud compute ssh --tunnel-through-iap` (firewall: tcp:22 from
# 35.235.240.0/20).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

project="" region="" zone="" image="" job="vertex-ai-launcher" training_sa="" vm="launch-supervisor"
network="default" subnet="" with_nat=0 task_timeout=1800 key_file="" key_stdin=0 dry_run=0 print_job=0
secret="wandb-api-key"
while [ $# -gt 0 ]; do
    case "$1" in
        --project) project="$2"; shift 2 ;;
        --region) region="$2"; shift 2 ;;
        --zone) zone="$2"; shift 2 ;;
        --image) image="$2"; shift 2 ;;
        --job) job="$2"; shift 2 ;;
        --training-sa) training_sa="$2"; shift 2 ;;
        --vm) vm="$2"; shift 2 ;;
        --network) network="$2"; shift 2 ;;
        --subnet) subnet="$2"; shift 2 ;;
        --with-nat) with_nat=1; shift ;;
        --task-timeout) task_timeout="$2"; shift 2 ;;
        --wandb-key-file) key_file="$2"; shift 2 ;;
        --wandb-key-stdin) key_stdin=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --print-job) print_job=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$project" ] || [ -z "$region" ] || [ -z "$image" ]; then
    echo "setup.sh: --project, --region and --image (the launcher image) are required" >&2
    exit 2
fi
case "$task_timeout" in ''|*[!0-9]*) echo "setup.sh: --task-timeout must be whole seconds" >&2; exit 2 ;; esac
zone=${zone:-$region-b}
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sa_domain="$project.iam.gserviceaccount.com"
launcher_sa="launch-launcher@$sa_domain"
supervisor_sa="launch-supervisor@$sa_domain"
training_sa=${training_sa:-launch-training@$sa_domain}

# -- the launcher job's spec ------------------------------------------------------------------------
render_job() {
    sed -e "s|@JOB@|$job|g" -e "s|@REGION@|$region|g" -e "s|@IMAGE@|$image|g" \
        -e "s|@LAUNCHER_SA@|$launcher_sa|g" -e "s|@SECRET@|$secret|g" \
        -e "s|@TASK_TIMEOUT@|$task_timeout|g" "$here/launcher-job.yaml"
}
render_job >"$work/job.yaml"
spec_sha=$(sha256sum "$work/job.yaml" | cut -c1-40)
sed -i "s|@SPEC_SHA@|$spec_sha|" "$work/job.yaml"
if [ "$print_job" = 1 ]; then
    cat "$work/job.yaml"
    exit 0
fi

# -- the W&B key: read once, kept in a private temporary file -------------------------------------
key=""
if [ -n "$key_file" ] || [ "$key_stdin" = 1 ]; then
    key="$work/wandb-key"
    (umask 077; if [ "$key_stdin" = 1 ]; then cat; else cat -- "$key_file"; fi | tr -d '\r\n' >"$key")
    if [ ! -s "$key" ]; then
        echo "setup.sh: the W&B key is empty" >&2
        exit 2
    fi
fi

# -- APIs ---------------------------------------------------------------------------------------------
apis=(run.googleapis.com aiplatform.googleapis.com pubsub.googleapis.com secretmanager.googleapis.com
    logging.googleapis.com compute.googleapis.com iam.googleapis.com cloudresourcemanager.googleapis.com)
enabled=$(query gcloud services list --enabled --project "$project" --format 'value(config.name)')
missing=()
for api in "${apis[@]}"; do
    grep -qxF "$api" <<<"$enabled" || missing+=("$api")
done
if [ ${#missing[@]} -gt 0 ]; then
    run gcloud services enable "${missing[@]}" --project "$project"
fi

# -- service accounts ----------------------------------------------------------------------------------
ensure_sa() {  # ensure_sa EMAIL DISPLAY-NAME
    exists gcloud iam service-accounts describe "$1" --project "$project" || \
        run gcloud iam service-accounts create "${1%%@*}" --project "$project" --display-name "$2"
}
ensure_sa "$launcher_sa" "launch-supervisor launcher (Cloud Run job)"
ensure_sa "$supervisor_sa" "launch-supervisor daemon (VM)"
if [ "$training_sa" = "launch-training@$sa_domain" ]; then
    ensure_sa "$training_sa" "Vertex AI training jobs launched from W&B"
fi

# -- custom roles: exactly the permissions each program uses ------------------------------------------
# ensure_role ID TITLE PERMISSION…: create the project role, or set its permissions where they differ.
ensure_role() {
    local id="$1" title="$2" current want
    shift 2
    want=$(printf '%s\n' "$@" | sort | paste -sd, -)
    current=$(query gcloud iam roles describe "$id" --project "$project" --format 'value(includedPermissions)')
    current=$(tr ';,' '\n' <<<"$current" | sed '/^$/d' | sort | paste -sd, -)
    if [ -z "$current" ]; then
        run gcloud iam roles create "$id" --project "$project" --title "$title" --stage GA --permissions "$want"
    elif [ "$current" != "$want" ]; then
        run gcloud iam roles update "$id" --project "$project" --permissions "$want"
    fi
}
# The launcher's agent creates CustomJobs and reads them back while it waits for creation
# (roles/aiplatform.user would grant all of Vertex AI).
ensure_role launchSupervisorLauncher "launch-supervisor launcher" \
    aiplatform.customJobs.create aiplatform.customJobs.get
# The daemon starts executions of the launcher job with overrides (RunJob checks run.jobs.run on the
# job and run.jobs.runWithOverrides on the overrides), follows and cancels them; granted on the job
# only (roles/run.developer would also let it change the job).
ensure_role launchSupervisorDispatch "launch-supervisor dispatch" \
    run.jobs.run run.jobs.runWithOverrides run.executions.get run.executions.list run.executions.cancel
# The daemon lists CustomJobs and cancels those of failed items (roles/aiplatform.viewer would let
# it read all of Vertex AI, and cancels nothing).
ensure_role launchSupervisorVertex "launch-supervisor Vertex AI" \
    aiplatform.customJobs.list aiplatform.customJobs.cancel

# -- the W&B key in Secret Manager ------------------------------------------------------------------
exists gcloud secrets describe "$secret" --project "$project" || \
    run gcloud secrets create "$secret" --project "$project" --replication-policy automatic
if [ -n "$key" ]; then
    query gcloud secrets versions access latest --secret "$secret" --project "$project" >"$work/current-key"
    if ! cmp -s "$work/current-key" "$key"; then
        run_quietly gcloud secrets versions add "$secret" --project "$project" --data-file "$key"
    fi
elif [ "$dry_run" = 0 ] && ! exists gcloud secrets versions describe latest --secret "$secret" --project "$project"; then
    echo "setup.sh: secret $secret has no version yet: pass the W&B key with --wandb-key-file or --wandb-key-stdin" >&2
    exit 2
fi

# -- the launcher Cloud Run job ----------------------------------------------------------------------
current_sha=$(query gcloud run jobs describe "$job" --region "$region" --project "$project" \
    --format 'value(metadata.labels.spec_sha)')
secret_bound=0
if [ "$current_sha" != "$spec_sha" ]; then
    # The job's service account must be able to read the key before the job refers to it.
    secret_bound=1
    ensure_binding roles/secretmanager.secretAccessor "serviceAccount:$launcher_sa" "secrets" "$secret" \
        --project "$project"
    run_quietly gcloud run jobs replace "$work/job.yaml" --region "$region" --project "$project"
fi

# -- bindings -------------------------------------------------------------------------------------------
launcher="serviceAccount:$launcher_sa"
supervisor="serviceAccount:$supervisor_sa"
ensure_binding "projects/$project/roles/launchSupervisorLauncher" "$launcher" projects "$project"
ensure_binding roles/logging.logWriter "$launcher" projects "$project"
ensure_binding roles/iam.serviceAccountUser "$launcher" "iam service-accounts" "$training_sa" --project "$project"
if [ "$secret_bound" = 0 ]; then
    ensure_binding roles/secretmanager.secretAccessor "$launcher" secrets "$secret" --project "$project"
fi
ensure_binding "projects/$project/roles/launchSupervisorDispatch" "$supervisor" "run jobs" "$job" \
    --region "$region" --project "$project"
ensure_binding "projects/$project/roles/launchSupervisorVertex" "$supervisor" projects "$project"

# -- events: topic, subscription (the daemon subscribes), log sinks --------------------------------------
events=(--project "$project" --job "$job" --daemon-sa "$supervisor_sa")
if [ "$dry_run" = 1 ]; then events+=(--dry-run); fi
"$here/setup-events.sh" "${events[@]}"

# -- the daemon's VM -------------------------------------------------------------------------------------
if [ "$with_nat" = 1 ]; then
    router="launch-supervisor-router"
    exists gcloud compute routers describe "$router" --region "$region" --project "$project" || \
        run gcloud compute routers create "$router" --region "$region" --project "$project" --network "$network"
    exists gcloud compute routers nats describe launch-supervisor-nat --router "$router" --region "$region" \
        --project "$project" || \
        run gcloud compute routers nats create launch-supervisor-nat --router "$router" --region "$region" \
            --project "$project" --auto-allocate-nat-external-ips --nat-all-subnet-ip-ranges
fi
vm_sa=$(query gcloud compute instances describe "$vm" --zone "$zone" --project "$project" \
    --format 'value(serviceAccounts[0].email)')
if [ -z "$vm_sa" ] && ! exists gcloud compute instances describe "$vm" --zone "$zone" --project "$project"; then
    placement=(--network "$network")
    if [ -n "$subnet" ]; then placement=(--subnet "$subnet"); fi
    run gcloud compute instances create "$vm" --zone "$zone" --project "$project" \
        --machine-type e2-small --image-family debian-12 --image-project debian-cloud \
        --boot-disk-size 10GB "${placement[@]}" --no-address \
        --service-account "$supervisor_sa" --scopes cloud-platform \
        --shielded-secure-boot --shielded-vtpm --shielded-integrity-monitoring \
        --metadata enable-oslogin=TRUE
elif [ "$vm_sa" != "$supervisor_sa" ]; then
    # Changing it means stopping the VM: say so, do not do it behind the operator's back.
    echo "setup.sh: VM $vm runs as ${vm_sa:-no service account}, not $supervisor_sa; left as it is" >&2
fi

cat <<END
launcher job: projects/$project/locations/$region/jobs/$job  (queues[].launcher_job)
training service account: $training_sa  (the queue's resource_args.vertex.run.service_account)
next, on the VM:  deploy/vm/install.sh --config config.toml --wandb-key-stdin  (README: Deploy from an empty project)
END
