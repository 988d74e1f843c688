"""AcquireSlot and the releases (statemachine/job.asl.json): a provider's concurrency cap, held
from before the paid call until its results are in (or the job fails).

The cap is the provider spec's ``concurrency_cap`` (its default, or ``PICFLOW_CONCURRENCY``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from picflow.aws.services import Services, services
from picflow.core.polling import SLOT_WAIT, scaled

if TYPE_CHECKING:
    from collections.abc import Mapping

    from picflow.core.state import SlotState

__all__ = ["acquire_slot", "release_slot"]


def acquire_slot(state: Mapping[str, Any], svc: Services | None = None) -> SlotState:
    # Where it is used: a release (Finalize's path, Collect) never loads the catalogue.
    from picflow.core.catalogue import SPECS, Provider

    svc = svc or services()
    provider = str(state["job"]["provider"])
    cap = SPECS[Provider(provider)].concurrency_cap
    got = svc.semaphore.acquire(provider, str(state["job_id"]), cap, float(state["job"]["slot_ttl"]))
    return {"acquired": got.acquired, "holders": got.holders, "cap": cap, "wait_seconds": scaled(SLOT_WAIT)}


def release_slot(state: Mapping[str, Any], svc: Services | None = None) -> SlotState:
    """Give the slot back (any path: a failure may release one that was never taken)."""
    svc = svc or services()
    job = state.get("job") or {}
    if not job.get("provider"):
        return {"released": False}
    return {"released": svc.semaphore.release(str(job["provider"]), str(state["job_id"]))}
