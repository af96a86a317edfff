"""The code stays readable: no function in shared/ or services/ longer than 60 lines, no
module longer than 500, and README's layout section names every module that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION, MAX_MODULE = 60, 500


def modules():
    for folder in ("shared", "services"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_functions_and_modules_stay_short():
    too_long = []
    for path in modules():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if (n := len(text.splitlines())) > MAX_MODULE:
            too_long.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert too_long == []


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 1)]
    named = set(re.findall(r"`((?:shared|services)/[\w/]+\.py)`", layout))
    concepts = [p for p in modules() if p.name not in ("__init__.py", "__main__.py")]  # packages' doors
    missing = [rel for p in concepts if (rel := p.relative_to(ROOT).as_posix()) not in named]
    assert missing == [], f"README's layout section does not name: {missing}"
    gone = sorted(p for p in named if not (ROOT / p).is_file())
    assert gone == [], f"README's layout section names modules that do not exist: {gone}"
