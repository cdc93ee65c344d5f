#!/usr/bin/env bash
# The wheel of this checkout, as the daemon's VM installs it; prints its path.
#
#   deploy/gcp/build-wheel.sh OUT-DIR
#
# The same files give the same bytes (SOURCE_DATE_EPOCH fixes the archive's timestamps), so the
# wheel's sha256 changes only with the code: setup.sh names the upload and the VM's template by it.
# It builds a copy of the package's files (not the checkout, which keeps no build/ or egg-info)
# with `python3 -m pip wheel`, in pip's isolated build environment with the setuptools that
# build-constraints.txt pins (or, with PIP_NO_BUILD_ISOLATION=0, with the setuptools >= 77 installed
# here, offline).
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: build-wheel.sh OUT-DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$1
python=${PYTHON:-python3}

# What the wheel is made of: pyproject.toml's project and the two packages' folders.
sources=(pyproject.toml README.md supervisor watchdog)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - "${sources[@]}" | tar -C "$work" -xf -
mkdir -p "$work/dist"
if ! SOURCE_DATE_EPOCH=315532800 PIP_CONSTRAINT="$here/build-constraints.txt" "$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work" >&2; then
    echo "build-wheel.sh: pip could not build the wheel (above); it needs $python with pip, and PyPI or setuptools >= 77" >&2
    exit 1
fi
wheels=("$work"/dist/*.whl)
mkdir -p "$out"
cp "${wheels[0]}" "$out/"
echo "$out/$(basename "${wheels[0]}")"
