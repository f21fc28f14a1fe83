r"""Memory plans on paper: XLA's per-device memory for a sharded update of a full-size model.

The update of an algorithm (`agentrl.algorithms.make(...).update`, the jitted function the
trainer calls) is lowered and compiled for a mesh of fake CPU devices with abstract arguments
(`jax.ShapeDtypeStruct`s carrying `NamedSharding`s): no weight is ever materialised, so a 7B
policy on a 64-chip mesh is planned on a laptop. It prints

* the per-device bytes of the train state from its shardings: parameters, optimizer state and
  frozen trees (reference policy, target critic);
* XLA's per-device memory estimate (`compiled.memory_analysis()`): arguments, outputs,
  temporaries, generated code, the donated bytes aliased between arguments and outputs, and
  their total (arguments + outputs - aliased + temporaries + generated code);
* XLA's FLOP count (`compiled.cost_analysis()`; each loop body, e.g. one of ArCHer's critic
  steps or one decode step, is counted once, not times its trip count);
* with `--chip`, whether that total fits in the chip's HBM.

  python -m experiments.plan --model qwen2_7b --mesh fsdp=16,tensor=4 --algorithm archer
  python -m experiments.plan --model qwen2_1_5b --mesh fsdp=4 --algorithm ppo --chip v4 \
      --json plan.json
  python -m experiments.plan --table experiments/results/memory_plans   # every README row

What is planned. Policy: a `agentrl.models.presets` decoder (Qwen2 0.5B/1.5B/7B), parameters
and activations in `--dtype` (bfloat16 by default, as on TPU). Its Adam moments take the
parameters' dtype (optax's default), so they are bfloat16 too; the clipping and Adam arithmetic
run in that dtype. `archer`: ArCHer's update as `agentrl.algorithms.archer` defines it
(`critic_steps` critic steps, each with fresh actions sampled from the policy inside the
update, then `actor_steps` REINFORCE steps), with the paper's hyperparameters
(`experiments/configs/archer_twenty_questions.py:paper`) and a RoBERTa-base-sized utterance
critic (twin Q/V heads, plus the Polyak target critic). The critic is float32, as
`archer.make_critic` builds it, and reads the policy's token ids, so its embedding table has
the policy's vocabulary. A row is `--seq-len` tokens: a state of seq_len - action_tokens
tokens and an action of `--action-tokens`. `ppo`: token-level PPO (`agentrl.algorithms.ppo`,
`experiments/configs/ppo.py:paper`: 4 epochs of 2 minibatches) with the policy, a token value
head and the frozen reference policy, on a rollout batch of `--batch` rows of `--seq-len`
tokens and `--turns` turns.

Shardings. Parameters by their logical axis names (`agentrl.parallel.DEFAULT_RULES`: `embed`
over fsdp; heads, MLP units and vocabulary over tensor); optimizer-state leaves that mirror a
parameter (Adam's moments) get that parameter's sharding; everything else is replicated; the
batch is split over ("data", "fsdp"). The update is jitted with the state's shardings as its
input and output shardings and the state donated, as a trainer keeps its layout.

Caveats. XLA:CPU's buffer assignment is not TPU's or GPU's: it has no HBM-driven
rematerialisation and may run bfloat16 arithmetic in float32, so read the temporaries as an
estimate of the order of magnitude. For the same reason a plan cannot show what
`DecoderConfig.remat` (jax.checkpoint per block) saves on an accelerator: XLA:CPU's schedule
does not lower its peak memory for the recomputation (a plan with it came out no smaller), so
the plans are made without it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from typing import Any

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np

from agentrl import algorithms, parallel, replay, sampling
from agentrl.algorithms import archer
from agentrl.models import decoder, presets
from agentrl.types import TrajectoryBatch
from experiments.configs import archer_twenty_questions, ppo

_MODEL = flags.DEFINE_string("model", "qwen2_0_5b",
                             "Policy preset of agentrl.models.presets (qwen2_0_5b, qwen2_1_5b, "
                             "qwen2_7b, tiny).")
_MESH = flags.DEFINE_string("mesh", "fsdp=-1",
                            "Mesh sizes, e.g. fsdp=16,tensor=4: data=, fsdp=, tensor= (missing "
                            "axes are 1; one may be -1, the rest of --devices).")
_DEVICES = flags.DEFINE_integer("devices", None,
                                "Fake CPU devices (the slice's chips); default: the product of "
                                "--mesh (required when an axis is -1).")
_ALGORITHM = flags.DEFINE_string("algorithm", "archer", "archer or ppo.")
_BATCH = flags.DEFINE_integer("batch", None,
                              "archer: transitions per critic/actor step (paper: 256); ppo: "
                              "rollout rows per update (paper: 128).")
_SEQ_LEN = flags.DEFINE_integer("seq-len", 1024, "Tokens per row (archer: state + action).")
_ACTION_TOKENS = flags.DEFINE_integer("action-tokens", 32,
                                      "archer: tokens of a sampled action (paper: 32).")
_TURNS = flags.DEFINE_integer("turns", 20, "ppo: agent turns per row (K).")
_CRITIC = flags.DEFINE_string("critic", None,
                              "archer: critic preset (roberta_base; tiny for --model tiny).")
_DTYPE = flags.DEFINE_string("dtype", "bfloat16",
                             "Policy parameters and activations: bfloat16 or float32.")
_CHIP = flags.DEFINE_string("chip", None, "v4, v5e, v5p, h100 or h200: says whether it fits.")
_LAYERS = flags.DEFINE_integer("layers", None,
                               "Override the policy's number of layers (a shallower copy of the "
                               "model compiles faster).")
_JSON = flags.DEFINE_string("json", None, "Write the plan to this JSON file.")
_COMPILE = flags.DEFINE_bool("compile", True,
                             "Compile the update (minutes for a 7B policy); --nocompile prints "
                             "the state's per-device bytes only.")
_TABLE = flags.DEFINE_string("table", None,
                             "Plan every row of the README table (each in its own process) and "
                             "write PREFIX.md, PREFIX.csv and PREFIX.json; rows already in "
                             "PREFIX.json with the same command are kept.")

ALGORITHMS = ("archer", "ppo")
DTYPES = ("bfloat16", "float32")
GIB = 2 ** 30
#: HBM per chip (GiB): TPU v4, v5e, v5p; NVIDIA H100 (80 GB SXM), H200.
CHIPS = {"v4": 32, "v5e": 16, "v5p": 95, "h100": 80, "h200": 141}
#: --batch defaults: ArCHer's transitions per step, PPO's rollouts per round (the papers').
DEFAULT_BATCH = {"archer": 256, "ppo": 128}


class PlanError(ValueError):
  """Bad input, named by its option."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """One plan's inputs (the flags)."""

  model: str
  mesh: str
  algorithm: str = "archer"
  devices: int | None = None
  batch: int | None = None
  seq_len: int = 1024
  action_tokens: int = 32
  turns: int = 20
  critic: str | None = None
  dtype: str = "bfloat16"
  chip: str | None = None
  layers: int | None = None

  def command(self) -> str:
    """The command line that reproduces this plan."""
    args = ["python", "-m", "experiments.plan", "--model", self.model, "--mesh", self.mesh,
            "--algorithm", self.algorithm]
    defaults = Spec(model="", mesh="")
    for field in ("devices", "batch", "seq_len", "action_tokens", "turns", "critic", "dtype",
                  "chip", "layers"):
      value = getattr(self, field)
      if value is not None and value != getattr(defaults, field):
        args += [f"--{field.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(a) for a in args)


# ----------------------------------------------------------------------------------------
# Validation: every error names its option
# ----------------------------------------------------------------------------------------


def parse_mesh(text: str) -> dict[str, int]:
  """"fsdp=16,tensor=4" -> {"data": 1, "fsdp": 16, "tensor": 4}."""
  sizes = dict.fromkeys(parallel.MESH_AXES, 1)
  seen = set()
  for part in filter(None, text.replace(" ", "").split(",")):
    key, sep, value = part.partition("=")
    if not sep or key not in sizes or key in seen:
      raise PlanError(f"--mesh={text!r}: {part!r} is not one of "
                      f"{', '.join(a + '=N' for a in parallel.MESH_AXES)} (each at most once).")
    try:
      sizes[key] = int(value)
    except ValueError:
      raise PlanError(f"--mesh={text!r}: {key}={value!r} is not an integer.") from None
    seen.add(key)
  return sizes


def resolve(spec: Spec) -> tuple[Spec, tuple[int, int, int]]:
  """Checks `spec`; returns it with defaults filled in and the (data, fsdp, tensor) sizes."""
  if spec.model not in presets.DECODERS:
    raise PlanError(f"--model={spec.model!r} is not a preset; valid: "
                    f"{', '.join(presets.names())}.")
  if spec.algorithm not in ALGORITHMS:
    raise PlanError(f"--algorithm={spec.algorithm!r} is not planned; valid: "
                    f"{', '.join(ALGORITHMS)}.")
  if spec.dtype not in DTYPES:
    raise PlanError(f"--dtype={spec.dtype!r}; valid: {', '.join(DTYPES)}.")
  if spec.chip is not None and spec.chip not in CHIPS:
    raise PlanError(f"--chip={spec.chip!r}; valid: {', '.join(CHIPS)}.")
  critic = spec.critic or presets.DEFAULT_CRITIC.get(spec.model, "roberta_base")
  if spec.algorithm != "archer":
    critic = None  # only ArCHer has an utterance critic
  elif critic not in presets.CRITICS:
    raise PlanError(f"--critic={critic!r}; valid: {', '.join(sorted(presets.CRITICS))}.")
  sizes = parse_mesh(spec.mesh)
  devices = spec.devices
  if devices is None:
    if -1 in sizes.values():
      raise PlanError(f"--mesh={spec.mesh!r} has an axis of -1: give --devices.")
    devices = math.prod(sizes.values())
  if devices < 1:
    raise PlanError(f"--devices={devices} must be positive.")
  try:
    shape = parallel.mesh_shape(**sizes, num_devices=devices)
  except ValueError as e:
    raise PlanError(f"--mesh={spec.mesh!r} does not fit --devices={devices}: {e}") from None
  batch = spec.batch or DEFAULT_BATCH[spec.algorithm]
  replicas = shape[0] * shape[1]
  if batch < 1 or batch % replicas:
    raise PlanError(f"--batch={batch} is not divisible by data*fsdp={replicas} of "
                    f"--mesh={spec.mesh!r}.")
  if spec.algorithm == "archer" and not 0 < spec.action_tokens < spec.seq_len:
    raise PlanError(f"--action-tokens={spec.action_tokens} must lie in [1, --seq-len="
                    f"{spec.seq_len}).")
  if spec.layers is not None and spec.layers < 1:
    raise PlanError(f"--layers={spec.layers} must be positive.")
  if spec.seq_len < 2 or spec.turns < 1:
    raise PlanError(f"--seq-len={spec.seq_len} must be >= 2 and --turns={spec.turns} >= 1.")
  return dataclasses.replace(spec, devices=devices, batch=batch, critic=critic), shape


# ----------------------------------------------------------------------------------------
# Abstract models, state and batch
# ----------------------------------------------------------------------------------------


def algorithm_config(spec: Spec):
  """The algorithm block: the paper variant's hyperparameters at the spec's sizes."""
  if spec.algorithm == "archer":
    config = archer_twenty_questions.get_config("paper").algorithm
    with config.unlocked():
      config.update(batch_size=spec.batch, state_tokens=spec.seq_len - spec.action_tokens,
                    action_tokens=spec.action_tokens)
      config.critic.update(presets.critic(spec.critic).to_dict())
    return config
  return ppo.algorithm("paper")


def abstract_models(spec: Spec):
  """`Models` whose policy parameters are ShapeDtypeStructs, and the boxed abstract init."""
  config = presets.decoder(spec.model, dtype=spec.dtype)
  if spec.layers:
    config = config.replace(num_layers=spec.layers)
  boxed = jax.eval_shape(lambda: decoder.init_params(config, jax.random.key(0), boxed=True))
  sample = sampling.SamplingConfig(max_new_tokens=spec.action_tokens, temperature=1.0)
  models = algorithms.Models(policy_config=config, policy_params=nn.meta.unbox(boxed),
                             sampling=sample)
  return models, boxed


def abstract_state(name: str, config, models):
  """The TrainState's shapes: `algo.init` under `jax.eval_shape`, with the policy parameters
  passed in (the algorithm copies them, which a closed-over ShapeDtypeStruct cannot be)."""

  def init(policy_params, rng):
    return algorithms.make(name, config, dataclasses.replace(
        models, policy_params=policy_params)).init(rng)

  return jax.eval_shape(init, models.policy_params, jax.random.key(0))


def abstract_batch(spec: Spec, config, mesh):
  """The update's batch as ShapeDtypeStructs split over ("data", "fsdp")."""
  if spec.algorithm == "archer":
    fields = replay.transition_spec(config.state_tokens, config.action_tokens)
    c, a, n = int(config.critic_steps), int(config.actor_steps), spec.batch
    host = {k: np.zeros((c, n) + fields[k][0], fields[k][1]) for k in archer.CRITIC_FIELDS}
    host["actor_state"] = np.zeros((a, n) + fields["state"][0], fields["state"][1])
    host["actor_state_mask"] = np.zeros((a, n) + fields["state_mask"][0], np.bool_)
    axis = 1  # [steps, batch, ...]
  else:
    host, axis = TrajectoryBatch.zeros(spec.batch, spec.seq_len, spec.turns), 0

  def leaf(x):
    sharding = (parallel.batch_sharding(mesh, x.ndim, axis) if x.ndim > axis
                else parallel.replicated(mesh))
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(leaf, host)


# ----------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------


def _shard_bytes(leaf, sharding) -> int:
  return math.prod(sharding.shard_shape(tuple(leaf.shape))) * leaf.dtype.itemsize


def state_bytes(state, shardings) -> dict[str, Any]:
  """Per-device bytes of the state by part ("params/policy", "opt_states/critic", ...), the
  per-device total, and the global parameter counts."""
  parts: dict[str, int] = {}
  for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                                    jax.tree.leaves(shardings)):
    names = [getattr(k, "name", None) or str(getattr(k, "key", "")) for k in path[:2]]
    part = "/".join(n for n in names if n)
    parts[part] = parts.get(part, 0) + _shard_bytes(leaf, sharding)
  counts = {name: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
            for name, tree in state.params.items()}
  return {"per_device": parts, "per_device_total": sum(parts.values()), "param_counts": counts}


def use_fake_devices(n: int) -> None:
  """Makes JAX see `n` CPU devices; must run before JAX initialises a backend.

  The plan never runs the program, so LLVM's optimisations are turned off: that shortens a
  compile by a third and leaves XLA's buffer assignment (the memory figures) as it is.
  """
  xla = re.sub(r"--xla_(force_host_platform_device_count|backend_optimization_level)=\S+", "",
               os.environ.get("XLA_FLAGS", ""))
  os.environ["XLA_FLAGS"] = (f"{xla} --xla_force_host_platform_device_count={n} "
                             "--xla_backend_optimization_level=0").strip()
  jax.config.update("jax_platforms", "cpu")
  if jax.device_count() < n:
    raise PlanError(f"--devices={n}: JAX already runs on {jax.device_count()} devices (it was "
                    "initialised before the plan could set XLA_FLAGS); run it in a new process.")


def run(spec: Spec, *, compile_update: bool = True) -> dict[str, Any]:
  """Plans `spec` on fake devices (see the module docstring); without `compile_update`, only
  the state's shardings and bytes (seconds instead of minutes)."""
  spec, shape = resolve(spec)
  use_fake_devices(spec.devices)

  mesh = parallel.make_mesh(*shape, devices=jax.devices()[:spec.devices])
  config = algorithm_config(spec)
  models, policy_boxed = abstract_models(spec)
  state = abstract_state(spec.algorithm, config, models)
  try:
    # The trainer's own layout (`experiment.Layout` -> `parallel.state_shardings`).
    shardings = parallel.state_shardings(state, mesh, logical={"policy": policy_boxed})
  except ValueError as e:
    raise PlanError(f"--mesh={spec.mesh!r} does not fit --model={spec.model!r}: {e}") from None
  sbytes = state_bytes(state, shardings)
  plan = {
      "spec": dataclasses.asdict(spec), "command": spec.command(),
      "mesh": dict(zip(parallel.MESH_AXES, shape)),
      "policy_params": sbytes["param_counts"].get("policy", 0),
      "param_counts": sbytes["param_counts"],
      "state_bytes_per_device": sbytes["per_device"],
      "state_bytes_per_device_total": sbytes["per_device_total"],
      "jax_version": jax.__version__, "machine": f"{platform.machine()} {platform.system()}",
      "cpu_count": os.cpu_count(),
  }
  if spec.algorithm == "archer":
    plan["algorithm_config"] = {k: config[k] for k in ("batch_size", "critic_steps",
                                                        "actor_steps", "state_tokens",
                                                        "action_tokens")}
  else:
    plan["algorithm_config"] = {"rows": spec.batch, "tokens": spec.seq_len, "turns": spec.turns,
                                "epochs": config.epochs, "minibatches": config.minibatches}
  if not compile_update:
    return plan

  args = (jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state,
                       shardings),
          abstract_batch(spec, config, mesh),
          jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=parallel.replicated(mesh)))
  algo = algorithms.make(spec.algorithm, config, models)
  # The algorithm's own jitted update; the state keeps its layout on the way out, as in a
  # trainer, so the donated input buffers can be reused for the output.
  update = parallel.jit_sharded_update(algo.update, shardings, mesh)
  start = time.perf_counter()
  lowered = update.lower(*args)
  plan["lower_s"] = time.perf_counter() - start
  compiled = lowered.compile()
  plan["compile_s"] = time.perf_counter() - start - plan["lower_s"]
  mem = compiled.memory_analysis()
  xla = {k: int(getattr(mem, k + "_size_in_bytes")) for k in
         ("argument", "output", "alias", "temp", "generated_code")}
  xla["total"] = (xla["argument"] + xla["output"] - xla["alias"] + xla["temp"]
                  + xla["generated_code"])
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  plan["xla_bytes_per_device"] = xla
  plan["flops_per_device"] = float(cost.get("flops", 0.0)) if cost else 0.0
  if spec.chip:
    hbm = CHIPS[spec.chip] * GIB
    plan.update(chip=spec.chip, hbm_bytes=hbm, fits=xla["total"] <= hbm,
                hbm_fraction=xla["total"] / hbm)
  return plan


def _gib(n: float) -> str:
  return f"{n / GIB:8.2f} GiB" if n >= GIB / 10 else f"{n / 2 ** 20:8.2f} MiB"


def report(plan: dict[str, Any]) -> str:
  """The printed summary of a plan."""
  s, m = plan["spec"], plan["mesh"]
  lines = [
      f"{s['model']} ({plan['policy_params'] / 1e6:,.1f}M parameters), {s['algorithm']}, "
      f"{s['dtype']} policy, mesh data={m['data']} fsdp={m['fsdp']} tensor={m['tensor']} "
      f"({s['devices']} devices)",
      "  " + ", ".join(f"{k} {v}" for k, v in plan["algorithm_config"].items()),
      "state per device, from the shardings:"]
  lines += [f"  {part:<24}{_gib(n)}" for part, n in sorted(plan["state_bytes_per_device"].items())]
  lines.append(f"  {'total':<24}{_gib(plan['state_bytes_per_device_total'])}")
  x = plan.get("xla_bytes_per_device")
  if x is None:
    lines.append(f"(not compiled)\ncommand: {plan['command']}")
    return "\n".join(lines)
  lines.append("XLA memory per device (compiled.memory_analysis):")
  for key, label in (("argument", "arguments"), ("output", "outputs"),
                     ("alias", "aliased (donated)"), ("temp", "temporaries"),
                     ("generated_code", "generated code"), ("total", "total")):
    lines.append(f"  {label:<24}{_gib(x[key])}")
  lines.append(f"FLOPs per device (cost_analysis, loop bodies once): "
               f"{plan['flops_per_device']:.3e}")
  if "chip" in plan:
    verdict = "fits" if plan["fits"] else "does NOT fit"
    lines.append(f"{s['chip']} ({CHIPS[s['chip']]} GiB HBM): {verdict} "
                 f"({plan['hbm_fraction']:.0%} of HBM)")
  lines.append(f"lowered and compiled in {plan['lower_s'] + plan['compile_s']:.0f} s (jax "
               f"{plan['jax_version']})")
  lines.append(f"command: {plan['command']}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# The README table
# ----------------------------------------------------------------------------------------

#: (slice, chip, chips, mesh per model). Tensor parallelism is limited by the heads: 0.5B
#: has 14 query / 2 key-value heads, 1.5B 12 / 2 (tensor <= 2); 7B 28 / 4 (tensor <= 4).
SLICES = (
    ("v4-8", "v4", 4, {"qwen2_0_5b": "fsdp=4", "qwen2_1_5b": "fsdp=4", "qwen2_7b": "fsdp=4"}),
    ("v5e-16", "v5e", 16, {"qwen2_0_5b": "fsdp=16", "qwen2_1_5b": "fsdp=16",
                           "qwen2_7b": "fsdp=4,tensor=4"}),
    ("v5p-64", "v5p", 32, {"qwen2_0_5b": "fsdp=32", "qwen2_1_5b": "fsdp=32",
                           "qwen2_7b": "fsdp=8,tensor=4"}),
)
TABLE_MODELS = ("qwen2_0_5b", "qwen2_1_5b", "qwen2_7b")
CSV_FIELDS = ("slice", "chip", "model", "algorithm", "mesh", "devices", "batch", "seq_len",
              "rows_per_device", "state_gib", "argument_gib", "output_gib", "alias_gib",
              "temp_gib", "total_gib", "hbm_gib", "fits", "flops", "compile_s", "command")


def table_specs() -> list[tuple[str, Spec]]:
  return [(name, Spec(model=model, mesh=meshes[model], algorithm=algorithm, chip=chip))
          for name, chip, _, meshes in SLICES for model in TABLE_MODELS
          for algorithm in ALGORITHMS]


def _row(name: str, plan: dict[str, Any]) -> dict[str, Any]:
  s, x = plan["spec"], plan["xla_bytes_per_device"]
  gib = lambda n: round(n / GIB, 2)  # noqa: E731
  return {"slice": name, "chip": s["chip"], "model": s["model"], "algorithm": s["algorithm"],
          "mesh": s["mesh"], "devices": s["devices"], "batch": s["batch"],
          "seq_len": s["seq_len"],
          "rows_per_device": s["batch"] // (plan["mesh"]["data"] * plan["mesh"]["fsdp"]),
          "state_gib": gib(plan["state_bytes_per_device_total"]),
          "argument_gib": gib(x["argument"]), "output_gib": gib(x["output"]),
          "alias_gib": gib(x["alias"]), "temp_gib": gib(x["temp"]), "total_gib": gib(x["total"]),
          "hbm_gib": CHIPS[s["chip"]], "fits": "yes" if plan["fits"] else "no",
          "flops": f"{plan['flops_per_device']:.3g}", "compile_s": round(plan["compile_s"]),
          "command": plan["command"]}


NOTES_MARKER = "<!-- Notes below this line are kept when the table is regenerated. -->"


def write_table(prefix: str, rows: list[dict[str, Any]], plans: list[dict[str, Any]]) -> None:
  """PREFIX.json (the plans), PREFIX.csv (the rows) and PREFIX.md (the README table); the
  notes after `NOTES_MARKER` in an existing PREFIX.md are kept."""
  with open(prefix + ".json", "w", encoding="utf-8") as f:
    json.dump(plans, f, indent=1)
  with open(prefix + ".csv", "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
  notes = ""
  if os.path.exists(prefix + ".md"):
    with open(prefix + ".md", encoding="utf-8") as f:
      notes = f.read().partition(NOTES_MARKER)[2]
  heads = ("slice (HBM/chip)", "policy", "update", "mesh", "rows/device", "state", "temporaries",
           "total", "fits")
  lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
  for r in rows:
    cells = (f"{r['slice']} ({r['hbm_gib']} GiB)", r["model"], r["algorithm"], r["mesh"],
             r["rows_per_device"], r["state_gib"], r["temp_gib"], r["total_gib"], r["fits"])
    lines.append("| " + " | ".join(map(str, cells)) + " |")
  meta = plans[0] if plans else {}
  defaults = Spec(model="", mesh="")
  body = "\n".join([
      "# Memory plans: Qwen2 policies under the ArCHer and PPO updates",
      "",
      "Per-device memory of one jitted, sharded update as XLA plans it, from "
      "`python -m experiments.plan` (its docstring says what is planned and the caveats). "
      "State, temporaries and total are GiB per device; total = arguments + outputs - "
      "donated (aliased) + temporaries + generated code; `fits` compares it with the chip's "
      "HBM. Generated by `python -m experiments.plan --table experiments/results/memory_plans`"
      f" on fake CPU devices (jax {meta.get('jax_version', '?')}, "
      f"{meta.get('machine', '?')}, {meta.get('cpu_count', '?')} CPUs).",
      "",
      f"ArCHer: {DEFAULT_BATCH['archer']} transitions per step, the paper's 50 critic steps and "
      f"3 actor steps per update, rows of {defaults.seq_len} tokens "
      f"({defaults.seq_len - defaults.action_tokens}-token state + {defaults.action_tokens}"
      "-token sampled action), a RoBERTa-base-sized float32 critic and its target. PPO: "
      f"{DEFAULT_BATCH['ppo']} rollout rows of {defaults.seq_len} tokens ({defaults.turns} "
      "turns), 4 epochs of 2 minibatches, a token value head, the frozen reference policy. "
      "Policy parameters, activations and Adam moments in bfloat16. rows/device is the batch "
      "over data x fsdp.",
      "",
      *lines,
      "",
      "Commands, one per row:",
      "",
      *[f"    {r['command']}" for r in rows],
      "",
      NOTES_MARKER + (notes or "\n")])
  with open(prefix + ".md", "w", encoding="utf-8") as f:
    f.write(body)


def run_table(prefix: str) -> None:
  """Plans every row in its own process (each needs its own device count)."""
  done = {}
  if os.path.exists(prefix + ".json"):
    with open(prefix + ".json", encoding="utf-8") as f:
      done = {p["command"]: p for p in json.load(f)}
  rows, plans = [], []
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for name, spec in table_specs():
    spec, _ = resolve(spec)
    command = spec.command()
    if command not in done:
      out = prefix + ".row.json"
      print(f"[{len(plans) + 1}/{len(table_specs())}] {command}", flush=True)
      subprocess.run([sys.executable, *shlex.split(command)[1:], "--json", out], check=True,
                     cwd=root)
      with open(out, encoding="utf-8") as f:
        done[command] = json.load(f)
      os.remove(out)
    plans.append(done[command])
    rows.append(_row(name, done[command]))
    # After every row, with the plans not reached yet: a long sweep can be resumed.
    write_table(prefix, rows, plans + [p for p in done.values() if p not in plans])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    if _TABLE.value:
      run_table(_TABLE.value)
      return
    spec = Spec(model=_MODEL.value, mesh=_MESH.value, algorithm=_ALGORITHM.value,
                devices=_DEVICES.value, batch=_BATCH.value, seq_len=_SEQ_LEN.value,
                action_tokens=_ACTION_TOKENS.value, turns=_TURNS.value, critic=_CRITIC.value,
                dtype=_DTYPE.value, chip=_CHIP.value, layers=_LAYERS.value)
    plan = run(spec, compile_update=_COMPILE.value)
  except PlanError as e:
    sys.exit(f"plan: {e}")
  print(report(plan))
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(plan, f, indent=1)


if __name__ == "__main__":
  app.run(main)
