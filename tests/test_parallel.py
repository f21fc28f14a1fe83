"""Meshes, rule tables and shardings; sharded vs. single-device numerics on 8 fake devices.

This process keeps its single CPU device (other tests rely on it): the 8-device check
runs `tests/_sharding_check.py` once in a subprocess and asserts on the JSON it prints.
"""

import functools
import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from agentrl import parallel
from agentrl.models import decoder

REPO = pathlib.Path(__file__).resolve().parents[1]
CHECK_SCRIPT = REPO / "tests" / "_sharding_check.py"
UPDATE_CHECK_SCRIPT = REPO / "tests" / "_update_sharding_check.py"
MESHES = ("8x1x1", "2x2x2", "1x4x2")
MODELS = ("llama", "gpt2")
TOL = 1e-5

# ----------------------------------------------------------------------------------------
# In-process (1 device)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, expected", [
    ((-1, 1, 1), (8, 1, 1)),
    ((2, -1, 2), (2, 2, 2)),
    ((1, 4, -1), (1, 4, 2)),
    ((2, 2, 2), (2, 2, 2)),
])
def test_mesh_shape_resolves_minus_one(sizes, expected):
  assert parallel.mesh_shape(*sizes, num_devices=8) == expected


@pytest.mark.parametrize("sizes, match", [
    ((-1, -1, 1), "Only one mesh axis"),
    ((3, -1, 1), "not divisible"),
    ((2, 2, 1), r"product 4, but there are 8 devices"),
    ((0, 1, 8), "data=0"),
    ((1, 2.0, 4), "fsdp=2.0"),
])
def test_mesh_shape_errors(sizes, match):
  with pytest.raises(ValueError, match=match):
    parallel.mesh_shape(*sizes, num_devices=8)


def test_make_mesh_single_device():
  assert jax.device_count() == 1
  mesh = parallel.make_mesh(fsdp=-1)
  assert mesh.axis_names == parallel.MESH_AXES
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
  with pytest.raises(ValueError, match=r"'tensor': 2.*1 devices"):
    parallel.make_mesh(tensor=2)


def test_make_mesh_from_config():
  mesh = parallel.make_mesh_from_config({"data": -1})
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
  mesh = parallel.make_mesh_from_config(ml_collections.ConfigDict({"fsdp": 1, "tensor": -1}))
  assert mesh.axis_names == parallel.MESH_AXES
  with pytest.raises(ValueError, match=r"\['model'\].*\['data', 'fsdp', 'tensor'\]"):
    parallel.make_mesh_from_config(ml_collections.ConfigDict({"data": 1, "model": 1}))
  with pytest.raises(TypeError):
    parallel.make_mesh_from_config(4)


def test_default_rules_table():
  rules = parallel.DEFAULT_RULES
  assert isinstance(rules, tuple) and all(len(rule) == 2 for rule in rules)
  assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == P("fsdp", "tensor")
  assert nn.logical_to_mesh_axes(("mlp", "embed"), rules) == P("tensor", "fsdp")
  assert nn.logical_to_mesh_axes(("embed", "heads", "kv"), rules) == P("fsdp", "tensor", None)
  assert nn.logical_to_mesh_axes(("vocab", "embed"), rules) == P("tensor", "fsdp")
  # Activations: batch takes data and fsdp, so embed stays whole.
  assert nn.logical_to_mesh_axes(("batch", "length", "embed"), rules) == P(
      ("data", "fsdp"), None, None)


def test_logical_shardings_of_boxed_tree():
  mesh = parallel.make_mesh()
  tree = {"kernel": nn.Partitioned(jnp.zeros((4, 8)), names=("embed", "mlp")),
          "plain": jnp.zeros((3,))}
  shardings = parallel.logical_shardings(tree, mesh)
  assert shardings["kernel"] == NamedSharding(mesh, P("fsdp", "tensor"))
  assert shardings["plain"].spec == P()
  abstract = jax.eval_shape(lambda: tree)
  assert parallel.logical_shardings(abstract, mesh)["kernel"].spec == P("fsdp", "tensor")


def test_logical_shardings_errors():
  mesh = parallel.make_mesh()
  tree = {"layer": {"w": nn.Partitioned(jnp.zeros((4, 8)), names=("embed", "expert"))}}
  with pytest.raises(ValueError, match=r"\['layer'\]\['w'\].*'expert' has no rule"):
    parallel.logical_shardings(tree, mesh)
  with pytest.raises(ValueError, match="mesh axis 'model'"):
    parallel.logical_shardings(tree, mesh, rules=(("embed", "model"), ("expert", None)))


def test_sharded_init_single_device():
  config = decoder.DecoderConfig.llama(vocab_size=32, hidden_size=16, num_layers=1,
                                       num_heads=2, mlp_dim=24)
  rng = jax.random.PRNGKey(3)
  mesh = parallel.make_mesh()
  params, shardings = parallel.sharded_init(
      lambda: decoder.init_params(config, rng, boxed=True), mesh)
  expected = decoder.init_params(config, rng)  # eager: sharded_init gives its values
  leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert all(isinstance(x, jax.Array) for x in leaves)  # unboxed
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, expected)
  gate = shardings["layer_0"]["mlp"]["gate_proj"]["kernel"]
  assert gate.spec == P("fsdp", "tensor")
  assert params["layer_0"]["mlp"]["gate_proj"]["kernel"].sharding == gate
  assert shardings["embed"]["embedding"].spec == P("tensor", "fsdp")


def test_state_shardings_names_mirrors_and_replicates():
  config = decoder.DecoderConfig.llama(vocab_size=32, hidden_size=16, num_layers=1,
                                       num_heads=2, mlp_dim=24)
  rng = jax.random.PRNGKey(0)
  policy = decoder.init_params(config, rng)
  critic = {"w": nn.Partitioned(jnp.zeros((16, 8)), names=("embed", "mlp"))}
  tx = optax.adam(1e-3)
  state = {"step": jnp.zeros((), jnp.int32), "params": {"policy": policy, "critic": critic},
           "opt": {"policy": tx.init(policy), "critic": tx.init(critic)},
           "frozen": {"reference": policy}, "other": jnp.zeros((16, 24))}
  logical = {"policy": jax.eval_shape(lambda: decoder.init_params(config, rng, boxed=True))}
  mesh = parallel.make_mesh()
  shardings = parallel.state_shardings(jax.eval_shape(lambda: state), mesh, logical=logical)
  assert jax.tree.structure(shardings) == jax.tree.structure(state)  # Boxes stay in place.
  gate = ("layer_0", "mlp", "gate_proj", "kernel")
  pick = lambda tree: functools.reduce(lambda t, k: t[k], gate, tree)  # noqa: E731
  assert pick(shardings["params"]["policy"]).spec == P("fsdp", "tensor")
  assert pick(shardings["frozen"]["reference"]).spec == P("fsdp", "tensor")
  assert pick(shardings["opt"]["policy"][0].mu).spec == P("fsdp", "tensor")
  assert shardings["opt"]["critic"][0].nu["w"].value.spec == P("fsdp", "tensor")
  assert shardings["params"]["critic"]["w"].value.spec == P("fsdp", "tensor")
  # Same shape as the gate kernel but no parameter's key path: replicated, like scalars.
  assert shardings["other"].spec == P() and shardings["step"].spec == P()
  assert shardings["opt"]["policy"][0].count.spec == P()
  placed = jax.device_put(state, shardings)
  assert pick(placed["opt"]["policy"][0].mu).sharding.spec == P("fsdp", "tensor")


def test_batch_sharding_and_shard_batch():
  mesh = parallel.make_mesh()
  assert parallel.batch_sharding(mesh, 3).spec == P(("data", "fsdp"), None, None)
  assert parallel.replicated(mesh).spec == P()
  assert parallel.batch_sharding(mesh, 3, axis=1).spec == P(None, ("data", "fsdp"), None)
  with pytest.raises(ValueError, match="ndim=0"):
    parallel.batch_sharding(mesh, 0)
  batch = {"tokens": np.arange(12, dtype=np.int32).reshape(3, 4), "step": np.int32(7)}
  placed = parallel.shard_batch(batch, mesh)
  assert placed["tokens"].sharding == parallel.batch_sharding(mesh, 2)
  assert placed["step"].sharding == parallel.replicated(mesh)
  np.testing.assert_array_equal(placed["tokens"], batch["tokens"])


def test_rules_from_config():
  assert parallel.rules_from_config(()) == parallel.DEFAULT_RULES
  # JSON turns tuples into lists: they come back as the rule table.
  assert parallel.rules_from_config([["batch", ["data", "fsdp"]], ["embed", None]]) == (
      ("batch", ("data", "fsdp")), ("embed", None))
  with pytest.raises(ValueError, match="mesh.rules entry.*'model'"):
    parallel.rules_from_config([("embed", "model")])
  with pytest.raises(ValueError, match="mesh.rules entry"):
    parallel.rules_from_config([("embed",)])


def test_initialize_distributed_modes():
  off = ml_collections.ConfigDict({"mode": "off", "coordinator_address": "127.0.0.1:1"})
  assert not parallel.initialize_distributed(off)
  assert not parallel.initialize_distributed(ml_collections.ConfigDict({"mode": "auto"}))
  assert not parallel.initialize_distributed(None)
  with pytest.raises(ValueError, match="distributed.mode='sometimes'"):
    parallel.initialize_distributed(ml_collections.ConfigDict({"mode": "sometimes"}))
  with pytest.raises(ValueError, match="distributed.num_processes"):
    parallel.initialize_distributed(ml_collections.ConfigDict(
        {"mode": "on", "coordinator_address": "127.0.0.1:1", "num_processes": 0}))
  assert not jax.distributed.is_initialized()


def test_one_process_helpers():
  mesh = parallel.make_mesh()
  assert parallel.process_rows(mesh, 6) == slice(0, 6)
  batch = {"x": np.arange(6).reshape(3, 2)}
  placed = parallel.global_batch(batch, mesh, axis=1)
  assert placed["x"].sharding == parallel.batch_sharding(mesh, 2, axis=1)
  assert parallel.local_copy(placed, mesh) is placed
  assert parallel.allgather({"n": np.float32(2)})["n"].tolist() == [2.0]
  with parallel.process_zero_first():
    parallel.barrier("nothing to wait for")
  assert parallel.is_main_process()


# ----------------------------------------------------------------------------------------
# 8 fake devices, in a subprocess
# ----------------------------------------------------------------------------------------


def run_check(script: pathlib.Path, *args: str) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, str(script), *args], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=900)
  if proc.returncode:
    pytest.fail(f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  print(json.dumps(result, indent=1))
  return result


@pytest.fixture(scope="module")
def report():
  return run_check(CHECK_SCRIPT)


def test_micro_batched_updates_on_eight_devices_match_the_whole_batch():
  """BC, GRPO (2 epochs × 2 minibatches, KL), ILQL with its trunk and offline ArCHer,
  micro-batched on a (2, 2, 2) mesh, against the one-device whole-batch update."""
  report = run_check(UPDATE_CHECK_SCRIPT, "micro")["micro"]
  assert set(report) == {"bc", "grpo", "ilql", "archer_offline"}
  for name, diffs in report.items():
    assert diffs["batch_sharded"] and diffs["moved"] > 1e-3, (name, diffs)
    assert diffs["params"] < TOL, (name, diffs)


@pytest.mark.parametrize("algorithm", ["archer", "ppo"])
def test_sharded_update_matches_single_device(algorithm):
  """ArCHer (fresh actions sampled inside the update) and PPO on (8, 1, 1), (2, 2, 2) and
  (1, 4, 2) meshes, the state in the layout of `parallel.state_shardings`; on (2, 2, 2) the
  gradients accumulate over micro-batches (`micro_batch_size`) and still equal the one-device
  whole-batch update. One subprocess per
  algorithm, so that pytest-xdist can run the two side by side."""
  report = run_check(UPDATE_CHECK_SCRIPT, algorithm)[algorithm]
  assert set(report) == set(MESHES)
  for mesh, diffs in report.items():
    assert diffs["batch_sharded"] and diffs["out_devices"] == 8, (mesh, diffs)
    assert diffs["layout_kept"], (mesh, diffs)  # The new state has the input's layout.
    for key in ("params", "frozen"):
      assert diffs[key] < TOL, (mesh, key, diffs)
    if "micro_batch_size" in diffs:  # Its metrics are means over micro-batches.
      continue
    assert diffs["metrics"] < TOL, (mesh, diffs)
    assert diffs["fractions"] < 0.01, (mesh, diffs)  # At most a boundary case or two flips.
  # Data parallelism replicates the state; fsdp/tensor meshes split parameters and moments.
  assert report["8x1x1"]["sharded_state"] == 0
  for mesh in ("2x2x2", "1x4x2"):
    assert report[mesh]["sharded_state"] > 0 and report[mesh]["sharded_out"] == report[
        mesh]["sharded_state"], report[mesh]


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("model", MODELS)
def test_sharded_matches_single_device(report, model, mesh):
  diffs = report[model][mesh]
  assert diffs["params"] == 0.0, diffs  # same rng, same values, whatever the layout
  for key in ("loss", "logits", "grads"):
    assert diffs[key] < TOL, (key, diffs)


@pytest.mark.parametrize("model", MODELS)
def test_rules_actually_shard(report, model):
  # Pure data parallelism replicates parameters; fsdp/tensor meshes split them.
  assert report[model]["8x1x1"]["sharded_params"] == 0
  for mesh in ("2x2x2", "1x4x2"):
    assert report[model][mesh]["sharded_params"] > 0, report[model][mesh]


def test_minus_one_and_uneven_split_on_eight_devices(report):
  assert report["mesh_-1"] == [4, 1, 2]
  assert report["uneven_error"] is not None
  assert "['embed']['embedding']" in report["uneven_error"]
  assert "127" in report["uneven_error"]
