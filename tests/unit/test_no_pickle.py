"""Nothing in selfheal unpickles: no pickle-family import, and no ``torch.load`` (however it
is imported or called) without ``weights_only=True``. Read from the syntax tree, so nested
parentheses, aliases and ``from torch import load`` cannot hide a call."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle"}


def sources():
    for folder in ("shared", "services", "tests"):
        yield from (ROOT / folder).rglob("*.py")


def offences(tree: ast.AST) -> list[str]:
    """What in ``tree`` could unpickle."""
    out, loads, torch_names = _imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_load(node.func, loads, torch_names) and not _weights_only(node):
            out.append(f"line {node.lineno}: torch.load without weights_only=True")
    return out


def _imports(tree: ast.AST) -> tuple[list[str], set[str], set[str]]:
    """(imports of a pickler, names bound to torch.load, names bound to the torch module)."""
    out: list[str] = []
    loads: set[str] = set()
    torch_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [
                f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS
            ]
            torch_names |= {a.asname or "torch" for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLERS:
                out.append(f"line {node.lineno}: from {node.module} import ...")
            if node.module in ("torch", "torch.serialization"):
                loads |= {a.asname or a.name for a in node.names if a.name == "load"}
    return out, loads, torch_names


def _is_load(f: ast.expr, loads: set[str], torch_names: set[str]) -> bool:
    if isinstance(f, ast.Name):
        return f.id in loads
    return (
        isinstance(f, ast.Attribute)
        and f.attr == "load"
        and isinstance(f.value, ast.Name)
        and f.value.id in torch_names
    )


def _weights_only(call: ast.Call) -> bool:
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def test_no_pickle_anywhere():
    found = {str(p): o for p in sources() if (o := offences(ast.parse(p.read_text())))}
    assert found == {}


def test_the_check_sees_through_aliases_and_nested_calls():
    bad = """
import torch as T
from torch import load as L
import pickle
from joblib import dump
T.load(open(path("a")), map_location=dict(cpu=1))
L(f(g(x)))
torch_load_ok = T.load(f(x), weights_only=True)
"""
    found = offences(ast.parse(bad))
    assert len(found) == 4 and sum("torch.load" in o for o in found) == 2
