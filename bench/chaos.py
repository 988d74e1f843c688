"""Chaos at full size: 1,000 jobs across all 14 operations under seeded faults (30 %).

Deploys template.yaml into moto (``LocalStack``, waits scaled to 0, the template's provider caps)
against a mock upstream of its own, then runs picflow_cli.chaos (the engine tests/chaos/ runs
at reduced size): every upstream route fails 30 % of its requests (5xx, 429 with Retry-After,
connection resets, read timeouts, slow but answering, malformed JSON, wrong content type,
truncated and expired downloads, Tencent JobNumExceed), one operation's submits are throttled
forever, callbacks are duplicated, dropped or late, S3 answers the functions 503 SlowDown, Lambda
processes crash in the middle of a step, and 30 % of the S3 events arrive twice. The jobs'
deadline is 45 s, so a job that cannot finish ends within about a minute.

Prints the table (faults, outcomes, paid-but-FAILED by cause as read from the mock's journal, the
checks) and one summary line last. Goals: terminal 100 %, stuck 0, double-paid 0, corrupt 0,
orphan objects 0, recoverable paid-but-failed 0, no other violation. Exits non-zero on a miss.

    .venv/bin/python bench/chaos.py [jobs] [seed]
"""

from __future__ import annotations

import os
import sys
import warnings

from picflow_cli.chaos import ChaosSettings, run_chaos
from picflow_cli.local.stack import LocalStack

from mock_upstream.server import ThreadedServer
from mock_upstream.testing import MockUpstream

JOBS = 1000
SEED = 7


def main() -> int:
    os.environ.setdefault("PICFLOW_LOCAL_LOG_LEVEL", "CRITICAL")
    # Lambda runs one invocation per container; here they share the handlers' module-level
    # Metrics, so powertools warns about dimensions left by a concurrent invocation.
    warnings.filterwarnings("ignore", message="Dimension .* has already been added")
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else JOBS
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else SEED
    with ThreadedServer() as server, MockUpstream(server.base_url) as mock:
        stack = LocalStack(server.base_url)
        stack.start()
        try:
            report = run_chaos(stack, mock, ChaosSettings(jobs=jobs, seed=seed))
        finally:
            stack.stop()
    print(report.table())
    print()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
