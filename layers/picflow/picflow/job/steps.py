"""What every step of the job state machine shares: a failure is written onto the job first.

Handlers in ``functions/`` only parse the event and call a step; a step's state is typed
(:mod:`picflow.core.state`) and its services default to the container's (:func:`services`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

from picflow.aws.services import services
from picflow.core.errors import PicflowError

__all__ = ["records_errors"]


def records_errors[**P, R](step: Callable[P, R]) -> Callable[P, R]:
    """Write a step's failure onto the job before re-raising it for Step Functions' Catch."""

    @functools.wraps(step)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return step(*args, **kwargs)
        except PicflowError as exc:
            _record_error(args, kwargs, exc.to_dict())
            raise
        except Exception as exc:
            _record_error(args, kwargs, {"type": "InternalError", "message": type(exc).__name__})
            raise

    return wrapper


def _record_error(args: Any, kwargs: Any, error: dict[str, Any]) -> None:
    state = kwargs.get("state") or next((a for a in args if isinstance(a, Mapping)), None)
    svc = kwargs.get("svc") or services()
    if isinstance(state, Mapping) and state.get("job_id"):
        # The original error matters more than this write: never mask it.
        with contextlib.suppress(Exception):
            svc.store.update(str(state["job_id"]), {"last_error": error})
