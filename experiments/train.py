r"""Train an agent: `python -m experiments.train --config=experiments/configs/NAME.py[:variant]`.

With no flags it runs the main experiment, `archer_twenty_questions` in its `cpu` variant.
Override any config key with `--config.key=value` (a misspelled key is an error listing the
valid ones). The run directory (default `runs/<config>-<variant>`) holds metrics.jsonl,
TensorBoard events, checkpoints and the learning curve; rerunning the same command resumes.

Several devices: `--config.mesh.fsdp=4 --config.mesh.tensor=2` (data takes the rest). Several
hosts: run the same command on every host of a TPU VM slice (`jax.distributed` initialises
itself there), or give each process `--config.distributed.coordinator_address=HOST:PORT
--config.distributed.num_processes=N --config.distributed.process_id=I`; the run directory
must be on storage every host sees.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
import jax

from agentrl import configs, trainer

DEFAULT = os.path.join(configs.CONFIG_DIR, "archer_twenty_questions.py:cpu")
_CONFIG = configs.define_config_flag("config", DEFAULT)
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory (default runs/<config>).")


def main(argv):
  del argv
  config_arg = configs.config_arg_from_argv(sys.argv, "config") or DEFAULT
  run_dir = _RUN_DIR.value or trainer.default_run_dir(config_arg)
  final = trainer.train(_CONFIG.value, run_dir)
  if jax.process_index() != 0:
    return
  shown = {k: round(v, 4) for k, v in final.items() if k.startswith("eval/")}
  print(f"run directory: {run_dir}\nfinal: {shown}")


if __name__ == "__main__":
  app.run(main)
