"""Tests for agentrl.checkpoint: exact round trips, retention, atomicity and clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agentrl import checkpoint, replay


def _state(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(3,)), jnp.bfloat16),
            "n": jnp.asarray(rng.integers(-1000, 1000, (5,)), jnp.int32)}
  opt = optax.adam(1e-2)
  opt_state = opt.init(params["w"])
  _, opt_state = opt.update(jnp.ones((4, 3)), opt_state, params["w"])  # non-zero moments
  return {"params": params, "opt": opt_state,
          "key": jax.random.split(jax.random.key(seed + 1), 3),
          "rbg_key": jax.random.key(seed, impl="rbg"),
          "raw_key": jax.random.PRNGKey(seed + 2),
          "host": np.arange(6, dtype=np.int64).reshape(2, 3) + seed, "iteration": 7 + seed}


def _assert_bitwise_equal(a, b):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    if checkpoint._is_key(x):
      assert x.dtype == y.dtype
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8))


def _abstract(tree, sharding):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
      if isinstance(x, jax.Array) else x, tree)


def test_round_trip_is_exact_with_extras_and_numpy_rng(tmp_path):
  state = _state()
  rng = np.random.default_rng(0)
  rng.random(3)
  buf = replay.ReplayBuffer({"x": ((2,), np.int32), "m": ((), np.bool_)}, capacity=8)
  buf.add({"x": np.arange(10, dtype=np.int32).reshape(5, 2), "m": np.arange(5) % 2 == 0})
  meta = {"iteration": 3, "np_rng": rng.bit_generator.state, "config": {"lr": 1e-3},
          "count": np.int64(5)}
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(10, state=state, extras=buf.state_dict(), metadata=meta)
    ckpt.wait()
    assert ckpt.latest_step() == 10 and ckpt.all_steps() == [10]
    expected_next = rng.random(4)

    template = jax.tree.map(jnp.zeros_like, _state(1))  # values differ, structure equal
    template["host"], template["iteration"] = np.zeros((2, 3), np.int64), 0
    got, extras, got_meta = ckpt.restore(state_template=template)
  _assert_bitwise_equal(got, state)
  assert got["key"].dtype == state["key"].dtype and got["rbg_key"].dtype == state["rbg_key"].dtype
  assert isinstance(got["host"], np.ndarray) and got["iteration"] == 7
  assert got_meta["iteration"] == 3 and got_meta["count"] == 5 and got_meta["config"]["lr"] == 1e-3
  restored_rng = np.random.default_rng()
  restored_rng.bit_generator.state = got_meta["np_rng"]
  np.testing.assert_array_equal(restored_rng.random(4), expected_next)
  buf2 = replay.ReplayBuffer(buf.spec, capacity=8)
  buf2.load_state_dict(extras)
  for name in buf.spec:
    np.testing.assert_array_equal(buf2.state_dict()["fields"][name],
                                  buf.state_dict()["fields"][name])
  # The restored keys draw the same numbers.
  np.testing.assert_array_equal(jax.random.normal(got["key"][1], (3,)),
                                jax.random.normal(state["key"][1], (3,)))


def test_restore_onto_abstract_single_device_sharding_templates(tmp_path):
  state = _state()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state=state)
    ckpt.wait()
    got, extras, meta = ckpt.restore(state_template=_abstract(state, sharding))
  assert extras is None and meta is None
  _assert_bitwise_equal(got, state)
  for leaf in jax.tree.leaves(got):
    if isinstance(leaf, jax.Array):
      assert leaf.sharding == sharding


def test_abstract_template_without_shardings_restores_onto_the_default_device(tmp_path):
  # `jax.eval_shape` templates carry no sharding: whatever layout saved the checkpoint
  # (another mesh, several processes), it restores onto one device.
  state = {k: v for k, v in _state().items() if k not in ("host", "iteration")}
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state=state)
    ckpt.wait()
    got, _, _ = ckpt.restore(state_template=jax.eval_shape(lambda: state))
  _assert_bitwise_equal(got, state)
  for leaf in jax.tree.leaves(got):
    if isinstance(leaf, jax.Array):
      assert leaf.sharding == jax.sharding.SingleDeviceSharding(jax.devices()[0])


def test_template_dtype_is_honoured(tmp_path):
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state={"w": jnp.arange(4, dtype=jnp.float32)})
    ckpt.wait()
    got, _, _ = ckpt.restore(state_template={"w": jax.ShapeDtypeStruct((4,), jnp.bfloat16)})
  assert got["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(got["w"], np.float32), [0, 1, 2, 3])


def test_max_to_keep_interval_and_restore_of_given_step(tmp_path):
  template = {"v": jax.ShapeDtypeStruct((2,), jnp.int32)}
  with checkpoint.Checkpointer(tmp_path, max_to_keep=2, save_interval_steps=2) as ckpt:
    saved = [ckpt.save(s, state={"v": jnp.full((2,), s, jnp.int32)}, metadata={"s": s})
             for s in range(1, 8)]
    assert saved == [True, True, False, True, False, True, False]  # the first save always
    assert ckpt.save(7, state={"v": jnp.full((2,), 7, jnp.int32)}, metadata={"s": 7},
                     force=True)
    ckpt.wait()
    assert ckpt.all_steps() == [6, 7] and ckpt.latest_step() == 7
    got, _, meta = ckpt.restore(6, state_template=template)
    assert got["v"].tolist() == [6, 6] and meta == {"s": 6}
    assert ckpt.read_metadata() == {"s": 7}
    with pytest.raises(FileNotFoundError, match=r"step 4 .*\[6, 7\]"):
      ckpt.restore(4, state_template=template)


def test_arrays_modified_after_save_do_not_leak_into_checkpoint(tmp_path):
  host = np.zeros((256, 256), np.float32)
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state={"a": jnp.zeros(2)}, extras={"buffer": host})
    host[:] = 1.0
    ckpt.wait()
    _, extras, _ = ckpt.restore(state_template={"a": jnp.zeros(2)})
  assert extras["buffer"].max() == 0.0


def test_empty_directory_error_names_it(tmp_path):
  directory = tmp_path / "nothing_here"
  with checkpoint.Checkpointer(directory) as ckpt:
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    with pytest.raises(FileNotFoundError, match="nothing_here"):
      ckpt.restore(state_template={"a": jnp.zeros(2)})


@pytest.mark.parametrize("template, needle", [
    ({"params": {"w": jnp.zeros(2), "extra": jnp.zeros(1)}, "key": jax.random.key(0)},
     r"\['params'\]\['extra'\] is in the template"),
    ({"params": {"w": jnp.zeros(2)}}, r"\['key'\] is in the checkpoint"),
    ({"params": {"w": jnp.zeros(3)}, "key": jax.random.key(0)}, r"\['params'\]\['w'\].*shape"),
    ({"params": {"w": jnp.zeros(2)}, "key": jax.random.PRNGKey(0)}, r"\['key'\]"),
])
def test_mismatching_template_names_the_key_path(tmp_path, template, needle):
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state={"params": {"w": jnp.ones(2)}, "key": jax.random.key(1)})
    ckpt.wait()
    with pytest.raises(ValueError, match=needle):
      ckpt.restore(state_template=template)


def test_incomplete_save_directory_is_ignored(tmp_path):
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state={"a": jnp.arange(3)})
  partial = tmp_path / "2.orbax-checkpoint-tmp"  # what a save killed before its rename leaves
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "_METADATA").write_text("{truncated")
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 1 and ckpt.all_steps() == [1]
    got, _, _ = ckpt.restore(state_template={"a": jnp.zeros(3, jnp.int32)})
    assert got["a"].tolist() == [0, 1, 2]
    ckpt.save(2, state={"a": jnp.arange(3) + 5})
    ckpt.wait()
    assert ckpt.latest_step() == 2


_KILLED_SAVE = textwrap.dedent("""
  import os, signal, sys, threading, time
  import jax.numpy as jnp, numpy as np
  from agentrl import checkpoint
  directory = sys.argv[1]
  ckpt = checkpoint.Checkpointer(directory)
  ckpt.save(1, state={"a": jnp.arange(3)}, metadata={"step": 1})
  ckpt.wait()
  def kill_when_tmp_dir_appears():
    while not any(".orbax-checkpoint-tmp" in n for n in os.listdir(directory)):
      time.sleep(0.0005)
    os.kill(os.getpid(), signal.SIGKILL)
  threading.Thread(target=kill_when_tmp_dir_appears, daemon=True).start()
  big = np.ones((4096, 4096), np.float32)  # 64 MB: the save is still running when killed
  ckpt.save(2, state={"a": jnp.arange(3) + 1}, extras={"big": big}, metadata={"step": 2})
  ckpt.wait()
  time.sleep(5)
""")


def test_save_killed_mid_write_leaves_previous_checkpoint(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(tmp_path)], env=env,
                        capture_output=True, timeout=120)
  assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
  names = os.listdir(tmp_path)
  assert "1" in names and any(".orbax-checkpoint-tmp" in n for n in names), names
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 1
    got, extras, meta = ckpt.restore(state_template={"a": jnp.zeros(3, jnp.int32)})
  assert got["a"].tolist() == [0, 1, 2] and extras is None and meta == {"step": 1}


def test_zero_size_extras_round_trip_and_zero_size_state_is_refused(tmp_path):
  empty = replay.ReplayBuffer(replay.transition_spec(4, 2), capacity=10)
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state={"a": jnp.zeros(2)}, extras=empty.state_dict())
    ckpt.wait()
    _, extras, _ = ckpt.restore(state_template={"a": jnp.zeros(2)})
    assert extras["fields"]["state"].shape == (0, 4) and extras["fields"]["done"].dtype == bool
    restored = replay.ReplayBuffer(replay.transition_spec(4, 2), capacity=10)
    restored.load_state_dict(extras)
    assert len(restored) == 0
    with pytest.raises(ValueError, match=r"\['b'\] has zero size"):
      ckpt.save(2, state={"a": jnp.zeros(2), "b": jnp.zeros((0, 3))})
