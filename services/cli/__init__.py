"""The ``selfheal`` command: thin layers over shared/ and the services, one module per
command group.

    data.py      train, bundle info, scenario list|export|sample
    offline.py   experiment (a scenario, all, robustness), detectors, encodings, peers
    stack.py     scorer | monitor | healer, up, demo, bench, topics create, keygen
    tools.py     produce, watch, registry list|rollback, report, kcat
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.cli import data, offline, stack, tools
from shared.errors import SelfhealError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfheal", description="A streaming fraud scorer that heals itself.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (data, offline, stack, tools):
        group.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SelfhealError as exc:
        print(f"selfheal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfheal: interrupted", file=sys.stderr)
        return 130
    return code
