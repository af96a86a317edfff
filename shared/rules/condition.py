"""Rule conditions: a small, safe expression language over feature columns.

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := operand OP operand        OP: < <= > >= == !=
    operand    := feature name | `quoted name` | number

Conditions compile to a function of a (N, d) array that returns a (N,) bool mask; no
``eval`` is ever used.

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

Predicate = Callable[[np.ndarray], np.ndarray]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<op><=|>=|==|!=|<|>)"
    r"|(?P<paren>[()])"
    r"|`(?P<quoted>[^`]+)`"
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
_KEYWORDS = {"and", "or", "not"}


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


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], features: Sequence[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.index = {name: j for j, name in enumerate(features)}

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ConditionError("condition ends too early")
        self.i += 1
        return tok

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
        if tok == ("paren", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("paren", ")"):
                raise ConditionError("missing ')'")
            return inner
        return self.comparison()

    def operand(self) -> tuple[str, float | int]:
        kind, value = self.take()
        if kind == "num":
            return "num", float(value)
        if kind == "name":
            if value not in self.index:
                raise ConditionError(f"unknown feature {value!r}")
            return "col", self.index[value]
        raise ConditionError(f"expected a feature or a number, got {value!r}")

    def comparison(self) -> Predicate:
        left = self.operand()
        kind, op = self.take()
        if kind != "op":
            raise ConditionError(f"expected a comparison operator, got {op!r}")
        right = self.operand()
        if left[0] == "num" and right[0] == "num":
            raise ConditionError("a comparison needs at least one feature")
        fn = _OPS[op]

        def side(o: tuple[str, float | int]) -> Callable[[np.ndarray], np.ndarray | float]:
            if o[0] == "col":
                j = int(o[1])
                return lambda X: X[:, j]
            v = float(o[1])
            return lambda X: v

        lhs, rhs = side(left), side(right)
        return lambda X: np.asarray(fn(lhs(X), rhs(X)), dtype=bool)  # type: ignore[arg-type]


def compile_condition(text: str, features: Sequence[str]) -> Predicate:
    """Compile ``text`` into a vectorised predicate over columns ordered as ``features``."""
    tokens = tokenize(text)
    if not tokens:
        raise ConditionError("empty condition")
    return _Parser(tokens, features).parse()
