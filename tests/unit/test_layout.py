"""The code's shape: its import graph has no cycle, no module imports another's private
names, and docs/design.md's layout section names every module that exists. (How long and
how branched a function may be is ruff's to check: C901, PLR0912, PLR0913, PLR0915.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules():
    for folder in ("shared", "services"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import at module level, ``if TYPE_CHECKING:`` blocks
    included (a cycle through types is still a cycle); imports inside functions are left
    out (they run later, by design)."""
    out: list[tuple[str, list[str]]] = []
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If | ast.Try):
            body += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's names resolved to the
    submodule when one of that name exists)."""
    names = {module_name(p): p for p in modules()}
    edges: dict[str, set[str]] = {m: set() for m in names}
    for m, path in names.items():
        for target, imported in imports(path):
            subs = [f"{target}.{n}" for n in imported if f"{target}.{n}" in names]
            edges[m] |= set(subs) or ({target} if target in names else set())
            edges[m].discard(m)
    return edges


def test_no_import_cycle():
    """Packages' ``__init__`` only re-export; below them, the import graph is a DAG."""
    edges = {m: {t for t in ts if not _is_package(t)} for m, ts in graph().items() if not _is_package(m)}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*trail[trail.index(t) :], t]))
            elif t not in state:
                visit(t, [*trail, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").is_file()


def test_no_module_imports_a_private_name_from_another():
    found = [
        f"{module_name(p)}: {target}.{n}"
        for p in modules()
        for target, names in imports(p)
        if target.startswith(("shared", "services"))
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert found == []


def test_the_design_layout_names_every_module():
    design = (ROOT / "docs" / "design.md").read_text()
    layout = design[design.index("## Layout") :]
    layout = layout[: layout.find("\n## ", 1) % (len(layout) + 1)]
    named = set(re.findall(r"`((?:shared|services)/[\w/]+\.py)`", layout))
    concepts = [p for p in modules() if p.name not in ("__init__.py", "__main__.py")]  # packages' doors
    missing = [rel for p in concepts if (rel := p.relative_to(ROOT).as_posix()) not in named]
    assert missing == [], f"docs/design.md's layout section does not name: {missing}"
    gone = sorted(p for p in named if not (ROOT / p).is_file())
    assert gone == [], f"docs/design.md's layout section names modules that do not exist: {gone}"
