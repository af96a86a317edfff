"""Rule conditions: a small, safe expression language over feature columns.

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | "is_missing" "(" name ")" | comparison
    comparison := operand OP operand        OP: < <= > >= == !=
                | name "in" "[" string ("," string)* "]"
    operand    := feature name | `quoted name` | number | "string"

Conditions compile to a function of a (N, d) array that returns a (N,) bool mask; no
``eval`` is ever used. With a bundle's :class:`~shared.schema.Schema`, names are its raw
fields: a category is compared with strings (``country == "XX"``, ``device in ["web",
"unknown"]``; a value outside the vocabulary is refused: name it when training, see
:func:`categories_named`), a number with numbers (false where the value is missing),
and ``is_missing(name)`` tests either.

>>> pred = compile_condition("V14 < -1.5 and not (amount >= 100)", ["V14", "amount"])
>>> import numpy as np
>>> pred(np.array([[-2.0, 50.0], [-2.0, 150.0], [0.0, 10.0]])).tolist()
[True, False, False]
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence

import numpy as np

from shared.schema import MISSING, OTHER, CategoryField, NumberField, Schema

Predicate = Callable[[np.ndarray], np.ndarray]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<op><=|>=|==|!=|<|>)"
    r"|(?P<paren>[()\[\],])"
    r"|`(?P<quoted>[^`]+)`"
    r'|"(?P<str>[^"]*)"'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)
_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_KEYWORDS = {"and", "or", "not", "in", "is_missing"}


class ConditionError(ValueError):
    """The condition text cannot be parsed or names an unknown feature."""


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"cannot read {text[pos:]!r} at position {pos}")
        kind = m.lastgroup
        assert kind is not None
        value = m.group(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw"
        if kind == "quoted":
            kind = "name"
        tokens.append((kind, value))
        pos = m.end()
    return tokens


# ("num", value, _) | ("str", text, _) | ("col", j, its missing indicator's j or None) | ("cat", field, _)
Operand = tuple[str, object, object]


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], features: Sequence[str], schema: Schema | None) -> None:
        self.tokens = tokens
        self.i = 0
        self.index = {name: j for j, name in enumerate(features)}
        self.schema = schema

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ConditionError("condition ends too early")
        self.i += 1
        return tok

    def expect(self, tok: tuple[str, str]) -> None:
        if self.take() != tok:
            raise ConditionError(f"expected {tok[1]!r}")

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise ConditionError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.peek() == ("kw", "or"):
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda X: np.logical_or.reduce([p(X) for p in parts])

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.peek() == ("kw", "and"):
            self.take()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda X: np.logical_and.reduce([p(X) for p in parts])

    def not_expr(self) -> Predicate:
        tok = self.peek()
        if tok == ("kw", "not"):
            self.take()
            inner = self.not_expr()
            return lambda X: ~inner(X)
        if tok == ("kw", "is_missing"):
            self.take()
            return self.is_missing()
        if tok == ("paren", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("paren", ")"):
                raise ConditionError("missing ')'")
            return inner
        return self.comparison()

    def is_missing(self) -> Predicate:
        self.expect(("paren", "("))
        kind, name = self.take()
        self.expect(("paren", ")"))
        j = self.index.get(name + MISSING)
        if kind != "name" or j is None:
            raise ConditionError(f"is_missing({name}): {name!r} is not a field of the bundle's schema")
        return lambda X: X[:, j] == 1

    def operand(self) -> Operand:
        kind, value = self.take()
        if kind == "num":
            return "num", float(value), None
        if kind == "str":
            return "str", value, None
        if kind == "name":
            field = self.schema.field(value) if self.schema is not None else None
            if isinstance(field, CategoryField):
                return "cat", field, None
            if value not in self.index:
                raise ConditionError(f"unknown feature {value!r}")
            missing = self.index.get(value + MISSING) if isinstance(field, NumberField) else None
            return "col", self.index[value], missing
        raise ConditionError(f"expected a feature, a number or a string, got {value!r}")

    def comparison(self) -> Predicate:
        left = self.operand()
        if self.peek() == ("kw", "in"):
            self.take()
            if left[0] != "cat":
                raise ConditionError("'in' needs a category field on its left")
            cols = [self.category_column(left[1], v) for v in self.strings()]  # type: ignore[arg-type]
            return lambda X: (X[:, cols] == 1).any(axis=1)
        kind, op = self.take()
        if kind != "op":
            raise ConditionError(f"expected a comparison operator, got {op!r}")
        right = self.operand()
        if "cat" in (left[0], right[0]) or "str" in (left[0], right[0]):
            return self.category_comparison(left, op, right)
        if left[0] == "num" and right[0] == "num":
            raise ConditionError("a comparison needs at least one feature")
        fn = _OPS[op]

        def side(o: Operand) -> Callable[[np.ndarray], np.ndarray | float]:
            if o[0] == "col":
                j = int(o[1])  # type: ignore[call-overload]
                return lambda X: X[:, j]
            v = float(o[1])  # type: ignore[arg-type]
            return lambda X: v

        lhs, rhs = side(left), side(right)
        compare: Predicate = lambda X: np.asarray(fn(lhs(X), rhs(X)), dtype=bool)  # type: ignore[arg-type] # noqa: E731
        present = [int(o[2]) for o in (left, right) if o[0] == "col" and o[2] is not None]  # type: ignore[call-overload]
        if not present:
            return compare
        return lambda X: compare(X) & (X[:, present] == 0).all(axis=1)  # a missing number compares false

    def strings(self) -> list[str]:
        self.expect(("paren", "["))
        out: list[str] = []
        while True:
            kind, value = self.take()
            if kind != "str":
                raise ConditionError(f"expected a string in the list, got {value!r}")
            out.append(value)
            sep = self.take()
            if sep == ("paren", "]"):
                return out
            if sep != ("paren", ","):
                raise ConditionError("expected ',' or ']' in the list")

    def category_comparison(self, left: Operand, op: str, right: Operand) -> Predicate:
        kinds = {left[0], right[0]}
        if kinds != {"cat", "str"} or op not in ("==", "!="):
            raise ConditionError("a category is compared with == or != against a string")
        field, value = (left[1], right[1]) if left[0] == "cat" else (right[1], left[1])
        j = self.category_column(field, value)  # type: ignore[arg-type]
        if op == "==":
            return lambda X: X[:, j] == 1
        m = self.index[field.name + MISSING]  # type: ignore[attr-defined]
        return lambda X: (X[:, j] == 0) & (X[:, m] == 0)

    def category_column(self, field: CategoryField, value: str) -> int:
        if value not in field.vocabulary and f"{field.name}={value}" not in self.index:
            vocab = ", ".join(field.vocabulary[:10]) or "none"
            raise ConditionError(
                f"{value!r} is not a category of {field.name!r} in this bundle (its categories: {vocab}; "
                f"rarer and unseen values are scored as {OTHER!r}): name it in the rules when training"
            )
        return self.index[f"{field.name}={value}"]


def categories_named(text: str) -> dict[str, set[str]]:
    """The strings each field is compared with in a condition (``f == "x"``, ``f in [...]``):
    training gives each its own input, so a rule can test a category rarer than the
    vocabulary's least frequent, or one not seen yet.

    >>> named = categories_named('country == "XX" or device in ["web", "app"]')
    >>> {f: sorted(v) for f, v in named.items()}
    {'country': ['XX'], 'device': ['app', 'web']}
    """
    toks = tokenize(text)
    out: dict[str, set[str]] = {}
    for k, (kind, value) in enumerate(toks):
        if kind != "name" or k + 2 >= len(toks):
            continue
        nxt, after = toks[k + 1], toks[k + 2]
        if nxt[0] == "op" and after[0] == "str":
            out.setdefault(value, set()).add(after[1])
        elif nxt == ("kw", "in"):
            j = k + 3
            while j < len(toks) and toks[j][0] == "str":
                out.setdefault(value, set()).add(toks[j][1])
                j += 2
    for k, (kind, value) in enumerate(toks[2:], start=2):  # "x" == f
        if kind == "name" and toks[k - 1][0] == "op" and toks[k - 2][0] == "str":
            out.setdefault(value, set()).add(toks[k - 2][1])
    return out


def compile_condition(text: str, features: Sequence[str], schema: Schema | None = None) -> Predicate:
    """Compile ``text`` into a vectorised predicate over columns ordered as ``features``
    (with ``schema``: its encoded inputs, named by its raw fields)."""
    tokens = tokenize(text)
    if not tokens:
        raise ConditionError("empty condition")
    return _Parser(tokens, features, schema).parse()
