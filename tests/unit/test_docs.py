"""The docs stay true and reachable: README is short, every relative link and anchor in
README.md and docs/ resolves, every table renders, every ``selfheal`` command README names
exists, and no page speaks of issues or commits instead of what and why."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#{1,6} (.*)", line)):
            found.add(slug(m.group(1)))
    return found


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; details belong in docs/"
    text = "\n".join(lines)
    for part in ("## Two commands", "make demo", "make test", "```\n"):
        assert part in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading {anchor!r} in {os.path.relpath(dest, ROOT)}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_table_has_its_header_rule(page):
    """A table whose header row is not followed by ``|---|`` renders as a paragraph of pipes."""
    lines, fence, bare = page.read_text().splitlines(), False, []
    for k, line in enumerate(lines):
        fence = fence != line.startswith("```")
        starts = line.startswith("|") and (k == 0 or not lines[k - 1].startswith("|"))
        if (
            starts
            and not fence
            and not re.match(r"^\|[-:| ]+\|$", lines[k + 1] if k + 1 < len(lines) else "")
        ):
            bare.append(k + 1)
    assert bare == [], f"tables without a header rule at lines {bare}"


def test_every_command_readme_names_exists():
    from services.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    named = set(re.findall(r"(?:^|[\s`(])selfheal ([a-z][a-z-]*)", (ROOT / "README.md").read_text(), re.M))
    assert named, "README names no selfheal command"
    assert named <= commands, f"README names commands the CLI lacks: {sorted(named - commands)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_say_what_and_why_not_which_issue(page):
    text = page.read_text()
    assert not re.findall(r"\b[Ii]ssue #?\d+", text)
    assert not re.findall(r"\b(?:before|after|at|since) [0-9a-f]{7}\b", text)


def test_code_says_what_and_why_not_which_issue():
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("shared", "services", "tests")
        for path in sorted((ROOT / top).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\b[Ii]ssue #?\d+", line)
    ]
    assert found == []
