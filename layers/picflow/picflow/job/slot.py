"""AcquireSlot and the releases (statemachine/job.asl.json): a provider's concurrency cap, held
from before the paid call until its results are in (or the job fails).

The cap is the provider spec's ``concurrency_cap`` (its default, or ``PICFLOW_CONCURRENCY``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from picflow.aws.services import Services, services
from picflow.core.deadline import enforce_deadline, slot_backoff, wait_within
from picflow.core.polling import SLOT_WAIT, scaled

if TYPE_CHECKING:
    from collections.abc import Mapping

    from picflow.core.state import SlotState

__all__ = ["acquire_slot", "release_slot"]


def acquire_slot(state: Mapping[str, Any], svc: Services | None = None) -> SlotState:
    """Take a slot, or say how long to wait before the next try (backing off, never past the
    job's deadline). At the deadline no slot is taken: DeadlineExceededError ends the job."""
    # Where it is used: a release (Finalize's path, Collect) never loads the catalogue.
    from picflow.core.catalogue import SPECS, Provider

    svc = svc or services()
    meta = state["job"]
    now = svc.clock()
    enforce_deadline(meta, now, waiting_for="waiting for a provider slot")
    provider = str(meta["provider"])
    cap = SPECS[Provider(provider)].concurrency_cap
    tries = int((state.get("slot") or {}).get("tries", -1)) + 1
    got = svc.semaphore.acquire(provider, str(state["job_id"]), cap, float(meta["slot_ttl"]))
    wait = wait_within(meta, now, scaled(slot_backoff(tries, SLOT_WAIT)))
    return {"acquired": got.acquired, "holders": got.holders, "cap": cap, "wait_seconds": wait,
            "tries": tries}  # fmt: skip


def release_slot(state: Mapping[str, Any], svc: Services | None = None) -> SlotState:
    """Give the slot back (any path: a failure may release one that was never taken)."""
    svc = svc or services()
    job = state.get("job") or {}
    if not job.get("provider"):
        return {"released": False}
    return {"released": svc.semaphore.release(str(job["provider"]), str(state["job_id"]))}
