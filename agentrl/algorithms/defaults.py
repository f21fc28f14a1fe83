"""Every algorithm's hyperparameters in one place: a dataclass of defaults that is also the config.

Each algorithm module declares `Defaults`, a frozen dataclass whose every field is a knob: a
default and a one-line comment (`knob(default, "comment")`). Two functions join it to the
experiment configs:

  config_block(Defaults, "ppo")      the `config.algorithm` block an experiment config starts
                                     from: every field a key (None defaults as typed
                                     placeholders), so `--config.algorithm.clip_high=0.28`
                                     works for every knob the algorithm reads.
  read(Defaults, config, "ppo")      the values an algorithm runs with: the config's keys over
                                     the defaults, each converted to the field's type. A key
                                     that is no field raises a ValueError listing the valid
                                     ones with their comments (`describe`).

Optimizer knobs (`lr`, `weight_decay`, ...) come from `Optimizer`; an algorithm with a second
optimizer adds `prefixed_optimizer("critic_", ...)`'s fields (`critic_lr`, ...).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict


def knob(default: Any, comment: str) -> Any:
  """A dataclass field with its default and its one-line comment."""
  return dataclasses.field(default=default, metadata={"help": comment})


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """AdamW with global-norm clipping and linear warm-up (`base.optimizer`)."""

  lr: float | None = knob(None, "Learning rate (required).")
  weight_decay: float = knob(0.0, "AdamW weight decay.")
  max_grad_norm: float = knob(1.0, "Global-norm gradient clip (0: none).")
  warmup_steps: int = knob(0, "Steps of linear learning-rate warm-up from 0.")
  b1: float = knob(0.9, "Adam β1.")
  b2: float = knob(0.999, "Adam β2.")


def prefixed_optimizer(prefix: str, what: str, *, fallback: bool = False,
                       **defaults: Any) -> type:
  """A dataclass of `Optimizer`'s fields named `<prefix><field>`, for a second optimizer.

  `fallback=True`: every default is None, read as the unprefixed key's value (PPO's value
  optimizer). `defaults` override `Optimizer`'s, by unprefixed name.
  """
  hints = typing.get_type_hints(Optimizer)
  fields = []
  for f in dataclasses.fields(Optimizer):
    if fallback:
      kind, default = _base_type(hints[f.name])[0] | None, None
      comment = f"{what}: {f.metadata['help'].rstrip('.')}; None: the `{f.name}` key's value."
      if f.name == "lr":
        comment = f"{what}: learning rate; None: the `lr` key's value."
    else:
      kind, default = hints[f.name], defaults.get(f.name, f.default)
      comment = f"{what}: {f.metadata['help']}"
      if f.name == "lr":
        comment = f"{what}: learning rate; None: the `lr` key's value."
    fields.append((prefix + f.name, kind, knob(default, comment)))
  name = "".join(part.capitalize() for part in prefix.split("_")) + "Optimizer"
  return dataclasses.make_dataclass(name, fields, frozen=True)


def _base_type(hint: Any) -> tuple[Any, bool]:
  """(the type, whether None is allowed) of a field annotation such as `float | None`."""
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) != 1:
      raise TypeError(f"knob annotations name one type (or it | None); got {hint}")
    return args[0], True
  return hint, False


def _convert(value: Any, hint: Any, where: str) -> Any:
  kind, optional = _base_type(hint)
  if value is None:
    if optional:
      return None
    raise ValueError(f"{where} is None; expected a {kind.__name__}.")
  origin = typing.get_origin(kind) or kind
  if dataclasses.is_dataclass(origin):
    return read(origin, value, where)
  try:
    if origin is bool:
      if not isinstance(value, (bool, int)):
        raise TypeError
      return bool(value)
    if origin is int:
      if isinstance(value, float) and not value.is_integer():
        raise TypeError
      return int(value)
    if origin is float:
      return float(value)
    if origin is tuple:
      return tuple(value)
    if origin is str:
      if not isinstance(value, str):
        raise TypeError
      return value
  except (TypeError, ValueError):
    raise ValueError(f"{where}={value!r}: expected a {getattr(origin, '__name__', origin)}."
                     ) from None
  return value


def values(instance: Any) -> dict[str, Any]:
  """The knobs of a `read` result as keyword arguments (for a dataclass extending it)."""
  return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


def describe(cls: type) -> str:
  """One line per knob of `cls`: `key (default): comment`."""
  lines = []
  for f in dataclasses.fields(cls):
    default = f.default
    if dataclasses.is_dataclass(default):
      lines.append(f"  {f.name}: {f.metadata.get('help', '')}")
      lines += ["  " + line for line in describe(type(default)).splitlines()]
    else:
      lines.append(f"  {f.name} ({default!r}): {f.metadata.get('help', '')}")
  return "\n".join(lines)


def read(cls: type, config: Mapping[str, Any] | ml_collections.ConfigDict | None,
         name: str) -> Any:
  """The `cls` instance of `config`'s values over the defaults (see the module docstring).

  `config` may hold `name` (the algorithm's registry name), which is not a knob.
  """
  given = {} if config is None else {k: config[k] for k in config.keys()}
  given.pop("name", None)
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(given) - fields)
  if unknown:
    raise ValueError(f"{name}: unknown config key(s) {', '.join(unknown)}; the valid keys "
                     f"(default): comment are\n{describe(cls)}")
  hints = typing.get_type_hints(cls)
  return cls(**{k: _convert(v, hints[k], f"{name}.{k}") for k, v in given.items()})


def config_block(cls: type, name: str | None = None, **overrides: Any
                 ) -> ml_collections.ConfigDict:
  """`cls`'s defaults as a ConfigDict (with `name` first when given), then `overrides`."""
  block = ml_collections.ConfigDict()
  if name is not None:
    block.name = name
  hints = typing.get_type_hints(cls)
  for f in dataclasses.fields(cls):
    default = f.default
    if dataclasses.is_dataclass(default):
      block[f.name] = config_block(type(default))
    elif default is None:
      kind = _base_type(hints[f.name])[0]
      block[f.name] = config_dict.placeholder(typing.get_origin(kind) or kind)
    else:
      block[f.name] = default
  block.update(overrides)
  return block
