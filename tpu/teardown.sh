#!/usr/bin/env bash
# Deletes a TPU VM, or with --queued its queued resource together with the TPU VM in it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: $SCRIPT_NAME --name NAME --zone ZONE [--queued [--queued-resource ID]] [--yes]

Deletes the TPU VM ('gcloud compute tpus tpu-vm delete'). A TPU made with create.sh --queued
belongs to a queued resource: pass --queued to delete the queued resource and, with --force,
the TPU VM in it. Everything on the workers' disks goes with them: copy results off first.

  --queued                delete the queued resource (and its TPU VM) [QUEUED=1]
  --queued-resource ID    the queued resource's id; default: the TPU name [QUEUED_RESOURCE]
  --async                 return without waiting for the deletion to finish [ASYNC=1]
  --yes                   do not ask for confirmation (gcloud --quiet) [YES=1]"

QUEUED=${QUEUED:-0}
QUEUED_RESOURCE=${QUEUED_RESOURCE:-}
ASYNC=${ASYNC:-0}
YES=${YES:-0}
VALUE_OPTIONS+=(--queued-resource=QUEUED_RESOURCE)
FLAG_OPTIONS+=(--queued=QUEUED --async=ASYNC --yes=YES)
parse_args "$@"
require TPU_NAME ZONE

flags=()
((ASYNC)) && flags+=(--async)
((YES)) && flags+=(--quiet)
if ((QUEUED)); then
  run_gcloud compute tpus queued-resources delete "${QUEUED_RESOURCE:-$TPU_NAME}" \
    --zone="$ZONE" --force "${flags[@]}"
else
  run_gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" "${flags[@]}"
fi
