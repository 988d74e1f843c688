"""picflow.aws.semaphore on moto's DynamoDB (table from template.yaml), with a fake clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from picflow.aws.semaphore import Acquired, Semaphore

TTL = 60.0


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sem(semaphore_table: Any, clock: FakeClock) -> Semaphore:
    return Semaphore(semaphore_table, clock=clock)


def test_acquire_up_to_the_cap_then_refuses(sem: Semaphore) -> None:
    assert sem.acquire("tencent", "job-a", 2, TTL) == Acquired(True, 1, 2)
    assert sem.acquire("tencent", "job-b", 2, TTL) == Acquired(True, 2, 2)
    assert sem.acquire("tencent", "job-c", 2, TTL) == Acquired(False, 2, 2)
    assert set(sem.holders("tencent")) == {"job-a", "job-b"}


def test_acquire_caps_are_per_name(sem: Semaphore) -> None:
    assert sem.acquire("tencent", "job-a", 1, TTL).acquired
    assert sem.acquire("hdredraw", "job-b", 1, TTL).acquired
    assert not sem.acquire("tencent", "job-c", 1, TTL).acquired


def test_acquire_same_holder_twice_keeps_one_slot(sem: Semaphore) -> None:
    assert sem.acquire("tencent", "job-a", 2, TTL).acquired
    again = sem.acquire("tencent", "job-a", 2, TTL)
    assert again == Acquired(True, 1, 2)
    assert sem.acquire("tencent", "job-b", 2, TTL).acquired  # the second slot is still free


def test_acquire_same_holder_at_the_cap_is_still_granted(sem: Semaphore) -> None:
    assert sem.acquire("tencent", "job-a", 1, TTL).acquired
    assert sem.acquire("tencent", "job-a", 1, TTL).acquired  # a retried step keeps its slot


def test_acquire_again_extends_the_holders_expiry(sem: Semaphore, clock: FakeClock) -> None:
    sem.acquire("tencent", "job-a", 1, 10)
    clock.advance(8)
    sem.acquire("tencent", "job-a", 1, 10)
    clock.advance(7)  # 15 s after the first acquire, 7 s after the second
    assert "job-a" in sem.holders("tencent")
    assert not sem.acquire("tencent", "job-b", 1, 10).acquired


def test_release_frees_the_slot(sem: Semaphore) -> None:
    sem.acquire("tencent", "job-a", 1, TTL)
    assert not sem.acquire("tencent", "job-b", 1, TTL).acquired
    assert sem.release("tencent", "job-a") is True
    assert sem.acquire("tencent", "job-b", 1, TTL).acquired


def test_release_twice_or_of_a_stranger_returns_false(sem: Semaphore) -> None:
    sem.acquire("tencent", "job-a", 1, TTL)
    assert sem.release("tencent", "job-a") is True
    assert sem.release("tencent", "job-a") is False
    assert sem.release("tencent", "job-z") is False
    assert sem.release("never-used", "job-a") is False


def test_expired_holder_loses_its_slot_and_is_pruned(
    sem: Semaphore, semaphore_table: Any, clock: FakeClock
) -> None:
    # GIVEN a holder that crashed without releasing
    sem.acquire("tencent", "crashed", 1, 10)
    # WHEN its slot expires
    clock.advance(10.001)
    assert sem.holders("tencent") == {}
    # THEN another job gets the slot, and the stale holder is gone from the item itself
    assert sem.acquire("tencent", "job-b", 1, 10) == Acquired(True, 1, 1)
    item = semaphore_table.get_item(Key={"name": "tencent"})["Item"]
    assert set(item["holders"]) == {"job-b"}


def test_holder_just_before_expiry_still_counts(sem: Semaphore, clock: FakeClock) -> None:
    sem.acquire("tencent", "job-a", 1, 10)
    clock.advance(9.9)
    assert not sem.acquire("tencent", "job-b", 1, 10).acquired


class AtomicTable:
    """One table handle whose requests are atomic, as DynamoDB's are per item.

    moto checks a ConditionExpression and writes in two unlocked steps, so two threads can both
    pass the same condition; real DynamoDB cannot. Serialising whole requests restores that
    guarantee while still letting threads interleave between requests, which is what the
    semaphore's optimistic concurrency has to survive.
    """

    _lock = threading.Lock()

    def __init__(self, table: Any) -> None:
        self._table = table

    def get_item(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._table.get_item(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._table.put_item(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._table.update_item(**kwargs)


def test_concurrent_acquires_never_exceed_the_cap(semaphore_table: Any, aws: Any) -> None:
    # GIVEN 8 workers sharing a cap of 3, each looping acquire -> work -> release
    cap, workers, rounds = 3, 8, 6
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    granted = 0
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    # boto3 resources are not thread-safe: one per worker, made here in the main thread.
    tables = [aws.resource("dynamodb").Table(semaphore_table.name) for _ in range(workers)]

    def worker(n: int) -> None:
        nonlocal in_flight, peak, granted
        sem = Semaphore(AtomicTable(tables[n]), attempts=50)
        start.wait()
        try:
            for r in range(rounds):
                holder = f"job-{n}-{r}"
                if not sem.acquire("tencent", holder, cap, TTL).acquired:
                    continue
                with lock:
                    in_flight += 1
                    granted += 1
                    peak = max(peak, in_flight)
                    assert in_flight <= cap
                # Hold the slot across another request, so other workers run meanwhile.
                assert len(sem.holders("tencent")) <= cap
                with lock:
                    in_flight -= 1
                assert sem.release("tencent", holder)
        except BaseException as exc:  # surfaced below: an assert in a thread is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN the cap held at every instant, and slots were really handed out
    assert errors == []
    assert peak <= cap
    assert granted >= cap
    probe = Semaphore(semaphore_table)
    assert probe.holders("tencent") == {}
