#!/usr/bin/env bash
# Copies this checkout to every worker of a TPU VM and installs it there with the TPU extra.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: $SCRIPT_NAME --name NAME --zone ZONE [options]

Packs this checkout (tracked files plus untracked ones git does not ignore, as they are on
disk now), copies it to every worker with 'gcloud compute tpus tpu-vm scp --worker=all',
unpacks it into REMOTE_DIR and runs tpu/worker.sh install there on every worker: a Python
virtual environment in REMOTE_DIR/.venv with pip install -e \".[EXTRAS]\" (jax[tpu]).
Rerun it after changing code; --sync-only then skips the install.

  --remote-dir DIR      checkout directory on the workers, relative to the home directory
                        (default agentrl) [REMOTE_DIR]
  --python VERSION      Python for the workers' virtual environment (default 3.11; the TPU
                        images' own python3 is older than JAX needs) [PYTHON_VERSION]
  --extras EXTRAS       setup.py extras to install (default tpu) [EXTRAS]
  --sync-only           copy the code only; the environment is already installed [SYNC_ONLY=1]"

REMOTE_DIR=${REMOTE_DIR:-agentrl}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
EXTRAS=${EXTRAS:-tpu}
SYNC_ONLY=${SYNC_ONLY:-0}
VALUE_OPTIONS+=(--remote-dir=REMOTE_DIR --python=PYTHON_VERSION --extras=EXTRAS)
FLAG_OPTIONS+=(--sync-only=SYNC_ONLY)
parse_args "$@"
require TPU_NAME ZONE REMOTE_DIR

archive_name=agentrl-checkout.tar.gz
archive=${TMPDIR:-/tmp}/$TPU_NAME-$archive_name
pack=(tar -czf "$archive" -C "$REPO_ROOT" --null -T -)
list=(git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard)
if ((DRY_RUN)); then
  echo "$(shell_quote "${list[@]}") | $(shell_quote "${pack[@]}")"
else
  trap 'rm -f "$archive"' EXIT
  echo "+ $(shell_quote "${list[@]}") | $(shell_quote "${pack[@]}")" >&2
  "${list[@]}" | "${pack[@]}"
fi

run_gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:$archive_name" \
  --zone="$ZONE" --worker=all

unpack=$(shell_quote mkdir -p "$REMOTE_DIR")
unpack+=" && $(shell_quote tar -xzf "$archive_name" -C "$REMOTE_DIR")"
unpack+=" && $(shell_quote rm "$archive_name")"
if ((!SYNC_ONLY)); then
  unpack+=" && $(shell_quote bash "$REMOTE_DIR/tpu/worker.sh" install \
    --python "$PYTHON_VERSION" --extras "$EXTRAS")"
fi
run_gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$unpack"
note "next: tpu/launch.sh --name $TPU_NAME --zone $ZONE --run-dir /mnt/runs/NAME (a bucket mounted on every worker)"
