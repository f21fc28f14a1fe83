#!/usr/bin/env bash
# Starts an experiment on every worker of a TPU VM at once (one JAX process per worker),
# follows a worker's log, or stops the run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: $SCRIPT_NAME --name NAME --zone ZONE --run-dir DIR [--config FILE[:VARIANT]]
                    [--config.KEY=VALUE...] [-- TRAIN_FLAGS...]
       $SCRIPT_NAME --name NAME --zone ZONE --logs [--worker N]
       $SCRIPT_NAME --name NAME --zone ZONE --stop

Runs 'python -m experiments.train --config=CONFIG --run_dir=DIR ...' on all workers with
'gcloud compute tpus tpu-vm ssh --worker=all', detached: the run goes on when the ssh session
ends. Each worker writes its output to REMOTE_DIR/tpu-run.log. On a multi-host slice every
worker is one JAX process; they find each other through jax.distributed.initialize().
--config.KEY=VALUE options and everything after -- go to experiments.train unchanged.

  --config FILE[:VARIANT]  experiment config, relative to the checkout (default
                           experiments/configs/archer_twenty_questions.py:paper) [CONFIG]
  --run-dir DIR            run directory that every worker shares, e.g. a bucket mounted with
                           Cloud Storage FUSE at /mnt/runs/NAME on every worker
                           (a local path only on a single-host TPU VM) [RUN_DIR]
  --remote-dir DIR         the checkout on the workers (default agentrl) [REMOTE_DIR]
  --logs                   follow one worker's log instead of launching [LOGS=1]
  --worker N               the worker --logs follows (default 0, the one that logs) [WORKER]
  --stop                   stop the run on every worker instead of launching [STOP=1]"

CONFIG=${CONFIG:-experiments/configs/archer_twenty_questions.py:paper}
RUN_DIR=${RUN_DIR:-}
REMOTE_DIR=${REMOTE_DIR:-agentrl}
WORKER=${WORKER:-0}
LOGS=${LOGS:-0}
STOP=${STOP:-0}
ACCEPTS_EXTRA=1
PASS_THROUGH_PREFIX=--config.
VALUE_OPTIONS+=(--config=CONFIG --run-dir=RUN_DIR --remote-dir=REMOTE_DIR --worker=WORKER)
FLAG_OPTIONS+=(--logs=LOGS --stop=STOP)
parse_args "$@"
require TPU_NAME ZONE REMOTE_DIR
((LOGS && STOP)) && die "--logs and --stop exclude each other"

ssh=(compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE")
worker_script=$REMOTE_DIR/tpu/worker.sh

if ((LOGS)); then
  run_gcloud "${ssh[@]}" --worker="$WORKER" \
    --command="$(shell_quote tail -n 200 -F "$REMOTE_DIR/tpu-run.log")"
elif ((STOP)); then
  run_gcloud "${ssh[@]}" --worker=all --command="$(shell_quote bash "$worker_script" stop)"
else
  require RUN_DIR CONFIG
  train=(--config="$CONFIG" --run_dir="$RUN_DIR" "${EXTRA_ARGS[@]}")
  run_gcloud "${ssh[@]}" --worker=all \
    --command="$(shell_quote bash "$worker_script" run -- "${train[@]}")"
  note "follow it: tpu/launch.sh --name $TPU_NAME --zone $ZONE --logs"
fi
