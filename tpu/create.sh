#!/usr/bin/env bash
# Creates a TPU VM (a single host or a multi-host slice), directly or as a queued resource.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: $SCRIPT_NAME --name NAME --zone ZONE --accelerator-type TYPE [options] [-- GCLOUD_FLAGS...]

Creates the TPU VM with 'gcloud compute tpus tpu-vm create', or with --queued as a queued
resource ('gcloud compute tpus queued-resources create'), which waits in line for capacity.
Flags after -- go to gcloud unchanged (e.g. -- --network=NET --labels=team=rl).

  --accelerator-type TYPE  e.g. v4-8, v4-32, v5litepod-16, v5p-64, v6e-8 [ACCELERATOR_TYPE]
  --version VERSION        TPU software (runtime) version [RUNTIME_VERSION]; default by TPU
                           generation: v2-v4 tpu-ubuntu2204-base, v5e (v5litepod)
                           v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e
  --spot                   a Spot TPU: cheaper, may be preempted at any time [SPOT=1]
  --preemptible            a preemptible TPU (not with --queued) [PREEMPTIBLE=1]
  --queued                 request it as a queued resource [QUEUED=1]
  --queued-resource ID     the queued resource's id; default: the TPU name [QUEUED_RESOURCE]"

ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-}
RUNTIME_VERSION=${RUNTIME_VERSION:-}
QUEUED_RESOURCE=${QUEUED_RESOURCE:-}
SPOT=${SPOT:-0}
PREEMPTIBLE=${PREEMPTIBLE:-0}
QUEUED=${QUEUED:-0}
ACCEPTS_EXTRA=1
VALUE_OPTIONS+=(--accelerator-type=ACCELERATOR_TYPE --version=RUNTIME_VERSION
  --queued-resource=QUEUED_RESOURCE)
FLAG_OPTIONS+=(--spot=SPOT --preemptible=PREEMPTIBLE --queued=QUEUED)
parse_args "$@"
require TPU_NAME ZONE ACCELERATOR_TYPE

# The runtime version JAX wants on each TPU generation (Cloud TPU's "TPU software versions").
default_runtime_version() {
  case $1 in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "no default runtime version for accelerator type '$1'; pass --version" ;;
  esac
}

RUNTIME_VERSION=${RUNTIME_VERSION:-$(default_runtime_version "$ACCELERATOR_TYPE")}
((SPOT && PREEMPTIBLE)) && die "--spot and --preemptible exclude each other"
((QUEUED && PREEMPTIBLE)) && die "--preemptible does not apply to --queued; use --spot"
capacity=()
((SPOT)) && capacity+=(--spot)
((PREEMPTIBLE)) && capacity+=(--preemptible)

if ((QUEUED)); then
  QUEUED_RESOURCE=${QUEUED_RESOURCE:-$TPU_NAME}
  run_gcloud compute tpus queued-resources create "$QUEUED_RESOURCE" --node-id="$TPU_NAME" \
    --zone="$ZONE" --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" \
    "${capacity[@]}" "${EXTRA_ARGS[@]}"
  note "queued; the TPU VM exists once the request is ACTIVE:" \
    "gcloud compute tpus queued-resources describe $QUEUED_RESOURCE --zone=$ZONE"
else
  run_gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
    --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" \
    "${capacity[@]}" "${EXTRA_ARGS[@]}"
fi
note "next: tpu/setup.sh --name $TPU_NAME --zone $ZONE"
