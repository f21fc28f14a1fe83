"""Name lookup shared by the registries of estimators, credit functions and losses.

Each registry is a plain dict from name to function; the valid names in an error are read
from the dict itself, so adding an entry needs no second edit.
"""

from typing import Callable, Mapping


def lookup(table: Mapping[str, Callable], name: str, kind: str) -> Callable:
  """`table[name]`, or a ValueError naming the unknown `kind` and listing the valid names."""
  try:
    return table[name]
  except KeyError:
    raise ValueError(f"Unknown {kind} {name!r}; valid names: {', '.join(sorted(table))}."
                     ) from None
