r"""Train an agent: `python -m experiments.train --config=experiments/configs/NAME.py[:variant]`.

With no flags it runs the main experiment, `archer_twenty_questions` in its `cpu` variant.
Override any config key with `--config.key=value` (a misspelled key is an error listing the
valid ones). The run directory (default `runs/<config>-<variant>`) holds metrics.jsonl,
TensorBoard events, checkpoints and the learning curve; rerunning the same command resumes.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from agentrl import configs, trainer

DEFAULT = os.path.join(configs.CONFIG_DIR, "archer_twenty_questions.py:cpu")
_CONFIG = configs.define_config_flag("config", DEFAULT)
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory (default runs/<config>).")


def main(argv):
  del argv
  config_arg = configs.config_arg_from_argv(sys.argv, "config") or DEFAULT
  run_dir = _RUN_DIR.value or trainer.default_run_dir(config_arg)
  final = trainer.train(_CONFIG.value, run_dir)
  shown = {k: round(v, 4) for k, v in final.items() if k.startswith("eval/")}
  print(f"run directory: {run_dir}\nfinal: {shown}")


if __name__ == "__main__":
  app.run(main)
