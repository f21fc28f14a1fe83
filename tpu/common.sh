# shellcheck shell=bash
# Shared by the scripts in tpu/: option parsing, required-option checks, shell quoting and
# --dry-run. A script sources this file, declares its options, then calls `parse_args "$@"`:
#
#   USAGE="usage: tpu/create.sh [options]
#   ..."
#   VALUE_OPTIONS+=(--accelerator-type=ACCELERATOR_TYPE)  # --flag=VARIABLE, takes a value
#   FLAG_OPTIONS+=(--spot=SPOT)                           # --flag=VARIABLE, set to 1
#   parse_args "$@"
#   require TPU_NAME ZONE
#   run_gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE"
#
# Every option can also come from the environment variable it names; a flag wins over the
# environment. Values are given as `--flag VALUE` or `--flag=VALUE`.

if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "tpu/$(basename "$0"): error: needs bash 4.4 or newer (on macOS: brew install bash)" >&2
  exit 2
fi

TPU_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT=$(dirname "$TPU_SCRIPTS_DIR")
SCRIPT_NAME="tpu/$(basename "$0")"

TPU_NAME=${TPU_NAME:-}
ZONE=${ZONE:-}
PROJECT=${PROJECT:-}
DRY_RUN=${DRY_RUN:-0}
EXTRA_ARGS=()      # what follows `--` (only where a script sets ACCEPTS_EXTRA=1)
ACCEPTS_EXTRA=0
PASS_THROUGH_PREFIX=""  # options that start with this go to EXTRA_ARGS too (e.g. --config.)

# Options of the gcloud-driving scripts; worker.sh, which runs on the TPU VM, resets them.
VALUE_OPTIONS=(--name=TPU_NAME --zone=ZONE --project=PROJECT)
FLAG_OPTIONS=(--dry-run=DRY_RUN)

COMMON_USAGE="Options every script takes (flag, or the environment variable in brackets):
  --name NAME        TPU VM name [TPU_NAME]
  --zone ZONE        zone, e.g. us-central2-b [ZONE]
  --project PROJECT  Google Cloud project; default: gcloud's configured project [PROJECT]
  --dry-run          print the commands, one per line, shell-quoted; run nothing [DRY_RUN=1]
  -h, --help         show this help"

die() {
  echo "$SCRIPT_NAME: error: $*" >&2
  exit 2
}

usage() {
  printf '%s\n\n%s\n' "$USAGE" "$COMMON_USAGE"
}

# The option (`--flag`) that sets VARIABLE, for error messages.
flag_for() {
  local spec
  for spec in "${VALUE_OPTIONS[@]}" "${FLAG_OPTIONS[@]}"; do
    if [[ ${spec#*=} == "$1" ]]; then
      echo "${spec%%=*}"
      return
    fi
  done
  echo "$1"
}

# Variable set by option $2 in table $1 (VALUE_OPTIONS or FLAG_OPTIONS); empty if none.
option_variable() {
  local -n table=$1
  local spec
  for spec in "${table[@]}"; do
    if [[ ${spec%%=*} == "$2" ]]; then
      echo "${spec#*=}"
      return
    fi
  done
}

parse_args() {
  local arg flag variable
  while (($#)); do
    arg=$1
    shift
    case $arg in
      -h | --help)
        usage
        exit 0
        ;;
      --)
        ((ACCEPTS_EXTRA)) || die "$SCRIPT_NAME takes no arguments after --"
        EXTRA_ARGS+=("$@")
        return
        ;;
      --*) ;;
      *) die "unexpected argument '$arg' (see --help)" ;;
    esac
    if [[ -n $PASS_THROUGH_PREFIX && $arg == "$PASS_THROUGH_PREFIX"* ]]; then
      EXTRA_ARGS+=("$arg")
      continue
    fi
    flag=${arg%%=*}
    variable=$(option_variable VALUE_OPTIONS "$flag")
    if [[ -n $variable ]]; then
      if [[ $arg == *=* ]]; then
        printf -v "$variable" '%s' "${arg#*=}"
      else
        (($#)) || die "option $flag needs a value"
        printf -v "$variable" '%s' "$1"
        shift
      fi
      continue
    fi
    variable=$(option_variable FLAG_OPTIONS "$flag")
    [[ -n $variable && $arg != *=* ]] || die "unknown option '$arg' (see --help)"
    printf -v "$variable" 1
  done
}

# Fails naming every listed variable that is empty, with the flag that sets it.
require() {
  local variable missing=()
  for variable in "$@"; do
    [[ -n ${!variable:-} ]] || missing+=("$(flag_for "$variable") (or $variable)")
  done
  if ((${#missing[@]})); then
    local joined
    printf -v joined '%s, ' "${missing[@]}"
    die "missing required option: ${joined%, }"
  fi
}

# Quotes each argument for a POSIX shell, leaving plain words bare, and joins them with spaces.
shell_quote() {
  local arg words=() q="'\\''"
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      words+=("$arg")
    elif [[ $arg =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then  # --flag='value', not '--flag=value'
      words+=("${BASH_REMATCH[1]}'${BASH_REMATCH[2]//\'/$q}'")
    else
      words+=("'${arg//\'/$q}'")
    fi
  done
  printf '%s\n' "${words[*]}"
}

# Runs a command, or with --dry-run prints it (shell-quoted) instead.
run() {
  if ((DRY_RUN)); then
    shell_quote "$@"
  else
    echo "+ $(shell_quote "$@")" >&2
    "$@"
  fi
}

run_gcloud() {
  run gcloud "$@" ${PROJECT:+"--project=$PROJECT"}
}

# Tells the user something without mixing it into --dry-run's list of commands.
note() {
  echo "$SCRIPT_NAME: $*" >&2
}
