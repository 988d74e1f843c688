"""A render worker process: `python -m mock_upstream.worker NICE`, started by render.RenderPool.

It lowers its own priority, then serves jobs from stdin, one at a time, as length-prefixed
pickle frames: `(job_id, name, args)` in; `("started", job_id)` at once, then `("ok", result)` or
`("error", "Type: message")` out. `name` is a function of mock_upstream.jobs (or "ping").
Frames come only from the parent that started the process, over its own pipes.
"""

from __future__ import annotations

import contextlib
import os
import sys

from mock_upstream.frames import read_frame, write_frame


def serve(nice: int) -> None:
    with contextlib.suppress(OSError):
        os.nice(nice)
    from mock_upstream import jobs  # after nice: importing Pillow is work too

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the frame pipe.
    sys.stdout = sys.stderr
    while True:
        try:
            job_id, name, args = read_frame(inp)
        except EOFError:
            return
        write_frame(out, ("started", job_id))
        try:
            result = os.getpid() if name == "ping" else getattr(jobs, name)(*args)
        except Exception as exc:  # reported to the parent, which fails the task
            write_frame(out, ("error", f"{type(exc).__name__}: {exc}"))
        else:
            write_frame(out, ("ok", result))


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
