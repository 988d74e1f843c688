"""``picflow``: the command line of picflow.

Errors print one clear line to stderr and exit non-zero; read commands take ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from picflow.catalogue import describe_catalogue
from picflow.errors import PicflowError

__all__ = ["main"]


def _print_operations(as_json: bool) -> None:
    catalogue = describe_catalogue()
    if as_json:
        print(json.dumps(catalogue, ensure_ascii=False, indent=2))
        return
    for op in catalogue:
        print(f"{op['operation']}  [{op['provider']}, {'/'.join(op['styles'])}]  {op['summary']}")
        for p in op["params"]:
            flag = "required" if p["required"] else f"default {p['default']!r}"
            rule = f"; {p['rule']}" if p["rule"] else ""
            print(f"    {p['name']}: {p['type']} ({flag}{rule})  {p['description']}")
        limits = op["input"]
        print(f"    input: {limits['source']}, ≤ {limits['max_bytes']} bytes, {', '.join(limits['formats'])}")
        print(f"    results: {', '.join(op['results'])}; cost: {op['cost']['unit']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picflow", description="AI image jobs on AWS, reliably and cheaply."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ops = sub.add_parser("operations", help="the operation catalogue with each parameter's rule")
    ops.add_argument("--json", action="store_true", help="machine-readable output")
    demo = sub.add_parser("demo", help="run the main job offline (mock upstream)")
    demo.add_argument("--out", default="out", help="where results and the report go")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "operations":
            _print_operations(args.json)
        elif args.command == "demo":
            from picflow_cli.demo import run_demo

            return run_demo(args.out)
    except PicflowError as exc:
        print(f"picflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
