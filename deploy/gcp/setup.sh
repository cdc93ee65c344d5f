#!/usr/bin/env bash
# launch-supervisor on a Google Cloud project, from empty: APIs, service accounts and custom roles,
# the W&B key in Secret Manager, the launcher image and Cloud Run job, Pub/Sub and log sinks
# (setup-events.sh), and the daemon's VM as a managed instance group of one that autoheals on /healthz.
#
#   deploy/gcp/setup.sh --project P --region R --config config.toml \
#       [--wandb-key-file FILE | --wandb-key-stdin] [--image IMAGE] [--package SPEC] \
#       [--bucket P-launch-supervisor] [--alertmanager-config FILE] [--zone ZONE (R-b)] \
#       [--job vertex-ai-launcher] [--training-sa EMAIL] [--vm launch-supervisor] [--network default] \
#       [--subnet SUBNET] [--with-nat] [--task-timeout 1800] [--initial-delay 300] [--dry-run] [--print-job]
#
# The launcher image (images/launcher) is built from this checkout by Cloud Build
# (images/launcher/cloudbuild.yaml, as the account launch-build) into the Artifact Registry
# repository `launch` in R, tagged with a hash of its inputs (images/launcher/inputs) and R: an image
# with that tag is not built again. --image IMAGE uses that image instead, from a registry the
# project can pull from. The daemon's wheel (deploy/gcp/build-wheel.sh) and the lock of its
# dependencies (deploy/vm/requirements.lock) go to the bucket (--bucket; uniform access, no public
# access), each under daemon/ named by its sha256; the VM's account may read the bucket, and
# launch-build the sources Cloud Build is given (source/), nothing more.
# The W&B key comes from a file or stdin, never from the command line; it is needed on the first
# run and whenever it changes. Every step checks first and changes only what differs, so a second
# run changes nothing. --dry-run prints the gcloud commands a run on an empty project would make
# (and the checks, as "# check:" lines on stderr) and queries nothing. --print-job prints the
# launcher job's spec as it would be applied, and exits.
#
# The VM: an instance template whose startup script (deploy/vm/startup.sh) runs deploy/vm/install.sh
# at every boot with this checkout's deploy files, --config (the daemon's config.toml), the wheel and
# lock in the bucket with their sha256 (installed with pip --require-hashes; or --package SPEC, a
# requirement pip installs as it is) and --alertmanager-config (default
# deploy/alertmanager/alertmanager.yml), all carried in the template's metadata, and the W&B key
# read from Secret Manager. The template's name ends in a hash of all that: new code, a new lock or
# config make a new template, and the group replaces its VM (the old one stops first: two daemons
# never run at once).
# Without --config the VM is left as it is. --network is the network of --subnet when both are given.
# --initial-delay is how long a new VM has to boot and install before its health check counts.
#
# The VM has no external IP: it needs Cloud NAT to reach W&B and PyPI, for the lock's packages
# (--with-nat creates a router and NAT for the region on --network), and reaches Google APIs through
# the NAT or Private Google Access; reach it with `gcloud compute ssh --tunnel-through-iap`
# (firewall: tcp:22 from 35.235.240.0/20).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

project="" region="" zone="" image="" job="vertex-ai-launcher" training_sa="" vm="launch-supervisor"
network="default" subnet="" with_nat=0 task_timeout=1800 key_file="" key_stdin=0 dry_run=0 print_job=0
config="" package="" alertmanager_config="$repo/deploy/alertmanager/alertmanager.yml" initial_delay=300
secret="wandb-api-key" bucket="" registry="launch"
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
        --config) config="$2"; shift 2 ;;
        --package) package="$2"; shift 2 ;;
        --bucket) bucket="$2"; shift 2 ;;
        --alertmanager-config) alertmanager_config="$2"; shift 2 ;;
        --initial-delay) initial_delay="$2"; shift 2 ;;
        --wandb-key-file) key_file="$2"; shift 2 ;;
        --wandb-key-stdin) key_stdin=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --print-job) print_job=1; shift ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$project" ] || [ -z "$region" ]; then
    echo "setup.sh: --project and --region are required" >&2
    exit 2
fi
case "$task_timeout$initial_delay" in
    *[!0-9]*) echo "setup.sh: --task-timeout and --initial-delay must be whole seconds" >&2; exit 2 ;;
esac
if [ -z "$task_timeout" ] || [ -z "$initial_delay" ]; then
    echo "setup.sh: --task-timeout and --initial-delay must be whole seconds" >&2
    exit 2
fi
if [ "$initial_delay" -lt 1 ]; then
    # gcloud sends no delay of 0 (it leaves the API's default), so 0 could never be read back.
    echo "setup.sh: --initial-delay must be at least 1 second" >&2
    exit 2
fi
for file in "$config" "$alertmanager_config"; do
    if [ -n "$file" ] && [ ! -f "$file" ]; then
        echo "setup.sh: no such file: $file" >&2
        exit 2
    fi
done
zone=${zone:-$region-b}
bucket=${bucket:-$project-launch-supervisor}
# Cloud Storage's rule for bucket names: 3 to 63 of a-z 0-9 - _ ., starting and ending with a letter or digit.
if ! [[ "$bucket" =~ ^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$ ]]; then
    echo "setup.sh: $bucket is not a bucket name (3 to 63 of a-z, 0-9, -, _ and .); name one with --bucket" >&2
    exit 2
fi
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sa_domain="$project.iam.gserviceaccount.com"
launcher_sa="launch-launcher@$sa_domain"
supervisor_sa="launch-supervisor@$sa_domain"
training_sa=${training_sa:-launch-training@$sa_domain}
build_sa="launch-build@$sa_domain"

# -- the launcher image: its tag, a hash of what it is made of ----------------------------------------
build_image=0
if [ -z "$image" ]; then
    build_image=1
    mapfile -t image_inputs < <(sed -e '/^#/d' -e '/^$/d' "$repo/images/launcher/inputs")
    tag=$(cd "$repo" && {
        find "${image_inputs[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
            xargs -0 sha256sum
        echo "VERTEX_REGION=$region"
    } | sha256sum | cut -c1-16)
    image="$region-docker.pkg.dev/$project/$registry/launcher:$tag"
fi

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

# -- the daemon's wheel and lock, named by their sha256 ----------------------------------------------
upload=0
if [ -n "$config" ] && [ -z "$package" ]; then
    upload=1
    wheel=$("$here/build-wheel.sh" "$work/dist")
    lock="$repo/deploy/vm/requirements.lock"
    wheel_sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    lock_sha=$(sha256sum "$lock" | cut -d' ' -f1)
    wheel_object="daemon/${wheel_sha:0:16}/$(basename "$wheel")"
    lock_object="daemon/${lock_sha:0:16}/$(basename "$lock")"
fi

# -- APIs ---------------------------------------------------------------------------------------------
apis=(run.googleapis.com aiplatform.googleapis.com pubsub.googleapis.com secretmanager.googleapis.com
    logging.googleapis.com compute.googleapis.com iam.googleapis.com cloudresourcemanager.googleapis.com)
if [ "$build_image" = 1 ]; then apis+=(artifactregistry.googleapis.com cloudbuild.googleapis.com); fi
if [ "$build_image$upload" != 00 ]; then apis+=(storage.googleapis.com); fi
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
if [ "$build_image" = 1 ]; then
    ensure_sa "$build_sa" "launch-supervisor image builds (Cloud Build)"
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
# job and run.jobs.runWithOverrides on the overrides), follows and cancels them, and reads the job's
# CPU and memory once (GetJob: what its executions cost); granted on the job only
# (roles/run.developer would also let it change the job).
ensure_role launchSupervisorDispatch "launch-supervisor dispatch" \
    run.jobs.get run.jobs.run run.jobs.runWithOverrides run.executions.get run.executions.list run.executions.cancel
# The daemon lists CustomJobs, and cancels those of failed items and of runs stopped in W&B
# (roles/aiplatform.viewer would let it read all of Vertex AI, and cancels nothing).
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

# -- the bucket: the daemon's wheel and lock for the VM, the sources for Cloud Build ------------------
# gcloud storage buckets describe shows these two fields as uniform_bucket_level_access (True) and
# public_access_prevention (enforced).
if [ "$build_image$upload" != 00 ]; then
    want="True"$'\t'"enforced"
    current=$(query gcloud storage buckets describe "gs://$bucket" --project "$project" \
        --format 'value(uniform_bucket_level_access,public_access_prevention)')
    if [ -z "$current" ]; then
        run gcloud storage buckets create "gs://$bucket" --project "$project" --location "$region" \
            --uniform-bucket-level-access --public-access-prevention
    elif [ "$current" != "$want" ]; then
        run gcloud storage buckets update "gs://$bucket" --project "$project" \
            --uniform-bucket-level-access --public-access-prevention
    fi
fi
if [ "$upload" = 1 ]; then
    ensure_binding roles/storage.objectViewer "serviceAccount:$supervisor_sa" "storage buckets" "gs://$bucket"
    # Named by their content: an object of that name is that file already.
    for upload_pair in "$wheel $wheel_object" "$lock $lock_object"; do
        read -r file object <<<"$upload_pair"
        exists gcloud storage objects describe "gs://$bucket/$object" --project "$project" || \
            run gcloud storage cp "$file" "gs://$bucket/$object" --project "$project"
    done
fi

# -- the launcher image, unless --image names one: Cloud Build, as launch-build ---------------------
# launch-build may push to the repository, write its build's log, and read the sources gcloud
# uploads to the bucket (source/), nothing else.
if [ "$build_image" = 1 ]; then
    exists gcloud artifacts repositories describe "$registry" --location "$region" --project "$project" || \
        run gcloud artifacts repositories create "$registry" --location "$region" --project "$project" \
            --repository-format docker --description "launch-supervisor's launcher image"
    build="serviceAccount:$build_sa"
    ensure_binding roles/artifactregistry.writer "$build" "artifacts repositories" "$registry" \
        --location "$region" --project "$project"
    ensure_binding roles/logging.logWriter "$build" projects "$project"
    ensure_binding roles/storage.objectViewer "$build" "storage buckets" "gs://$bucket"
    if ! exists gcloud artifacts docker images describe "$image" --project "$project"; then
        # A copy of the inputs alone: what is hashed is what is built, and nothing else is uploaded.
        src="$work/launcher-src"
        mkdir "$src"
        (cd "$repo" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - "${image_inputs[@]}") | tar -C "$src" -xf -
        run gcloud builds submit "$src" --project "$project" --config "$src/images/launcher/cloudbuild.yaml" \
            --substitutions "_IMAGE=$image,_VERTEX_REGION=$region" \
            --service-account "projects/$project/serviceAccounts/$build_sa" \
            --gcs-source-staging-dir "gs://$bucket/source"
    fi
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
# The VM's startup script reads the W&B key, and the Alertmanager secrets that exist
# (alertmanager-NAME for each /etc/prometheus/secrets/NAME the Alertmanager config names).
ensure_binding roles/secretmanager.secretAccessor "$supervisor" secrets "$secret" --project "$project"
while read -r name; do
    if exists gcloud secrets describe "alertmanager-$name" --project "$project"; then
        ensure_binding roles/secretmanager.secretAccessor "$supervisor" secrets "alertmanager-$name" --project "$project"
    fi
done < <(grep -o '/etc/prometheus/secrets/[A-Za-z0-9_-]*' "$alertmanager_config" | sed 's|.*/||' | sort -u)

# -- events: topic, subscription (the daemon subscribes), log sinks --------------------------------------
events=(--project "$project" --job "$job" --daemon-sa "$supervisor_sa")
if [ "$dry_run" = 1 ]; then events+=(--dry-run); fi
"$here/setup-events.sh" "${events[@]}"

# -- the daemon's VM: a managed instance group of one, recreated when /healthz fails ----------------------
if [ "$with_nat" = 1 ]; then
    router="launch-supervisor-router"
    exists gcloud compute routers describe "$router" --region "$region" --project "$project" || \
        run gcloud compute routers create "$router" --region "$region" --project "$project" --network "$network"
    exists gcloud compute routers nats describe launch-supervisor-nat --router "$router" --region "$region" \
        --project "$project" || \
        run gcloud compute routers nats create launch-supervisor-nat --router "$router" --region "$region" \
            --project "$project" --auto-allocate-nat-external-ips --nat-all-subnet-ip-ranges
fi

# The daemon serves /healthz on [http] listen (supervisor/config.py: 127.0.0.1:9464 by default). The
# health check probes the VM's own address, so the startup script has install.sh bind 0.0.0.0:9464.
# Only Google's health-check ranges reach that port through the rule below; mind broader rules on
# the network (the default network's default-allow-internal lets its other VMs read /metrics and
# /status too; POST /resume answers loopback only).
http_port=9464
tag="launch-supervisor"
health_check="launch-supervisor-healthz"
firewall="launch-supervisor-healthz"
probe_ranges="130.211.0.0/22,35.191.0.0/16"  # sorted, as read back: in whatever order Google keeps them
want="$probe_ranges"$'\t'"$tag"$'\t'"$http_port"
current=$(query gcloud compute firewall-rules describe "$firewall" --project "$project" \
    --format 'value(sourceRanges.sort().list(),targetTags.list(),allowed[0].ports.list())')
if [ -z "$current" ]; then
    run gcloud compute firewall-rules create "$firewall" --project "$project" --network "$network" \
        --direction INGRESS --action ALLOW --rules "tcp:$http_port" --source-ranges "$probe_ranges" \
        --target-tags "$tag" --description "Google health checks to launch-supervisor's /healthz"
elif [ "$current" != "$want" ]; then
    run gcloud compute firewall-rules update "$firewall" --project "$project" --rules "tcp:$http_port" \
        --source-ranges "$probe_ranges" --target-tags "$tag"
fi

# Every 30 s; unhealthy after 5 failures in a row (about 2.5 min). systemd's watchdog restarts a hung
# daemon within about 40 s of /healthz failing (deploy/systemd/launch-supervisor.service), so the group
# recreates the VM only when that did not bring it back: a daemon that cannot start, a hung VM.
hc_flags=(--port "$http_port" --request-path /healthz --check-interval 30s --timeout 10s
    --unhealthy-threshold 5 --healthy-threshold 2)
want="$http_port"$'\t'/healthz$'\t'30$'\t'10$'\t'5$'\t'2
current=$(query gcloud compute health-checks describe "$health_check" --project "$project" \
    --format 'value(httpHealthCheck.port,httpHealthCheck.requestPath,checkIntervalSec,timeoutSec,unhealthyThreshold,healthyThreshold)')
if [ -z "$current" ]; then
    run gcloud compute health-checks create http "$health_check" --project "$project" "${hc_flags[@]}"
elif [ "$current" != "$want" ]; then
    run gcloud compute health-checks update http "$health_check" --project "$project" "${hc_flags[@]}"
fi

if [ -z "$config" ]; then
    echo "setup.sh: no --config: the daemon's VM (group $vm) is left as it is" >&2
else
    # The template's metadata: the startup script and what it gives install.sh, as files.
    md="$work/metadata"
    mkdir "$md"
    cp "$repo/deploy/vm/startup.sh" "$md/startup-script"
    cp "$repo/deploy/vm/install.sh" "$md/launch-supervisor-install"
    cp "$repo/deploy/systemd/launch-supervisor.service" "$md/launch-supervisor-unit"
    cp "$repo/deploy/prometheus/prometheus.yml" "$md/launch-supervisor-prometheus"
    cp "$repo/deploy/prometheus/alerts.yml" "$md/launch-supervisor-alerts"
    cp "$alertmanager_config" "$md/launch-supervisor-alertmanager"
    cp "$config" "$md/launch-supervisor-config"
    if [ "$upload" = 1 ]; then
        printf 'gs://%s/%s %s' "$bucket" "$wheel_object" "$wheel_sha" >"$md/launch-supervisor-wheel"
        printf 'gs://%s/%s %s' "$bucket" "$lock_object" "$lock_sha" >"$md/launch-supervisor-lock"
    else
        printf '%s' "$package" >"$md/launch-supervisor-package"
    fi
    printf '%s' "$secret" >"$md/launch-supervisor-secret"
    printf '%s' "0.0.0.0:$http_port" >"$md/launch-supervisor-http-listen"
    from_file=""
    for file in "$md"/*; do from_file+="${from_file:+,}$(basename "$file")=$file"; done

    placement=(--network "$network")
    if [ -n "$subnet" ]; then placement=(--network "$network" --subnet "$subnet" --region "$region"); fi
    template_flags=(--machine-type e2-small --image-family debian-12 --image-project debian-cloud
        --boot-disk-size 10GB --boot-disk-type pd-balanced "${placement[@]}" --no-address --tags "$tag"
        --service-account "$supervisor_sa" --scopes cloud-platform
        --shielded-secure-boot --shielded-vtpm --shielded-integrity-monitoring
        --metadata enable-oslogin=TRUE)
    hash=$({ printf '%s\n' "${template_flags[@]}"; cd "$md" && sha256sum -- *; } | sha256sum | cut -c1-10)
    template="$vm-$hash"
    if [ "$upload" = 1 ]; then
        note "$template's VM installs at every boot, with pip --require-hashes --no-deps (deploy/vm/install.sh):" \
            "gs://$bucket/$wheel_object (sha256 $wheel_sha) and gs://$bucket/$lock_object (sha256 $lock_sha)"
    else
        note "$template's VM installs at every boot, with pip (deploy/vm/install.sh): $package"
    fi
    exists gcloud compute instance-templates describe "$template" --project "$project" || \
        run gcloud compute instance-templates create "$template" --project "$project" "${template_flags[@]}" \
            --metadata-from-file "$from_file"

    # The group: its template (the first version's, or the top-level one) and its autohealing policy.
    mig=$(query gcloud compute instance-groups managed describe "$vm" --zone "$zone" --project "$project" \
        --format 'value(versions[0].instanceTemplate.basename(),instanceTemplate.basename(),autoHealingPolicies[0].healthCheck.basename(),autoHealingPolicies[0].initialDelaySec)')
    mig_template=$(cut -f1 <<<"$mig")
    mig_template=${mig_template:-$(cut -sf2 <<<"$mig")}
    mig_check=$(cut -sf3 <<<"$mig")
    mig_delay=$(cut -sf4 <<<"$mig")
    if [ -z "$mig_template" ]; then
        # setup.sh once made a plain VM of this name; its daemon and the group's must not both run.
        if exists gcloud compute instances describe "$vm" --zone "$zone" --project "$project"; then
            echo "setup.sh: VM $vm is not in a managed instance group; delete it first, two daemons must not" \
                "watch the same queues: gcloud compute instances delete $vm --zone $zone --project $project" >&2
            exit 2
        fi
        run gcloud compute instance-groups managed create "$vm" --zone "$zone" --project "$project" \
            --base-instance-name "$vm" --size 1 --template "$template" \
            --health-check "$health_check" --initial-delay "$initial_delay"
    else
        if [ "$mig_check" != "$health_check" ] || [ "$mig_delay" != "$initial_delay" ]; then
            run gcloud compute instance-groups managed update "$vm" --zone "$zone" --project "$project" \
                --health-check "$health_check" --initial-delay "$initial_delay"
        fi
        if [ "$mig_template" != "$template" ]; then
            # Stop the old VM before its successor starts (--max-surge 0), keeping its name.
            run gcloud compute instance-groups managed rolling-action start-update "$vm" --zone "$zone" \
                --project "$project" --version "template=$template" --type proactive \
                --max-surge 0 --max-unavailable 1 --replacement-method recreate
        fi
    fi
fi

cat <<END
launcher image: $image
launcher job: projects/$project/locations/$region/jobs/$job  (queues[].launcher_job)
training service account: $training_sa  (the queue's resource_args.vertex.run.service_account)
the daemon's VM: group $vm in $zone  (gcloud compute instance-groups managed list-instances $vm --zone $zone --project $project)
END
