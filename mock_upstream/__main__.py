"""`python -m mock_upstream --host 127.0.0.1 --port 8765`: serve the mock, print its base URL.

The clock runs with real time here (use `--frozen-clock` to freeze it, as the test fixtures do).
Accounts and settings come from a JSON file given by `--config` or `MOCK_UPSTREAM_CONFIG`.
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
    parser.add_argument("--config", help="JSON file with accounts, settings and seed")
    parser.add_argument("--frozen-clock", action="store_true", help="mock time moves only when told")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = load_config_file(args.config) if args.config else None
    app = MockApp(MockState(config, clock_running=not args.frozen_clock))
    server = make_server(app, args.host, args.port, args.log_level)

    def announce(ready: ReadyServer) -> None:
        print(f"mock_upstream listening on http://{args.host}:{ready.port}", flush=True)

    server.on_ready = announce
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
