#!/usr/bin/env bash
# The startup script of launch-supervisor's VM. deploy/gcp/setup.sh puts it in the instance template
# of the managed instance group (metadata startup-script), with the files it needs beside it in the
# instance metadata, and the guest agent runs it as root at every boot. It lays those files out as
# they are in the repository, reads the W&B key from Secret Manager, and runs deploy/vm/install.sh
# --with-prometheus, which changes only what differs: a reboot changes nothing, and a VM the group
# has recreated (autohealing, or a new template) is installed from scratch. Should it fail, the
# daemon stays down, /healthz does not answer, and the group recreates the VM once the health check
# gives up on it.
#
#   metadata key                     value
#   launch-supervisor-install        deploy/vm/install.sh
#   launch-supervisor-unit           deploy/systemd/launch-supervisor.service
#   launch-supervisor-prometheus     deploy/prometheus/prometheus.yml
#   launch-supervisor-alerts         deploy/prometheus/alerts.yml
#   launch-supervisor-alertmanager   deploy/alertmanager/alertmanager.yml, or setup.sh --alertmanager-config
#   launch-supervisor-config         the daemon's config.toml
#   launch-supervisor-wheel          gs://BUCKET/OBJECT SHA256: the daemon's wheel (install.sh --wheel)
#   launch-supervisor-lock           gs://BUCKET/OBJECT SHA256: deploy/vm/requirements.lock (install.sh --lock)
#   launch-supervisor-package        instead of those two, what pip installs (install.sh --package)
#   launch-supervisor-secret         the secret holding the W&B key (wandb-api-key)
#   launch-supervisor-http-listen    install.sh --http-listen: where the health check finds /healthz
#
# The wheel and the lock are read from Cloud Storage as the VM's service account, and must have the
# sha256 the template names, or nothing is installed.
#
# Each file /etc/prometheus/secrets/NAME that the Alertmanager config names is written from the
# secret alertmanager-NAME, when there is one the VM's service account may read.
#
#   startup.sh [--root DIR]      (--root: as install.sh's, for tests with stubs)
set -euo pipefail

root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2%/}"; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "startup.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

metadata="http://metadata.google.internal/computeMetadata/v1"
secretmanager="https://secretmanager.googleapis.com/v1"
storage="https://storage.googleapis.com/storage/v1"
deploy="$root/var/lib/launch-supervisor-deploy"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# get URL [CURL-OPTION…]: the body; retried while the network comes up, not on 4xx answers.
get() {
    local url="$1"
    shift
    curl --silent --show-error --fail --retry 10 --retry-connrefused --retry-delay 3 "$@" "$url"
}
from_metadata() { get "$metadata/$1" -H 'Metadata-Flavor: Google'; }
attribute() { from_metadata "instance/attributes/$1"; }

# -- the files install.sh reads, where it expects them relative to itself --------------------------
while read -r key path; do
    mkdir -p "$(dirname "$deploy/$path")"
    attribute "$key" >"$work/file"
    cmp -s "$work/file" "$deploy/$path" || install -m 0644 "$work/file" "$deploy/$path"
done <<'END'
launch-supervisor-install deploy/vm/install.sh
launch-supervisor-unit deploy/systemd/launch-supervisor.service
launch-supervisor-prometheus deploy/prometheus/prometheus.yml
launch-supervisor-alerts deploy/prometheus/alerts.yml
launch-supervisor-alertmanager deploy/alertmanager/alertmanager.yml
END
attribute launch-supervisor-config >"$work/config.toml"
# The daemon's wheel and lock as "gs://BUCKET/OBJECT SHA256" each, or else a package to install.
wheel_ref=$(attribute launch-supervisor-wheel 2>/dev/null) || wheel_ref=""
if [ -n "$wheel_ref" ]; then
    lock_ref=$(attribute launch-supervisor-lock)
else
    package=$(attribute launch-supervisor-package)
fi
listen=$(attribute launch-supervisor-http-listen)
key_secret=$(attribute launch-supervisor-secret)

# -- secrets: an access token of the VM's service account, sent from a file, never in an argument ------
project=$(from_metadata project/project-id)
token=$(from_metadata instance/service-accounts/default/token | tr -d ' \n' |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
if [ -z "$token" ]; then
    echo "startup.sh: no access token from the metadata server" >&2
    exit 1
fi
(umask 077; printf 'Authorization: Bearer %s\n' "$token" >"$work/auth")

# secret NAME FILE: the latest version of secret NAME into FILE; false when it cannot be read.
secret() {
    local json data
    json=$(get "$secretmanager/projects/$project/secrets/$1/versions/latest:access" -H "@$work/auth") || return 1
    data=$(tr -d ' \n' <<<"$json" | sed -n 's/.*"data":"\([^"]*\)".*/\1/p')
    [ -n "$data" ] || return 1
    (umask 077; base64 -d <<<"$data" >"$2")
}

if ! secret "$key_secret" "$work/wandb-key"; then
    echo "startup.sh: cannot read secret $key_secret (the W&B key) as this VM's service account" >&2
    exit 1
fi

# fetch "gs://BUCKET/OBJECT SHA256": the object into $work/packages under its own name, checked
# against SHA256; prints its path. Object names are setup.sh's: only their slashes need escaping.
fetch() {
    local url sha bucket object file
    read -r url sha <<<"$1"
    bucket=${url#gs://}; bucket=${bucket%%/*}
    object=${url#gs://"$bucket"/}
    file="$work/packages/$(basename "$object")"
    mkdir -p "$work/packages"
    if ! get "$storage/b/$bucket/o/${object//\//%2F}?alt=media" -H "@$work/auth" >"$file"; then
        echo "startup.sh: cannot read $url as this VM's service account" >&2
        return 1
    fi
    if [ "$(sha256sum "$file" | cut -d' ' -f1)" != "$sha" ]; then
        echo "startup.sh: $url is not the file this VM's template names (sha256 $sha); run deploy/gcp/setup.sh again" >&2
        return 1
    fi
    echo "$file"
}

# -- the daemon, Prometheus and Alertmanager ----------------------------------------------------------
install_args=(--config "$work/config.toml" --wandb-key-file "$work/wandb-key" --with-prometheus
    --http-listen "$listen")
if [ -n "$wheel_ref" ]; then
    wheel=$(fetch "$wheel_ref")
    lock=$(fetch "$lock_ref")
    install_args+=(--wheel "$wheel" --lock "$lock")
else
    install_args+=(--package "$package")
fi
if [ -n "$root" ]; then install_args+=(--root "$root"); fi
bash "$deploy/deploy/vm/install.sh" "${install_args[@]}"

# -- Alertmanager's secrets ------------------------------------------------------------------------------
grep -o '/etc/prometheus/secrets/[A-Za-z0-9_-]*' "$deploy/deploy/alertmanager/alertmanager.yml" |
    sed 's|.*/||' | sort -u >"$work/alertmanager-secrets" || true
restart=0
while read -r name; do
    if ! secret "alertmanager-$name" "$work/$name" 2>/dev/null; then
        echo "startup.sh: no readable secret alertmanager-$name; /etc/prometheus/secrets/$name left as it is"
        continue
    fi
    dest="$root/etc/prometheus/secrets/$name"
    if [ -f "$dest" ] && cmp -s "$work/$name" "$dest"; then
        continue
    fi
    install -m 0640 "$work/$name" "$dest"
    chown root:prometheus "$dest"
    echo "startup.sh: wrote /etc/prometheus/secrets/$name"
    restart=1
done <"$work/alertmanager-secrets"
if [ "$restart" = 1 ]; then
    systemctl restart prometheus-alertmanager
fi
echo "startup.sh: done"
