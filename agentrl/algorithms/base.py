"""What every algorithm is: `init(rng) -> state` and a jitted `update(state, batch, rng)`.

An algorithm module defines `make(config, models) -> Algorithm`. `config` is the
`algorithm` block of the experiment config (an `ml_collections.ConfigDict`), read once into
the module's `Defaults` dataclass (`defaults.read`: every knob, its default and comment; its
values are static hyperparameters closed over by `update`), `models` the policy it starts
from. The
update is one jitted, donated step composed from the pure losses and estimators:

  algo = agentrl.algorithms.make("bc", config.algorithm, models)
  state = algo.init(jax.random.key(0))
  state, metrics = algo.update(state, batch, rng)        # `state` is donated: use the new one

`Algorithm.source` declares where `batch` comes from (`agentrl.sources`):
  `Rollout()`   a fresh on-policy `TrajectoryBatch` from `agentrl.rollout` (PPO, GRPO, ...);
  `Replay(...)` a dict of utterance transitions sampled from a replay buffer (ArCHer, CHAI);
  `Offline(...)` a `TrajectoryBatch` from an offline dataset (BC, ILQL, MC returns, ...);
  `Filtered(...)` a `TrajectoryBatch` of the best trajectories seen so far (online filtered BC).

Non-finite guard. `apply_gradients` applies an optimizer step only if the loss and every
gradient are finite; otherwise it keeps the old parameters and optimizer state and raises a
flag `nonfinite/<loss name>` in the metrics. The trainer stops on a raised flag, names the
loss, and saves the (unchanged) state for inspection.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from agentrl import sources
from agentrl._math import safe_div
from agentrl.algorithms import defaults
from agentrl.models.decoder import DecoderConfig
from agentrl.sampling import SamplingConfig

Array = jax.Array
Metrics = dict[str, Array]

@flax.struct.dataclass
class TrainState:
  """Everything an update changes; a pytree (checkpointed as a whole).

  Attributes:
    step: Number of updates applied.
    params: Trained parameter trees by name ("policy", "value", "critic", ...).
    opt_states: Optimizer state per entry of `params` that has an optimizer.
    frozen: Trees that updates read but do not train ("reference" policy, "target_critic"
      updated by Polyak averaging, ...).
  """

  step: Array
  params: dict[str, Any]
  opt_states: dict[str, Any]
  frozen: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Models:
  """The policy an algorithm starts from, and how it samples.

  Attributes:
    policy_config: Decoder architecture of the policy.
    policy_params: Initial policy parameters (e.g. behaviour-cloned).
    sampling: How the policy samples utterances inside an update (ArCHer, CHAI).
    pad_id: The tokenizer's padding id.
    tokenizer: The policy's `agentrl.tokenizer.Tokenizer` (a pretrained critic translates
      its ids), or None.
  """

  policy_config: DecoderConfig
  policy_params: Any
  sampling: SamplingConfig
  pad_id: int = 0
  tokenizer: Any = None


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """An initialised algorithm: `init(rng) -> TrainState`, jitted donated `update`."""

  name: str
  #: Where the update's batches come from (`agentrl.sources.Rollout()`, `Replay(...)`, ...).
  source: sources.Spec
  init: Callable[[Array], TrainState]
  update: Callable[[TrainState, Any, Array], tuple[TrainState, Metrics]]
  #: The policy that acts (rollouts, evaluation) given the train state and the plain
  #: `rollout.LMPolicy` of the same sampling settings; None: that LM with
  #: `state.params["policy"]`. CHAI returns its best-of-k decoder, ILQL its Q-guided one.
  acting_policy: Callable[[TrainState, Any], Any] | None = None
  #: Width L of `batch.answer_tokens` the rollout must record (`rollout(answer_length=L)`):
  #: > 0 for information-gain credit (IGPO, A²TGPO), else 0.
  answer_length: int = 0


def optimizer(config, prefix: str = "") -> optax.GradientTransformation:
  """AdamW with global-norm clipping and linear warm-up, from `<prefix>lr` etc. in `config`.

  `config` is an algorithm's `defaults.read` values (a dataclass with `defaults.Optimizer`'s
  fields, or `prefixed_optimizer(prefix, ...)`'s) or a mapping; a mapping's missing keys take
  `defaults.Optimizer`'s defaults.
  """
  if dataclasses.is_dataclass(config):  # A None prefixed knob is the unprefixed one's value.
    get = lambda key: _first(getattr(config, prefix + key), getattr(config, key, None))  # noqa: E731
  else:
    fallback = {f.name: f.default for f in dataclasses.fields(defaults.Optimizer)}
    get = lambda key: config.get(prefix + key, fallback[key])  # noqa: E731
  lr = get("lr")
  if lr is None:
    raise ValueError(f"optimizer: the config has no {prefix}lr")
  warmup = int(get("warmup_steps") or 0)
  schedule = optax.linear_schedule(0.0, lr, warmup) if warmup else lr
  chain = []
  clip = float(get("max_grad_norm") or 0.0)
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  chain.append(optax.adamw(schedule, b1=get("b1"), b2=get("b2"),
                           weight_decay=get("weight_decay")))
  return optax.chain(*chain)


def _first(value, fallback):
  return fallback if value is None else value


def all_finite(*trees) -> Array:
  """True when every leaf of every tree is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for tree in trees for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def apply_gradients(tx: optax.GradientTransformation, params, opt_state, grads, loss: Array, *,
                    name: str) -> tuple[Any, Any, Metrics]:
  """One optimizer step, applied only when `loss` and `grads` are finite.

  Returns `(params, opt_state, metrics)` with `nonfinite/<name>` (1.0 when the step was
  skipped) and `grad_norm/<name>`.
  """
  updates, new_opt_state = tx.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  ok = all_finite(loss, grads)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
  metrics = {f"nonfinite/{name}": 1.0 - ok.astype(jnp.float32),
             f"grad_norm/{name}": optax.tree.norm(grads)}
  return keep(new_params, params), keep(new_opt_state, opt_state), metrics


def nonfinite_losses(metrics: Mapping[str, Any]) -> list[str]:
  """Names of the losses whose update was skipped for a NaN/Inf (host-side check)."""
  return sorted(key.split("/", 1)[1] for key, value in metrics.items()
                if key.startswith("nonfinite/") and float(value) > 0)


def jit_update(update: Callable) -> Callable:
  """Jits an update with its state donated (argument 0)."""
  return jax.jit(update, donate_argnums=0)


# --------------------------------------------------------------------------- the update loop


class Term(NamedTuple):
  """One weighted term of an objective, `coef · loss`, with the loss's weight (tokens, rows or
  turns that it averages over: `losses.aggregate`'s `loss_weight`) kept beside it, so that
  micro-batches accumulate it exactly."""

  coef: Any
  loss: Array
  loss_weight: Array


def term(coef, loss_and_metrics: tuple[Array, Mapping[str, Array]]) -> Term:
  """The `Term` of a pure loss's `(loss, metrics)` (its metrics hold `loss_weight`)."""
  loss, m = loss_and_metrics
  return Term(coef, loss, m["loss_weight"])


def objective_and_grad(loss_fn: Callable, *, micro_batch_size: int | None = None,
                       argnums: int | tuple[int, ...] = 0) -> Callable:
  """`f(*args, mb) -> ((total, losses, metrics), grads)` for `loss_fn(*args, mb) -> (terms,
  metrics)`, where `terms` maps a name to a `Term` and total = Σ coef · loss.

  With `micro_batch_size` m (dividing the rows of `mb`), the gradient is accumulated over
  micro-batches of m rows and divided once: each term's weight W over the whole minibatch is
  read first (from `loss_fn` on the minibatch; only the weights are used, so XLA drops the
  forward pass there), then every micro-batch contributes ∇ Σ coef · loss_m · w_m / W, its
  loss times its own weight being the loss's sum over its rows. This equals the
  full-minibatch gradient whenever the terms' sums and weights add up over rows, as
  `losses.aggregate`'s do in every mode. Memory holds one micro-batch's
  activations. `losses` holds each term's loss on the minibatch; `metrics` are the means of
  `loss_fn`'s metrics over micro-batches.
  """
  def total_of(terms, norms=None):
    parts = [t.coef * (t.loss if norms is None else safe_div(t.loss * t.loss_weight, norms[k]))
             for k, t in terms.items()]
    return functools.reduce(lambda a, b: a + b, parts)

  def full(*args):
    terms, metrics = loss_fn(*args)
    losses = {k: t.loss for k, t in terms.items()}
    return total_of(terms), (losses, metrics)

  full_grad = jax.value_and_grad(full, argnums=argnums, has_aux=True)

  def f(*args):
    *params, mb = args
    rows = jax.tree.leaves(mb)[0].shape[0]
    if not micro_batch_size or micro_batch_size >= rows:
      (total, (losses, metrics)), grads = full_grad(*args)
      return (total, losses, metrics), grads
    if rows % micro_batch_size:
      raise ValueError(f"micro_batch_size={micro_batch_size} does not divide the {rows} rows "
                       "of a minibatch.")
    norms = jax.lax.stop_gradient(
        {k: t.loss_weight for k, t in loss_fn(*params, mb)[0].items()})

    def micro(*a):
      terms, metrics = loss_fn(*a)
      sums = {k: safe_div(t.loss * t.loss_weight, norms[k]) for k, t in terms.items()}
      return total_of(terms, norms), (sums, metrics)

    micro_grad = jax.value_and_grad(micro, argnums=argnums, has_aux=True)
    n = rows // micro_batch_size
    chunks = jax.tree.map(lambda x: x.reshape((n, micro_batch_size) + x.shape[1:]), mb)

    def body(acc, chunk):
      (total, (sums, metrics)), grads = micro_grad(*params, chunk)
      return jax.tree.map(jnp.add, acc, (total, sums, grads)), metrics

    (total, (sums, _)), grads = jax.eval_shape(micro_grad, *params,
                                                jax.tree.map(lambda x: x[0], chunks))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (total, sums, grads))
    (total, losses, grads), metrics = jax.lax.scan(body, zeros, chunks)
    return (total, losses, jax.tree.map(lambda v: jnp.mean(v, 0), metrics)), grads

  return f


def reduce_metrics(steps: Mapping[str, Array], prefix: str | None = None) -> dict[str, Array]:
  """Stacked per-step metrics -> scalars: a skipped step anywhere counts (`nonfinite/`: max),
  everything else is the mean over steps. With `prefix`, every key but the `nonfinite/` and
  `grad_norm/` guards is logged as `<prefix>/<key>`."""
  out = {}
  for key, value in steps.items():
    guard = key.startswith(("nonfinite/", "grad_norm/"))
    name = key if guard or prefix is None else f"{prefix}/{key}"
    out[name] = jnp.max(value) if key.startswith("nonfinite/") else jnp.mean(value)
  return out


def epochs_scan(step: Callable, carry, data, rng: Array, *, epochs: int, minibatches: int,
                shuffle: bool = True, name: str = "update"):
  """`epochs` passes over `data` (a pytree of [rows, ...] arrays) in `minibatches` equal row
  slices, each `step(carry, minibatch) -> (carry, metrics)`; the rows are permuted per epoch
  (with `rng` split per epoch) when `shuffle` and `minibatches` > 1. Returns (carry, metrics
  stacked [epochs, minibatches])."""
  rows = jax.tree.leaves(data)[0].shape[0]
  if epochs < 1 or minibatches < 1:
    raise ValueError(f"{name}: epochs={epochs} and minibatches={minibatches} must be >= 1.")
  if rows % minibatches:
    raise ValueError(f"{name}: batch size {rows} is not divisible by "
                     f"minibatches={minibatches}.")
  size = rows // minibatches

  def epoch(carry, key):
    d = data
    if shuffle and minibatches > 1:
      perm = jax.random.permutation(key, rows)
      d = jax.tree.map(lambda x: x[perm], d)
    d = jax.tree.map(lambda x: x.reshape((minibatches, size) + x.shape[1:]), d)
    return jax.lax.scan(step, carry, d)

  return jax.lax.scan(epoch, carry, jax.random.split(rng, epochs))
