"""The end of a handler's init: what it loaded is kept out of the cyclic GC's way.

Every handler turns the GC off as its first statement (``gc.disable()``: a collection while the
modules load re-scans the growing heap of boto3's and pydantic's objects again and again) and
calls :func:`init_done` as its last statement at module level. What the first invocation builds
to keep for the container's life (the AWS clients, the provider secret's client, the httpx client
and its TLS context) is built inside :func:`long_lived`, which does the same for it.
"""

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["init_done", "long_lived"]

# A first call allocates ~75,000 objects (clients, models); with Python's 700 that was ~60 young
# collections, ~25 ms of its CPU (bench/coldstart.py).
YOUNG_THRESHOLD = 50_000

# Set by init_done() in a Lambda's process: elsewhere (tests, the CLI) long_lived() changes nothing.
_freezing = False


def init_done() -> None:
    """Freeze what init loaded (it lives as long as the container) and turn the GC back on.

    Frozen objects are never re-scanned by a full collection (~50 ms less CPU in a first call).
    """
    global _freezing
    _freezing = "AWS_LAMBDA_FUNCTION_NAME" in os.environ
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
    gc.enable()


@contextmanager
def long_lived() -> Iterator[None]:
    """Build something the container keeps (a client, its model data) with the GC paused, then
    freeze it: as init_done() does for init, once per container.

    A boto3 client is ~20,000-60,000 objects (its service model); built with the GC on, the young
    collections it sets off scan them all only to keep them (~10-18 ms of a first call's CPU,
    bench/coldstart.py). The price: cyclic garbage that exists when it is frozen is never freed
    (a few KB measured: builds run early in an invocation, once per container).
    """
    if not _freezing or not gc.isenabled():
        # Outside a Lambda, or during init (GC off; init_done() freezes it).
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
