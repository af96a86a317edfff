"""Nothing in selfheal unpickles: no pickle import, no torch.load without weights_only=True."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sources():
    for folder in ("shared", "services"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_pickle_anywhere():
    offenders = []
    for path in sources():
        text = path.read_text()
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M):
            offenders.append(f"{path}: imports pickle")
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                offenders.append(f"{path}: torch.load without weights_only=True")
    assert offenders == []
