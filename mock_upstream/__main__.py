"""`python -m mock_upstream --port 8765 [--scenario FILE]`: serve the mock, print its base URL.

The clock runs with real time here (use `--frozen-clock` to freeze it, as the test fixtures do).
A scenario file (JSON, or YAML when PyYAML is installed; `--scenario`, `--config` or the
`MOCK_UPSTREAM_CONFIG` variable) sets accounts and balances, settings, task scenarios
(durations, failures), faults, callback behaviour and the seed; a reset returns to it.
`--journal-out FILE` writes every request the mock saw, as JSON Lines, when it stops.
"""

from __future__ import annotations

import argparse
import sys

from mock_upstream.app import MockApp
from mock_upstream.server import ReadyServer, make_server
from mock_upstream.state import MockState, load_config_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mock_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--scenario", "--config", dest="scenario", help="scenario file (JSON or YAML) loaded at start"
    )
    parser.add_argument("--frozen-clock", action="store_true", help="mock time moves only when told")
    parser.add_argument(
        "--render-workers", type=int, default=None, help="render processes (default: cores - 1; 0: a thread)"
    )
    parser.add_argument("--journal-out", help="write the journal (JSON Lines) here on shutdown")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        config = load_config_file(args.scenario) if args.scenario else None
        state = MockState(config, clock_running=not args.frozen_clock)
    except (OSError, ValueError, TypeError) as exc:
        print(f"mock_upstream: {exc}", file=sys.stderr)
        return 2
    app = MockApp(state, render_workers=args.render_workers, journal_out=args.journal_out)
    server = make_server(app, args.host, args.port, args.log_level)

    def announce(ready: ReadyServer) -> None:
        print(f"mock_upstream listening on http://{args.host}:{ready.port}", flush=True)

    server.on_ready = announce
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
