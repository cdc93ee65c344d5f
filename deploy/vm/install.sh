#!/usr/bin/env bash
# launch-supervisor on a Debian or Ubuntu VM: a system user, a venv under /opt/launch-supervisor, the
# config under /etc/launch-supervisor, the W&B key as a systemd credential, and the unit
# (deploy/systemd/launch-supervisor.service); with --with-prometheus, Prometheus and Alertmanager
# with the shipped rules (deploy/prometheus, deploy/alertmanager), listening on 127.0.0.1 only.
#
#   sudo deploy/vm/install.sh --config config.toml (--wandb-key-file FILE | --wandb-key-stdin) \
#       [--wheel WHEEL --lock LOCK | --package 'launch-supervisor[daemon]'] [--upgrade] \
#       [--with-prometheus] [--http-listen HOST:PORT] [--no-start] [--root DIR]
#
# Run it from a checkout of the repository (it installs the files beside it). --config and the key
# are needed on the first run; later runs keep what is installed unless given new ones. Re-running
# changes only what differs, and restarts the daemon only when something of it changed.
# The key goes where the unit's LoadCredential= reads it (a drop-in adds one to a unit without).
# --wheel and --lock install exactly the daemon's wheel and the packages of the lock
# (deploy/vm/requirements.lock), each checked against its sha256 (pip --require-hashes --no-deps): a
# file whose hash differs stops the install before anything is installed. They are installed again
# when either changes. Without them, --package is what pip installs (a wheel, a directory, or a
# requirement; default from PyPI), unchecked; --upgrade installs it again even when
# launch-supervisor is already in the venv.
# --http-listen sets [http] listen for the service in a drop-in (LAUNCH_SUPERVISOR_HTTP__LISTEN,
# over the config file); 0.0.0.0:9464 lets Compute Engine's health checks reach /healthz and keeps
# 127.0.0.1:9464 working for Prometheus and `launch-supervisor status`. Later runs without it keep it.
# --root DIR writes every file under DIR instead of / (for tests and images); the commands it runs
# (apt-get, useradd, systemctl, pip, chown) still act on this machine, so use it with stubs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

root="" config="" key_file="" key_stdin=0 package="launch-supervisor[daemon]" upgrade=0 prometheus=0 start=1
http_listen="" wheel="" lock=""
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config="$2"; shift 2 ;;
        --wandb-key-file) key_file="$2"; shift 2 ;;
        --wandb-key-stdin) key_stdin=1; shift ;;
        --package) package="$2"; shift 2 ;;
        --wheel) wheel="$2"; shift 2 ;;
        --lock) lock="$2"; shift 2 ;;
        --upgrade) upgrade=1; shift ;;
        --with-prometheus) prometheus=1; shift ;;
        --http-listen) http_listen="$2"; shift 2 ;;
        --no-start) start=0; shift ;;
        --root) root="${2%/}"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$http_listen" in
    ''|?*:[0-9]*) ;;
    *) echo "install.sh: --http-listen must be HOST:PORT, such as 0.0.0.0:9464" >&2; exit 2 ;;
esac
if [ -n "$wheel$lock" ]; then
    if [ -z "$wheel" ] || [ -z "$lock" ]; then
        echo "install.sh: --wheel and --lock go together (the daemon's wheel and deploy/vm/requirements.lock)" >&2
        exit 2
    fi
    for file in "$wheel" "$lock"; do
        if [ ! -f "$file" ]; then
            echo "install.sh: no such file: $file" >&2
            exit 2
        fi
    done
    case "$wheel" in
        *.whl) ;;
        *) echo "install.sh: --wheel $wheel is not a wheel (launch_supervisor-VERSION-py3-none-any.whl)" >&2; exit 2 ;;
    esac
fi
python=${PYTHON:-python3}

# What the unit expects, read from it: its user and group, the venv its ExecStart runs, its config.
unit_src="$repo/deploy/systemd/launch-supervisor.service"
unit=$(basename "$unit_src")
unit_value() { sed -n "s/^$1=//p" "$unit_src" | tail -n 1; }
user=$(unit_value User)
group=$(unit_value Group)
exec_start=$(unit_value ExecStart)
venv=${exec_start%% *}; venv=${venv%/bin/*}                      # /opt/launch-supervisor
config_path=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$exec_start")  # /etc/launch-supervisor/config.toml
etc=$(dirname "$config_path")
# The unit's LoadCredential=ID:PATH names where the key goes (its Environment= points
# wandb.api_key_file at %d/ID); a unit without one gets it from a drop-in, below.
credential=$(unit_value LoadCredential)
if [ -n "$credential" ]; then
    key_path=${credential#*:}
else
    key_path="$etc/credentials/wandb-key"
fi
if [ -z "$user" ] || [ -z "$group" ] || [ -z "$config_path" ]; then
    echo "install.sh: cannot read User=, Group= and ExecStart=… --config from $unit_src" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
changed=0   # something the daemon reads changed: restart it

# fix MODE OWNER PATH: set mode and owner where they differ.
fix() {
    [ "$(stat -c %a "$3")" = "${1#0}" ] || chmod "$1" "$3"
    [ "$(stat -c %U:%G "$3")" = "$2" ] || chown "$2" "$3"
}
# put SRC DEST MODE OWNER: install SRC at DEST (under the root) unless it is there already;
# true when it wrote the file.
put() {
    local dest="$root$2"
    if [ -f "$dest" ] && cmp -s "$1" "$dest"; then
        fix "$3" "$4" "$dest"
        return 1
    fi
    install -D -m "$3" "$1" "$dest"
    chown "$4" "$dest"
    echo "install.sh: wrote $2"
}
# directory DIR MODE OWNER
directory() {
    [ -d "$root$1" ] || install -d -m "$2" "$root$1"
    fix "$2" "$3" "$root$1"
}
installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# -- packages ------------------------------------------------------------------------------------------
packages=(python3-venv)
if [ "$prometheus" = 1 ]; then packages+=(prometheus prometheus-alertmanager); fi
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# -- the system user -----------------------------------------------------------------------------------
if ! getent group "$group" >/dev/null; then
    groupadd --system "$group"
fi
if ! getent passwd "$user" >/dev/null; then
    useradd --system --gid "$group" --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$user"
fi

# -- the venv --------------------------------------------------------------------------------------------
if [ ! -x "$root$venv/bin/python" ]; then
    "$python" -m venv "$root$venv"
fi
if [ -n "$wheel" ]; then
    # The lock and the wheel as one requirements file, every line with its hash; --no-deps: nothing
    # outside it is installed. pip checks every hash before it installs anything. What is installed
    # is kept beside the venv, so an unchanged pair is not installed again.
    wheel_sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    { cat -- "$lock"; echo; printf '%s --hash=sha256:%s\n' "$(realpath -- "$wheel")" "$wheel_sha"; } \
        >"$work/requirements.txt"
    pair=$(printf '%s %s\n' "$(basename "$wheel")" "$wheel_sha"; sha256sum <"$lock" | cut -d' ' -f1)
    stamp="$root$venv/launch-supervisor.installed"
    if [ "$upgrade" = 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pair" ]; then
        if ! "$root$venv/bin/pip" install --quiet --require-hashes --no-deps -r "$work/requirements.txt"; then
            echo "install.sh: pip installed nothing: $wheel or a package of $lock is not what its hash says" \
                "(above), or the lock is not for this Python; build both again (deploy/gcp/setup.sh) or" \
                "refresh the lock (docs/deploying.md, Refresh the lock)" >&2
            exit 1
        fi
        printf '%s\n' "$pair" >"$stamp"
        changed=1
    fi
elif [ "$upgrade" = 1 ] || ! "$root$venv/bin/pip" show launch-supervisor >/dev/null 2>&1; then
    "$root$venv/bin/pip" install --quiet --upgrade "$package"
    changed=1
fi

# -- config and key ---------------------------------------------------------------------------------------
directory "$etc" 0750 "root:$group"
if [ -n "$config" ]; then
    put "$config" "$config_path" 0640 "root:$group" && changed=1
elif [ ! -f "$root$config_path" ]; then
    echo "install.sh: no $config_path yet: pass --config FILE (docs/configuration.md)" >&2
    exit 2
else
    fix 0640 "root:$group" "$root$config_path"
fi

# The key is a systemd credential: root's file, which systemd hands to the service in its own
# credentials directory ($CREDENTIALS_DIRECTORY, %d), readable by the service's user only.
key_dir=$(dirname "$key_path")
if [ "$key_dir" != "$etc" ]; then directory "$key_dir" 0700 root:root; fi
if [ -n "$key_file" ] || [ "$key_stdin" = 1 ]; then
    (umask 077; if [ "$key_stdin" = 1 ]; then cat; else cat -- "$key_file"; fi | tr -d '\r\n' >"$work/key")
    if [ ! -s "$work/key" ]; then
        echo "install.sh: the W&B key is empty" >&2
        exit 2
    fi
    put "$work/key" "$key_path" 0600 root:root && changed=1
elif [ ! -f "$root$key_path" ]; then
    echo "install.sh: no W&B key yet: pass --wandb-key-file FILE or --wandb-key-stdin" >&2
    exit 2
else
    fix 0600 root:root "$root$key_path"
fi

# -- the unit and its drop-in ---------------------------------------------------------------------------
units_changed=0
put "$unit_src" "/etc/systemd/system/$unit" 0644 root:root && units_changed=1
dropins="/etc/systemd/system/$unit.d"
directory "$dropins" 0755 root:root
if [ -z "$credential" ]; then
    printf '%s\n' "# Written by deploy/vm/install.sh: the W&B key as a systemd credential." "[Service]" \
        "LoadCredential=wandb-key:$key_path" "Environment=LAUNCH_SUPERVISOR_WANDB__API_KEY_FILE=%d/wandb-key" \
        >"$work/dropin"
    put "$work/dropin" "$dropins/wandb-key.conf" 0644 root:root && units_changed=1
elif [ -f "$root$dropins/wandb-key.conf" ]; then
    # Written by an earlier install.sh for a unit that had no credential of its own.
    rm -f "$root$dropins/wandb-key.conf"
    echo "install.sh: removed $dropins/wandb-key.conf (the unit loads the key itself)"
    units_changed=1
fi
if [ -n "$http_listen" ]; then
    printf '%s\n' "# Written by deploy/vm/install.sh --http-listen: [http] listen, over the config file." "[Service]" \
        "Environment=LAUNCH_SUPERVISOR_HTTP__LISTEN=$http_listen" >"$work/http-listen"
    put "$work/http-listen" "$dropins/http-listen.conf" 0644 root:root && units_changed=1
fi

# -- Prometheus and Alertmanager ---------------------------------------------------------------------------
restart=()
if [ "$prometheus" = 1 ]; then
    prom_changed=0 am_changed=0
    put "$repo/deploy/prometheus/prometheus.yml" /etc/prometheus/prometheus.yml 0644 root:root && prom_changed=1
    put "$repo/deploy/prometheus/alerts.yml" /etc/prometheus/alerts.yml 0644 root:root && prom_changed=1
    echo 'ARGS="--web.listen-address=127.0.0.1:9090"' >"$work/prometheus.default"
    put "$work/prometheus.default" /etc/default/prometheus 0644 root:root && prom_changed=1
    put "$repo/deploy/alertmanager/alertmanager.yml" /etc/prometheus/alertmanager.yml 0640 root:prometheus && am_changed=1
    directory /etc/prometheus/secrets 0750 root:prometheus
    echo 'ARGS="--web.listen-address=127.0.0.1:9093 --cluster.listen-address="' >"$work/alertmanager.default"
    put "$work/alertmanager.default" /etc/default/prometheus-alertmanager 0644 root:root && am_changed=1
    for service in prometheus prometheus-alertmanager; do
        systemctl is-enabled --quiet "$service" || systemctl enable --quiet "$service"
    done
    if [ "$prom_changed" = 1 ]; then restart+=(prometheus); fi
    if [ "$am_changed" = 1 ]; then restart+=(prometheus-alertmanager); fi
fi

# -- systemd -------------------------------------------------------------------------------------------------
if [ "$units_changed" = 1 ]; then
    systemctl daemon-reload
    changed=1
fi
systemctl is-enabled --quiet "$unit" || systemctl enable --quiet "$unit"
if [ "$start" = 1 ]; then
    if [ "$changed" = 1 ]; then
        restart+=("$unit")
    elif ! systemctl is-active --quiet "$unit"; then
        systemctl start "$unit"
    fi
fi
if [ ${#restart[@]} -gt 0 ]; then
    systemctl restart "${restart[@]}"
fi
echo "install.sh: done; check with: systemctl status $unit; $venv/bin/launch-supervisor status"
