#!/usr/bin/env bash
# Runs on each TPU VM worker (setup.sh and launch.sh call it over ssh with --worker=all):
# installs the checkout it sits in, starts a training run in the background, or stops it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: $SCRIPT_NAME install [--python VERSION] [--extras EXTRAS]
       $SCRIPT_NAME run [-- TRAIN_FLAGS...]
       $SCRIPT_NAME stop

Runs on a TPU VM worker, in the checkout that setup.sh copied there (REPO below).
  install  creates REPO/.venv with uv (Python VERSION, default 3.11) and installs
           pip install -e \".[EXTRAS]\" (default tpu) into it
  run      starts 'python -m experiments.train TRAIN_FLAGS...' detached from the ssh
           session; output goes to REPO/tpu-run.log, the process id to REPO/tpu-run.pid
  stop     sends SIGTERM to the run that REPO/tpu-run.pid names

  --python VERSION   [PYTHON_VERSION]
  --extras EXTRAS    [EXTRAS]
  --dry-run          print the commands instead of running them
  -h, --help         show this help"
COMMON_USAGE="REPO is the directory above this script's: $REPO_ROOT"

PYTHON_VERSION=${PYTHON_VERSION:-3.11}
EXTRAS=${EXTRAS:-tpu}
ACCEPTS_EXTRA=1
VALUE_OPTIONS=(--python=PYTHON_VERSION --extras=EXTRAS)
FLAG_OPTIONS=(--dry-run=DRY_RUN)
action=${1:-}
[[ $action == -h || $action == --help ]] && parse_args --help
[[ $action == install || $action == run || $action == stop ]] ||
  die "the first argument must be install, run or stop (see --help)"
shift
parse_args "$@"

cd "$REPO_ROOT"
LOG=$REPO_ROOT/tpu-run.log
PID_FILE=$REPO_ROOT/tpu-run.pid

# The pid of the run started here if it is still alive (not exited, nor a zombie).
running_pid() {
  local pid state
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && state=$(ps -o stat= -p "$pid") && [[ $state != Z* ]] || return 1
  echo "$pid"
}

case $action in
  install)
    # The TPU images' python3 is older than JAX supports; uv fetches the Python we ask for.
    uv=$HOME/.local/bin/uv
    if [[ ! -x $uv ]]; then
      # --break-system-packages only where the image's pip refuses user installs (PEP 668).
      run python3 -m pip install --user --quiet uv ||
        run python3 -m pip install --user --quiet --break-system-packages uv
    fi
    [[ -d .venv ]] || run "$uv" venv --python "$PYTHON_VERSION" .venv
    run "$uv" pip install --python .venv/bin/python -e ".[$EXTRAS]"
    run .venv/bin/python -c "import socket, agentrl, jax; print(socket.gethostname(), jax.__version__)"
    ;;
  run)
    if pid=$(running_pid); then
      die "a run is still going here (pid $pid); stop it first: tpu/launch.sh --stop"
    fi
    if ((DRY_RUN)); then
      echo "$(shell_quote nohup .venv/bin/python -m experiments.train "${EXTRA_ARGS[@]}")" \
        "> $(shell_quote "$LOG") 2>&1 < /dev/null &"
      exit 0
    fi
    nohup .venv/bin/python -m experiments.train "${EXTRA_ARGS[@]}" >"$LOG" 2>&1 </dev/null &
    echo "$!" >"$PID_FILE"
    echo "$(hostname): started pid $! (log $LOG)"
    ;;
  stop)
    if pid=$(running_pid); then
      run kill "$pid"
    else
      echo "$(hostname): no run is going"
    fi
    ;;
esac
