"""WILT's rule language: the test domain D, rule texts compiled to vectorised truth
functions, and the catalogue of hidden rules (`agentrl.envs.wilt` is the environment).

The test domain D is all integer triples (x, y, z) with elements in [-10, 10] (9261 triples);
two rules are equivalent when they agree on the whole of D, evaluated with vectorised numpy:

  truth_table("x < y < z")                         # a bool array over D
  equivalent("x < y < z", "y > x and z > y")       # True

Rule grammar (text syntax; case-insensitive, whitespace-tolerant):

  rule    := conj ( ("or" | "|" | "||") conj )*
  conj    := unary ( ("and" | "&" | "&&" | ",") unary )*
  unary   := ("not" | "!") unary | "true" | "false" | distinct | pred | chain | "(" rule ")"
  distinct:= "distinct" | "all distinct" | "distinct(x, y, z)"   (x, y, z pairwise different)
  pred    := ("even" | "odd") "(" expr ")" | expr "is" ["not"] ("even" | "odd" | "positive"
             | "negative" | "zero")
  chain   := expr cmp expr (cmp expr)*          ("x < y < z" means x < y and y < z)
  cmp     := "<" | "<=" | ">" | ">=" | "=" | "==" | "!=" | "<>" (also the symbols ≤ ≥ ≠)
  expr    := term (("+" | "-") term)*
  term    := factor (("*" | "%") factor)*       (% is the floor modulo; a % 0 = 0)
  factor  := integer | x | y | z | integer x | "-" factor | "abs(" expr ")" | "(" expr ")"

Aliases: "and"/"&"/"&&"/"∧", "or"/"|"/"||"/"∨", "not"/"!"/"¬", "=="/"=". A trailing period is
ignored. Integer constants are at most 10**6 in absolute value; nesting is at most 30 deep.

Hidden rules come from a catalogue written in this syntax: atoms (orderings and chains such
as "x < y < z", equalities, "distinct", offsets "y = x + 2", "z = x + y", "z = x * y",
"x + z = 2 * y", sums "x + y + z > 0", parity "even(y)", divisibility "z % 3 = 0", signs
"x > 0", magnitudes "abs(z) < 5") and the conjunctions "A and B" and disjunctions "A or B" of
two atoms. The catalogue is deduplicated by truth table on D (the first spelling, atoms first,
is kept) and keeps only rules that are true on at least 10 and false on at least 10 triples
of D.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable

import numpy as np

LOW, HIGH = -10, 10
_SIDE = HIGH - LOW + 1
_R = np.arange(LOW, HIGH + 1, dtype=np.int64)
#: The test domain D as three flat int64 arrays (x, y, z), in lexicographic order.
DOMAIN = tuple(a.ravel() for a in np.meshgrid(_R, _R, _R, indexing="ij"))
DOMAIN_SIZE = _SIDE ** 3
MAX_CONSTANT = 10 ** 6
MAX_DEPTH = 30
MIN_TRUE = 10


class RuleError(ValueError):
  """A rule text that is not in the grammar."""


#: Unicode spellings of the grammar's symbols, for `str.translate`.
UNICODE_SYMBOLS = str.maketrans({"≤": "<=", "≥": ">=", "≠": "!=", "∧": "&", "∨": "|",
                                 "¬": "!", "×": "*", "−": "-", "⋅": "*", "·": "*"})
_TOKEN = re.compile(r"\s*(?:(\d+)|([a-z_]+)|(<=|>=|=<|=>|!=|==|<>|&&|\|\||[<>=!&|()+\-*%,]))")
_CMP = {"<": np.less, "<=": np.less_equal, "=<": np.less_equal, ">": np.greater,
        ">=": np.greater_equal, "=>": np.greater_equal, "=": np.equal, "==": np.equal,
        "!=": np.not_equal, "<>": np.not_equal}
_OR, _AND, _NOT = ("or", "|", "||"), ("and", "&", "&&", ","), ("not", "!")
_VARS = {"x": 0, "y": 1, "z": 2}

Vars = tuple  # (x, y, z) int64 arrays of one shape
Fn = Callable[[Vars], np.ndarray]


def _tokenize(text: str) -> list[str]:
  text = text.lower().translate(UNICODE_SYMBOLS).strip().rstrip(".").strip()
  tokens, pos = [], 0
  while pos < len(text):
    match = _TOKEN.match(text, pos)
    if match is None:
      if text[pos:].strip():
        raise RuleError(f"unexpected character {text[pos:].lstrip()[:1]!r}")
      break
    tokens.append(match.group(match.lastindex))
    pos = match.end()
  return tokens


def _mod(a, b):
  safe = np.where(b == 0, 1, b)
  return np.where(b == 0, 0, np.mod(a, safe))


class _Parser:
  """Recursive-descent parser from rule text to a vectorised truth function."""

  def __init__(self, text: str):
    self.tokens = _tokenize(text)
    self.pos = 0
    self.depth = 0

  def parse(self) -> Fn:
    if not self.tokens:
      raise RuleError("empty rule")
    fn = self.disj()
    if self.pos != len(self.tokens):
      raise RuleError(f"unexpected {self.tokens[self.pos]!r}")
    return fn

  # --- token helpers ---
  def peek(self, k: int = 0) -> str | None:
    i = self.pos + k
    return self.tokens[i] if i < len(self.tokens) else None

  def take(self, *options: str) -> str | None:
    tok = self.peek()
    if tok is not None and tok in options:
      self.pos += 1
      return tok
    return None

  def expect(self, tok: str):
    if self.take(tok) is None:
      raise RuleError(f"expected {tok!r}, got {self.peek()!r}")

  def enter(self):
    self.depth += 1
    if self.depth > MAX_DEPTH:
      raise RuleError("the rule is nested too deeply")

  # --- boolean level ---
  def disj(self) -> Fn:
    parts = [self.conj()]
    while self.take(*_OR):
      parts.append(self.conj())
    return parts[0] if len(parts) == 1 else _fold(np.logical_or, parts)

  def conj(self) -> Fn:
    parts = [self.unary()]
    while self.take(*_AND):
      parts.append(self.unary())
    return parts[0] if len(parts) == 1 else _fold(np.logical_and, parts)

  def unary(self) -> Fn:
    self.enter()
    try:
      if self.take(*_NOT):
        inner = self.unary()
        return lambda v: np.logical_not(inner(v))
      if self.take("true"):
        return lambda v: np.ones(np.shape(v[0]), bool)
      if self.take("false"):
        return lambda v: np.zeros(np.shape(v[0]), bool)
      if self.peek() in ("all", "distinct"):
        return self.distinct()
      if self.peek() in ("even", "odd") and self.peek(1) == "(":
        parity = self.take("even", "odd")
        self.expect("(")
        arg = self.expr()
        self.expect(")")
        return _parity(arg, parity == "odd")
      start = self.pos
      try:
        return self.chain()
      except RuleError:
        self.pos = start
        if self.peek() != "(":
          raise
      self.expect("(")
      inner = self.disj()
      self.expect(")")
      return inner
    finally:
      self.depth -= 1

  def distinct(self) -> Fn:
    self.take("all")
    self.expect("distinct")
    if self.take("("):
      args = [self.expr()]
      while self.take(","):
        args.append(self.expr())
      self.expect(")")
    else:
      args = [lambda v, i=i: v[i] for i in range(3)]

    def fn(v):
      vals = [a(v) for a in args]
      out = np.ones(np.broadcast(*vals, v[0]).shape, bool)
      for i in range(len(vals)):
        for j in range(i + 1, len(vals)):
          out &= vals[i] != vals[j]
      return out
    return fn

  def chain(self) -> Fn:
    left = self.expr()
    if self.take("is"):
      negate = self.take("not") is not None
      word = self.take("even", "odd", "positive", "negative", "zero")
      if word is None:
        raise RuleError("expected even, odd, positive, negative or zero after 'is'")
      fn = (_parity(left, word == "odd") if word in ("even", "odd") else
            _sign(left, word))
      return (lambda v: np.logical_not(fn(v))) if negate else fn
    parts = []
    while self.peek() in _CMP:
      op = _CMP[self.take(self.peek())]
      right = self.expr()
      parts.append(lambda v, op=op, a=left, b=right: op(a(v), b(v)))
      left = right
    if not parts:
      raise RuleError(f"expected a comparison, got {self.peek()!r}")
    return parts[0] if len(parts) == 1 else _fold(np.logical_and, parts)

  # --- arithmetic level ---
  def expr(self) -> Fn:
    out = self.term()
    while self.peek() in ("+", "-"):
      op = np.add if self.take("+", "-") == "+" else np.subtract
      right = self.term()
      out = lambda v, op=op, a=out, b=right: op(a(v), b(v))
    return out

  def term(self) -> Fn:
    out = self.factor()
    while self.peek() in ("*", "%"):
      op = np.multiply if self.take("*", "%") == "*" else _mod
      right = self.factor()
      out = lambda v, op=op, a=out, b=right: op(a(v), b(v))
    return out

  def factor(self) -> Fn:
    self.enter()
    try:
      tok = self.peek()
      if tok is None:
        raise RuleError("the rule ends too early")
      if self.take("-"):
        inner = self.factor()
        return lambda v: np.negative(inner(v))
      if self.take("+"):
        return self.factor()
      if tok.isdigit():
        self.pos += 1
        if len(tok) > 7 or int(tok) > MAX_CONSTANT:
          raise RuleError(f"the constant {tok[:12]} is too large")
        const = np.array([int(tok)], np.int64)
        if self.peek() in _VARS:  # "2x"
          var = _VARS[self.take(self.peek())]
          return lambda v: const * v[var]
        return lambda v: const
      if tok in _VARS:
        self.pos += 1
        var = _VARS[tok]
        return lambda v: v[var]
      if self.take("abs"):
        self.expect("(")
        inner = self.expr()
        self.expect(")")
        return lambda v: np.abs(inner(v))
      if self.take("("):
        inner = self.expr()
        self.expect(")")
        return inner
      raise RuleError(f"unexpected {tok!r}")
    finally:
      self.depth -= 1


def _fold(op, parts: list[Fn]) -> Fn:
  def fn(v):
    out = parts[0](v)
    for p in parts[1:]:
      out = op(out, p(v))
    return out
  return fn


def _parity(arg: Fn, odd: bool) -> Fn:
  return lambda v: (np.mod(arg(v), 2) == 1) if odd else (np.mod(arg(v), 2) == 0)


def _sign(arg: Fn, word: str) -> Fn:
  op = {"positive": np.greater, "negative": np.less, "zero": np.equal}[word]
  return lambda v: op(arg(v), 0)


def compile_rule(text: str) -> Fn:
  """Parses `text` (the grammar above) into a function of (x, y, z) arrays; RuleError if bad."""
  try:
    return _Parser(text).parse()
  except RecursionError as e:
    raise RuleError("the rule is nested too deeply") from e


def evaluate(rule: str | Fn, triples) -> np.ndarray:
  """The truth values of `rule` on triples (a (3,) or (n, 3) array-like of ints)."""
  fn = compile_rule(rule) if isinstance(rule, str) else rule
  t = np.asarray(triples, np.int64).reshape(-1, 3)
  with np.errstate(all="ignore"):
    out = fn((t[:, 0], t[:, 1], t[:, 2]))
  return np.broadcast_to(np.asarray(out, bool), (len(t),)).copy()


def truth_table(rule: str | Fn) -> np.ndarray:
  """The truth values of `rule` on the whole domain D, a bool array of DOMAIN_SIZE."""
  fn = compile_rule(rule) if isinstance(rule, str) else rule
  with np.errstate(all="ignore"):
    out = fn(DOMAIN)
  return np.broadcast_to(np.asarray(out, bool), (DOMAIN_SIZE,)).copy()


def equivalent(a: str, b: str) -> bool:
  """Whether rules `a` and `b` agree on every triple of the domain D."""
  return bool(np.array_equal(truth_table(a), truth_table(b)))


def domain_index(triple) -> int | None:
  """The position of `triple` in D's flat order, or None outside D."""
  a, b, c = (int(t) for t in triple)
  if not all(LOW <= t <= HIGH for t in (a, b, c)):
    return None
  return ((a - LOW) * _SIDE + (b - LOW)) * _SIDE + (c - LOW)


# --- the rule catalogue ---------------------------------------------------------------------

_PAIRS = (("x", "y"), ("y", "z"), ("x", "z"))


def catalogue_atoms() -> list[str]:
  """The atom rules, in the grammar's text syntax (before deduplication)."""
  atoms = ["x < y < z", "x > y > z", "x <= y <= z", "x >= y >= z", "x = y = z", "distinct",
           "y < x < z", "x < z < y", "z < x < y", "y < z < x"]
  for a, b in _PAIRS:
    atoms += [f"{a} < {b}", f"{a} = {b}", f"{a} != {b}"]
  for a, b in _PAIRS:
    atoms += [f"{b} = {a} + {k}" for k in (1, 2, 3)] + [f"{b} = {a} - {k}" for k in (1, 2)]
  atoms += ["z = x + y", "z = x - y", "z = x * y", "x + z = 2 * y", "y = 2 * x", "z = 2 * y",
            "x + y + z = 0", "x + y + z > 0", "x + y + z < 0", "x + y + z > 10",
            "x + y > z", "x * y * z > 0", "x * y > 0", "x * y < z"]
  for v in "xyz":
    atoms += [f"even({v})", f"odd({v})", f"{v} % 3 = 0", f"{v} > 0", f"{v} < 0", f"{v} >= 0",
              f"{v} > 5", f"abs({v}) < 5"]
  atoms += ["even(x + y + z)", "(x + y + z) % 3 = 0", "even(x * y * z)"]
  return atoms


@dataclasses.dataclass(frozen=True)
class Catalogue:
  """The deduplicated hidden-rule catalogue.

  Attributes:
    texts: The rules' text (atoms first, then compounds).
    num_atoms: How many of `texts` are atoms.
    bits: (DOMAIN_SIZE, words) uint64: bit i of row d says whether rule i holds on triple d.
  """

  texts: tuple[str, ...]
  num_atoms: int
  bits: np.ndarray

  def all_rules(self) -> np.ndarray:
    """The bitset of all rules (the version space before any observation)."""
    return _pack(np.ones((1, len(self.texts)), bool))[0]


def _pack(rows: np.ndarray) -> np.ndarray:
  """Packs a (n, k) bool array into (n, ceil(k / 64)) uint64 words, bit j of row r = rows[r, j]."""
  words = -(-rows.shape[1] // 64)
  padded = np.zeros((rows.shape[0], words * 64), bool)
  padded[:, :rows.shape[1]] = rows
  return np.packbits(padded, axis=1, bitorder="little").view("<u8")


def members(bitset: np.ndarray) -> np.ndarray:
  """The indices of the set bits of a uint64 bitset."""
  return np.flatnonzero(np.unpackbits(bitset.view(np.uint8), bitorder="little"))


@functools.cache
def catalogue() -> Catalogue:
  """Builds (once) the catalogue of distinct, non-degenerate hidden rules."""
  seen: set[bytes] = set()
  texts, tables = [], []

  def add(text: str, table: np.ndarray):
    count = int(table.sum())
    if count < MIN_TRUE or count > DOMAIN_SIZE - MIN_TRUE:
      return
    key = np.packbits(table).tobytes()
    if key not in seen:
      seen.add(key)
      texts.append(text)
      tables.append(table)

  atom_texts = catalogue_atoms()
  atom_tables = np.stack([truth_table(t) for t in atom_texts])
  for text, table in zip(atom_texts, atom_tables):
    add(text, table)
  num_atoms = len(texts)
  for word, op in (("and", np.logical_and), ("or", np.logical_or)):
    for i in range(len(atom_texts)):
      block = op(atom_tables[i], atom_tables[i + 1:])
      for j, table in enumerate(block, start=i + 1):
        add(f"{atom_texts[i]} {word} {atom_texts[j]}", table)
  return Catalogue(tuple(texts), num_atoms, _pack(np.stack(tables).T))
