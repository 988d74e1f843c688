"""``make demo``: the main job, offline.

Until the local stack lands (issue 5), the demo runs every operation's provider client
against mock_upstream over loopback and prints what came back.
"""

from __future__ import annotations


def run_demo(out_dir: str) -> int:
    raise NotImplementedError("the demo lands with the provider clients")
