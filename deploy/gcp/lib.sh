# shellcheck shell=bash
# Helpers shared by setup.sh and setup-events.sh (sourced; the caller sets dry_run=0 or 1).
#
# Every step checks first and changes only what differs. With dry_run=1 nothing is queried or
# changed: each check is written to stderr as "# check: …" and treated as "missing", and each change
# is written to stdout, so stdout is the script of what a run on an empty project would do.

dry_run=${dry_run:-0}

# run CMD…: run a command that changes something, or print it.
run() {
    if [ "$dry_run" = 1 ]; then
        printf '%q ' "$@"; echo
    else
        "$@"
    fi
}

# run_quietly CMD…: as run, without the command's output (a whole IAM policy, for instance).
run_quietly() {
    if [ "$dry_run" = 1 ]; then
        run "$@"
    else
        "$@" >/dev/null
    fi
}

# note TEXT…: in a dry run, a comment in its script: what a step does that no command shows.
note() {
    if [ "$dry_run" = 1 ]; then printf '# %s\n' "$*"; fi
}

# exists CMD…: true when a read-only command (describe, get) succeeds; false in a dry run.
exists() {
    if [ "$dry_run" = 1 ]; then
        { printf '# check: '; printf '%q ' "$@"; echo; } >&2
        return 1
    fi
    "$@" >/dev/null 2>&1
}

# query CMD…: the output of a read-only command, empty when it fails or in a dry run.
query() {
    if [ "$dry_run" = 1 ]; then
        { printf '# check: '; printf '%q ' "$@"; echo; } >&2
        return 0
    fi
    "$@" 2>/dev/null || true
}

# ensure_binding ROLE MEMBER "GROUP" RESOURCE [FLAG…]: grant ROLE to MEMBER on RESOURCE unless its
# policy already does. GROUP is the gcloud command group, such as "pubsub topics" or "projects".
ensure_binding() {
    local role="$1" member="$2" resource="$4" policy extra=()
    local -a group
    read -ra group <<<"$3"
    shift 4
    policy=$(query gcloud "${group[@]}" get-iam-policy "$resource" "$@" \
        --flatten 'bindings[].members' --format 'value(bindings.role,bindings.members)')
    if grep -qxF "$role"$'\t'"$member" <<<"$policy"; then
        return 0
    fi
    # A project policy may hold conditional bindings; without --condition gcloud would ask.
    if [ "${group[*]}" = projects ]; then extra=(--condition None); fi
    run_quietly gcloud "${group[@]}" add-iam-policy-binding "$resource" "$@" --member "$member" --role "$role" \
        "${extra[@]}" --quiet
}
