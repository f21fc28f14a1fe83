"""Experiment configs: loading, command-line overrides, saving and resume checks.

Experiment configs are Python files under `experiments/configs/` that define
`get_config(variant)` returning an `ml_collections.ConfigDict`; `NAME.py:smoke` selects a variant
(the text after the colon is passed to `get_config`; without a colon `get_config()` is called with
no argument, as `ml_collections.config_flags` does). Every config handed out here is locked, so a
typo such as `config.algorithm.lr_typo` fails in code as well as on the command line.

Overrides are `key.path=value` strings. The value is converted following the type of the existing
field (`ConfigDict.get_type`, so placeholders count with their declared type):

  bool    true/false, yes/no, on/off, 1/0 (case-insensitive)
  int     `3`, `-2`, `1_000`, and integral floats such as `1e3`
  float   anything `float()` accepts (`1e-4`, `inf`, `nan`)
  str     the raw text
  tuple / list   a Python literal (`(1, 2)`, `[1, 2]`) or comma-separated `1,2`; elements follow
          the type of the existing first element
  None    (an unset field without a declared type) a Python literal if the text is one, else the
          raw string

An unknown key raises `ValueError` naming the bad key and listing the valid keys at that level,
with a "did you mean" suggestion.

With absl, `ml_collections.config_flags.DEFINE_config_file` parses `--config.key=value` overrides
itself, but an unknown key ends in a bare `AttributeError: "'lr_typo'"` traceback (raised while
the flag is being defined or parsed), with no list of valid keys. `define_config_flag` wraps it:
it first checks every `--config.*` override in argv against the selected config and exits with a
readable error, then defines the flag exactly as `DEFINE_config_file` would.

On resume, the config saved in the run directory (`save_config`) is compared with the current
one (`check_resume_compatible`); keys listed as resumable (e.g. `total_iterations`) may differ.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import json
import math
import os
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "configs")
CONFIG_FILENAME = "config.json"
# Keys that may change between a run and its resumption (matched as dotted-path suffixes).
# The mesh and the processes may change: checkpoints restore into any layout.
DEFAULT_RESUMABLE_KEYS = ("total_iterations", "total_steps", "mesh.data", "mesh.fsdp",
                          "mesh.tensor", "mesh.rules", "distributed.mode",
                          "distributed.coordinator_address", "distributed.num_processes",
                          "distributed.process_id", "distributed.local_device_ids")

_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


# ----------------------------------------------------------------------------- loading


def resolve_config_path(path: str) -> str:
  """Returns the file for `path`: as given if it exists, else `experiments/configs/<path>[.py]`."""
  if os.path.isfile(path):
    return path
  for candidate in (os.path.join(CONFIG_DIR, path), os.path.join(CONFIG_DIR, path + ".py")):
    if os.path.isfile(candidate):
      return candidate
  raise FileNotFoundError(f"config file {path!r} not found (also looked in {CONFIG_DIR})")


def _split_variant(path_with_variant: str) -> tuple[str, Optional[str]]:
  path, sep, variant = path_with_variant.partition(":")
  return path, (variant if sep else None)


def load_config(path_with_variant: str, overrides: Sequence[str] = ()) -> ConfigDict:
  """Loads `path.py[:variant]`, applies `key=value` overrides and returns the locked config.

  Args:
    path_with_variant: a config file path (or a name under `experiments/configs/`), optionally
      followed by `:variant`, which is passed to the file's `get_config`.
    overrides: strings `dotted.key=value`; see the module docstring for the conversions.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a malformed override, an unknown key, or a value that does not convert.
  """
  path, variant = _split_variant(path_with_variant)
  path = resolve_config_path(path)
  module_name = "_agentrl_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(module_name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"cannot import config file {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config()")
  config = module.get_config() if variant is None else module.get_config(variant)
  if not isinstance(config, ConfigDict):
    config = ConfigDict(config)
  config.lock()
  apply_overrides(config, overrides)
  return config


# ----------------------------------------------------------------------------- overrides


def _unknown_key_error(bad: str, valid: Iterable[str], where: str) -> ValueError:
  valid = sorted(valid)
  msg = f"unknown config key {bad!r}"
  if where:
    msg += f" under {where!r}"
  close = difflib.get_close_matches(bad.rsplit(".", 1)[-1], valid, n=1)
  if close:
    prefix = where + "." if where else ""
    msg += f"; did you mean {prefix + close[0]!r}?"
  msg += f" Valid keys{' under ' + repr(where) if where else ''}: {', '.join(valid)}"
  return ValueError(msg)


def _strip_index(part: str) -> str:
  """`dims[0]` -> `dims` (config_flags accepts indexed paths; the index is not a key)."""
  return part.split("[", 1)[0]


def check_key(config: ConfigDict, key: str) -> tuple[ConfigDict, str]:
  """Checks that dotted `key` exists in `config`; returns (parent ConfigDict, leaf name).

  Raises:
    ValueError: naming the first unknown component and listing the valid keys at that level.
  """
  parts = [_strip_index(p) for p in key.split(".")]
  if not all(parts):
    raise ValueError(f"malformed config key {key!r}")
  node = config
  for i, part in enumerate(parts):
    where = ".".join(parts[:i])
    if not isinstance(node, ConfigDict):
      raise ValueError(f"config key {where!r} is a {type(node).__name__}, not a nested config, "
                       f"so {key!r} does not exist")
    if part not in node:
      raise _unknown_key_error(part, node.keys(), where)
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def _parse_bool(text: str) -> bool:
  low = text.strip().lower()
  if low in _TRUE:
    return True
  if low in _FALSE:
    return False
  raise ValueError(f"expected a boolean (true/false/1/0), got {text!r}")


def _parse_int(text: str) -> int:
  text = text.strip()
  try:
    return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
  except ValueError:
    pass
  value = float(text)  # `1e3` -> 1000; raises ValueError on garbage
  if not value.is_integer():
    raise ValueError(f"expected an integer, got {text!r}")
  return int(value)


def _parse_literal(text: str) -> Any:
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return text


def _convert_sequence(text: str, like: Sequence[Any], kind: type) -> Any:
  value = _parse_literal(text)
  if not isinstance(value, (tuple, list)):
    stripped = text.strip().strip("()[]")
    items = [s.strip() for s in stripped.split(",")] if stripped.strip() else []
    value = [_parse_literal(s) for s in items if s]
  if like:
    elem = type(like[0])
    if elem in (bool, int, float, str):
      value = [convert_value(str(v), elem) for v in value]
  return kind(value)


def convert_value(text: str, target_type: Optional[type], like: Any = None) -> Any:
  """Converts command-line `text` to `target_type` (see the module docstring)."""
  if target_type is bool:
    return _parse_bool(text)
  if target_type is int:
    return _parse_int(text)
  if target_type is float:
    return float(text)
  if target_type is str:
    return text
  if target_type in (tuple, list):
    return _convert_sequence(text, like if isinstance(like, (tuple, list)) else (), target_type)
  if target_type is None or target_type is type(None):
    return _parse_literal(text)
  if isinstance(target_type, type) and issubclass(target_type, ConfigDict):
    raise ValueError("cannot override a nested config with a single value; set its fields")
  try:
    return target_type(text)
  except Exception as e:  # an enum, a custom class, ...
    raise ValueError(f"cannot convert {text!r} to {target_type.__name__}: {e}") from e


def set_value(config: ConfigDict, key: str, text: str) -> None:
  """Sets dotted `key` of `config` from command-line `text`, converting to the field's type."""
  if "[" in key:
    raise ValueError(f"indexed overrides are not supported here: {key!r}; set the whole value")
  parent, leaf = check_key(config, key)
  try:
    target_type = parent.get_type(leaf)
  except (AttributeError, KeyError, TypeError):
    target_type = type(parent[leaf])
  try:
    value = convert_value(text, target_type, parent[leaf])
  except ValueError as e:
    raise ValueError(f"bad value for config key {key!r}: {e}") from None
  try:
    with parent.ignore_type() if target_type is type(None) else contextlib.nullcontext():
      parent[leaf] = value
  except TypeError as e:
    raise ValueError(f"bad value for config key {key!r}: {e}") from None


def apply_overrides(config: ConfigDict, overrides: Sequence[str]) -> ConfigDict:
  """Applies `key=value` strings in order (in place) and returns `config`."""
  for item in overrides:
    key, sep, text = item.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key:
      raise ValueError(f"override {item!r} is not of the form key=value")
    set_value(config, key, text)
  return config


def override_keys_from_argv(argv: Sequence[str], flag_name: str = "config") -> list[str]:
  """Returns the dotted keys of all `--<flag_name>.key[=value]` arguments in argv.

  Handles `-`/`--` prefixes and the absl boolean form `--noconfig.key`.
  """
  keys = []
  for arg in argv:
    if arg == "--":
      break
    name = arg.lstrip("-").split("=", 1)[0]
    if not arg.startswith("-"):
      continue
    for prefix in (flag_name + ".", "no" + flag_name + "."):
      if name.startswith(prefix):
        keys.append(name[len(prefix):])
        break
  return keys


def config_arg_from_argv(argv: Sequence[str], flag_name: str = "config") -> Optional[str]:
  """Returns the value of `--<flag_name>=...` (or `--<flag_name> VALUE`) in argv, else None."""
  found = None
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    if not arg.startswith("-"):
      continue
    name, sep, value = arg.lstrip("-").partition("=")
    if name == flag_name:
      if sep:
        found = value
      elif i + 1 < len(argv):
        found = argv[i + 1]
  return found


def validate_overrides(config: ConfigDict, argv: Sequence[str], flag_name: str = "config") -> None:
  """Checks that every `--<flag_name>.key` override in argv names an existing config key.

  Raises:
    ValueError: naming the flag, the unknown key and the valid keys at that level.
  """
  for key in override_keys_from_argv(argv, flag_name):
    try:
      check_key(config, key)
    except ValueError as e:
      raise ValueError(f"--{flag_name}.{key}: {e}") from None


def define_config_flag(name: str = "config", default: Optional[str] = None, *,
                       argv: Optional[Sequence[str]] = None, exit_on_error: bool = True,
                       help_string: str = "Experiment config file[:variant].", **kwargs):
  """`config_flags.DEFINE_config_file` with readable errors for misspelled override keys.

  Call it at module level where `DEFINE_config_file` would be called. It loads the config named
  by `--<name>=...` in argv (or `default`), checks every `--<name>.key` override against it and,
  on an unknown key, exits with status 2 and a message listing the valid keys (or raises
  ValueError when `exit_on_error` is false). The returned holder's `.value` is the locked config
  with overrides applied, as with `DEFINE_config_file`.
  """
  from absl import flags
  from ml_collections import config_flags

  sys_argv = None if argv is None else list(argv)
  argv = list(sys.argv) if argv is None else list(argv)
  try:
    expanded = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
  except Exception:  # an unreadable --flagfile: absl reports it when it parses
    expanded = argv
  target = config_arg_from_argv(expanded, name) or default
  if target is not None and override_keys_from_argv(expanded, name):
    try:
      validate_overrides(load_config(target), expanded, name)
    except ValueError as e:
      if not exit_on_error:
        raise
      sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
      sys.exit(2)
  return config_flags.DEFINE_config_file(name, default, help_string,
                                         sys_argv=sys_argv, **kwargs)


# ----------------------------------------------------------------------------- save / resume


def _jsonable(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # "nan", "inf", "-inf": valid JSON, compared as text
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if hasattr(value, "item") and getattr(value, "shape", None) == ():
    return _jsonable(value.item())
  return repr(value)


def config_to_dict(config: ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  """A JSON-ready nested dict (tuples become lists, non-finite floats and objects strings)."""
  raw = config.to_dict() if isinstance(config, ConfigDict) else dict(config)
  return _jsonable(raw)


def config_to_json(config: ConfigDict | Mapping[str, Any]) -> str:
  """`config_to_dict` as indented, key-sorted JSON text."""
  return json.dumps(config_to_dict(config), indent=2, sort_keys=True)


def config_from_json(path_or_text: str) -> ConfigDict:
  """Reads a config saved by `save_config` / `config_to_json` (a file path or the JSON text).

  Lists come back as lists (JSON has no tuples); `check_resume_compatible` compares the JSON
  forms, so that difference never counts.
  """
  text = path_or_text
  if not path_or_text.lstrip().startswith("{"):
    with open(path_or_text, encoding="utf-8") as f:
      text = f.read()
  return ConfigDict(json.loads(text))


def save_config(config: ConfigDict, run_dir: str, filename: str = CONFIG_FILENAME) -> str:
  """Writes the resolved config as JSON into `run_dir` (atomically); returns the path."""
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, filename)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(config_to_json(config) + "\n")
  os.replace(tmp, path)
  return path


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, Mapping) and tree:
    out: dict[str, Any] = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
  return {prefix: tree}


def diff_configs(a: ConfigDict | Mapping[str, Any],
                 b: ConfigDict | Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """Dotted keys whose values differ (or exist on one side only) -> (a value, b value).

  Values are compared in their JSON form; a key missing on one side shows as `"<missing>"`.
  """
  fa, fb = _flatten(config_to_dict(a)), _flatten(config_to_dict(b))
  missing = "<missing>"
  return {k: (fa.get(k, missing), fb.get(k, missing))
          for k in sorted(set(fa) | set(fb)) if fa.get(k, missing) != fb.get(k, missing)}


def _is_resumable(key: str, resumable: Iterable[str]) -> bool:
  return any(key == r or key.endswith("." + r) for r in resumable)


def check_resume_compatible(saved: ConfigDict | Mapping[str, Any] | str,
                            current: ConfigDict | Mapping[str, Any], *,
                            resumable: Iterable[str] = DEFAULT_RESUMABLE_KEYS) -> None:
  """Raises ValueError if `current` differs from `saved` outside the resumable keys.

  Args:
    saved: the config of the run being resumed: a ConfigDict, a dict, or a run directory / JSON
      file written by `save_config`.
    current: the config of the resuming process.
    resumable: keys allowed to differ; an entry matches a dotted key equal to it or ending in
      `.entry` (so `total_iterations` matches at any depth).
  """
  if isinstance(saved, str):
    path = os.path.join(saved, CONFIG_FILENAME) if os.path.isdir(saved) else saved
    saved = config_from_json(path)
  resumable = tuple(resumable)
  diffs = {k: v for k, v in diff_configs(saved, current).items()
           if not _is_resumable(k, resumable)}
  if diffs:
    lines = [f"  {k}: saved={old!r} current={new!r}" for k, (old, new) in diffs.items()]
    raise ValueError("config differs from the run being resumed in "
                     f"{', '.join(diffs)} (only {', '.join(resumable) or 'nothing'} may change):\n"
                     + "\n".join(lines))
