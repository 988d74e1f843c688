"""The mock's mutable world: clock, accounts, scenarios, tasks, files, journal and settings.

Everything lives in one `MockState` owned by the app. All access happens on the server's event
loop (handlers are async and the control API goes over HTTP), so no locks are needed.

The clock is the mock's own: `now()` is a wall-clock anchor plus an offset that only the control
API moves (a frozen clock), unless `running` is set, in which case real time flows too. Every
timestamp, schedule, cache window and URL expiry reads this clock, never `time.time()`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

CONFIG_ENV = "MOCK_UPSTREAM_CONFIG"

# The documents' own example credentials, so their example code runs unchanged.
DEFAULT_ACCOUNT = "default"
DEFAULT_TOKEN = "sk-xxxx"  # noqa: S105 - documented example value, not a secret
DEFAULT_USER_KEY = "test-key"
DEFAULT_SECRET_ID = "AKIDMOCKUPSTREAM"  # noqa: S105 - mock-only id
DEFAULT_SECRET_KEY = "mock-upstream-secret-key"  # noqa: S105 - mock-only key

# Prices, in one place. task/pic: credits per image (background doubles per batch image).
# HD redraw: a submit takes one package count while any remain, else its price from the money.
# Tencent: one credit per ReplaceBackground call.
TASKPIC_PRICE = {"segmentation": 1, "idphoto": 1, "background": 1}
HD_PRICE_MONEY = {
    "submit_task": 3,
    "submit_vector_task": 2,
    "submit_face_enhance_task": 2,
    "submit_seamless_task": 3,
    "submit_remove_fabric_task": 2,
    "submit_edit_image_task": 3,
    "submit_extract_pattern_task": 3,
    "submit_remove_diamonds_task": 2,
    "submit_expand_image_task": 3,
    "submit_remove_watermark_task": 2,
}
TENCENT_PRICE = 1


class Clock:
    """Mock time in epoch seconds; frozen unless `running`."""

    def __init__(self, *, running: bool = False) -> None:
        self.running = running
        self.reset()

    def reset(self) -> None:
        self._anchor = time.time()
        self._mono = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        real = time.monotonic() - self._mono if self.running else 0.0
        return self._anchor + self._offset + real

    def advance(self, seconds: float) -> float:
        self._offset += seconds
        return self.now()

    def set(self, epoch: float) -> float:
        self._offset += epoch - self.now()
        return self.now()


@dataclass
class Account:
    """One customer, with credentials and balances for all three providers."""

    name: str
    token: str | None = None
    user_key: str | None = None
    secret_id: str | None = None
    secret_key: str | None = None
    taskpic_balance: int = 1000
    hd_remaining_count: int = 1000
    hd_remaining_money: int = 30000
    tencent_balance: int = 1000
    tencent_job_limit: int = 1

    def public(self) -> dict[str, Any]:
        """The account without its secrets, for the control API."""
        data = asdict(self)
        for secret in ("token", "user_key", "secret_key"):
            data[secret] = "<set>" if data[secret] else None
        return data


def default_accounts() -> list[Account]:
    return [
        Account(
            name=DEFAULT_ACCOUNT,
            token=DEFAULT_TOKEN,
            user_key=DEFAULT_USER_KEY,
            secret_id=DEFAULT_SECRET_ID,
            secret_key=DEFAULT_SECRET_KEY,
        )
    ]


ACCOUNT_FIELDS = frozenset(Account.__dataclass_fields__)


def account_from_dict(data: dict[str, Any]) -> Account:
    unknown = set(data) - ACCOUNT_FIELDS
    if unknown:
        raise ValueError(f"unknown account fields: {sorted(unknown)}")
    return Account(**data)


@dataclass
class Scenario:
    """How a task progresses and ends.

    `polls=N`: the first N status checks see it in progress, check N+1 sees the end.
    `seconds=T`: it ends once the mock clock is T seconds past the submit.
    Neither: it ends at once (the first status check, or a sync submit, sees the end).
    `outcome` "failure" ends it with `code` (task/pic: a negative state; Tencent: an error code);
    "unknown" ends an HD redraw task with the documented null status (elsewhere: a failure).
    """

    polls: int | None = None
    seconds: float | None = None
    outcome: Literal["success", "failure", "unknown"] = "success"
    code: int | str | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        polls = data.get("polls")
        seconds = data.get("seconds")
        outcome = data.get("outcome", "success")
        if polls is not None and (not isinstance(polls, int) or isinstance(polls, bool) or polls < 0):
            raise ValueError("polls must be a non-negative integer")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds < 0):
            raise ValueError("seconds must be a non-negative number")
        if outcome not in ("success", "failure", "unknown"):
            raise ValueError("outcome must be 'success', 'failure' or 'unknown'")
        code = data.get("code")
        if code is not None and not isinstance(code, int | str):
            raise ValueError("code must be an integer or a string")
        message = data.get("message")
        return cls(polls=polls, seconds=seconds, outcome=outcome, code=code, message=message)


@dataclass
class Task:
    """An async task (task/pic or HD redraw).

    Its results are rendered in a worker process right after the submit (`rendered` and the
    `ready` event mark the end of that); it ends once both its scenario says so and its results
    exist (`ended` is set then).
    """

    task_id: str
    provider: Literal["taskpic", "hd"]
    kind: str
    account: str
    created_at: float
    scenario: Scenario
    params: dict[str, Any]
    base_url: str = ""
    # Result files made at submit, published (given URLs, expiry clock started) when it ends.
    outputs: list[tuple[str, bytes, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # A failure decided at submit time (bad download, bad image) overrides the scenario's outcome.
    forced_failure: tuple[int | str | None, str | None] | None = None
    polls: int = 0
    finished_at: float | None = None
    # When the mock really offered the result (finish() ran), on its clock: `finished_at` is the
    # scheduled end, which for an instant scenario is the submit time even if the render ran late.
    ended_at: float | None = None
    urls: dict[str, str] = field(default_factory=dict)
    callback_url: str | None = None
    callback_due: bool = False
    # HD status cache: (mock time, answer).
    cached: tuple[float, dict[str, Any]] | None = None
    # A sync=1 submit waits for the end: its poll count does not apply.
    sync: bool = False
    rendered: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    job: asyncio.Task[None] | None = field(default=None, repr=False)

    def scenario_due(self, now: float) -> bool:
        """Whether the scenario lets the task end now, not counting the current poll."""
        if self.scenario.seconds is not None:
            return now >= self.created_at + self.scenario.seconds
        if self.scenario.polls is not None and not self.sync:
            return self.polls > self.scenario.polls
        return True

    def is_due(self, now: float) -> bool:
        """Whether the task has reached its end: its scenario says so and its results exist."""
        return self.finished_at is not None or (self.rendered and self.scenario_due(now))

    def failure(self) -> tuple[int | str | None, str | None] | None:
        """(code, message) when the task ends in failure, else None."""
        if self.forced_failure is not None:
            return self.forced_failure
        if self.scenario.outcome == "unknown":
            return ("None", self.scenario.message)
        if self.scenario.outcome == "failure":
            return (self.scenario.code, self.scenario.message)
        return None

    def fraction(self, now: float) -> float:
        """Progress 0..1 toward the end, for the intermediate states."""
        if self.scenario.seconds:
            return min(1.0, max(0.0, (now - self.created_at) / self.scenario.seconds))
        if self.scenario.polls:
            return min(1.0, self.polls / (self.scenario.polls + 1))
        return 0.0


@dataclass
class StoredFile:
    token: str
    name: str
    content: bytes
    media_type: str
    expires_at: float
    sha256: str


@dataclass
class Settings:
    """Tunables, changed through `POST /__mock/config`."""

    file_ttl_seconds: float = 3600.0
    hd_status_cache_seconds: float = 3.0
    tencent_processing_seconds: float = 0.0
    tencent_max_skew_seconds: float = 300.0
    taskpic_max_image_bytes: int = 15 * 1024 * 1024
    hd_max_file_bytes: int = 16 * 1024 * 1024
    max_output_side: int = 4096
    fetch_timeout_seconds: float = 5.0
    # A sync call (task/pic sync=1, Tencent) waits at most this long for its result (real
    # seconds), below the 10 s read timeout of the only example client that sets one (doc 004)
    # and the layer's 30 s.
    sync_wait_seconds: float = 8.0
    # A status check of a task that is due but whose results are still rendering waits at most
    # this long for them (real seconds), then answers the running state: below httpx's default
    # 5 s timeout, which document 004's status example uses.
    status_render_wait_seconds: float = 2.0


SETTINGS_FIELDS = frozenset(Settings.__dataclass_fields__)


CONFIG_KEYS = frozenset({"seed", "accounts", "settings", "scenarios", "faults", "callbacks"})
SCENARIO_SCOPES = frozenset({"default", "accounts", "next"})


def check_config(data: Any, source: str = "the scenario") -> dict[str, Any]:
    """Refuse a scenario document with unknown keys or values, naming the first problem."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be an object")
    unknown = set(data) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)} (known: {sorted(CONFIG_KEYS)})")
    for account in data.get("accounts", []):
        account_from_dict(account)
    Settings(**data.get("settings", {}))
    scenarios = data.get("scenarios", {})
    if not isinstance(scenarios, dict) or set(scenarios) - SCENARIO_SCOPES:
        raise ValueError(f"{source}: scenarios takes {sorted(SCENARIO_SCOPES)}")
    if "default" in scenarios:
        Scenario.from_dict(scenarios["default"])
    for one in scenarios.get("accounts", {}).values():
        Scenario.from_dict(one)
    for one in scenarios.get("next", []):
        Scenario.from_dict(one)
    if not isinstance(data.get("faults", []), list) or not isinstance(data.get("callbacks", {}), dict):
        raise ValueError(f"{source}: faults is a list and callbacks an object")
    return data


def load_config_file(path: str) -> dict[str, Any]:
    """A scenario file: JSON, or YAML (`.yaml`/`.yml`) when PyYAML is installed."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise ValueError(f"{path}: YAML needs PyYAML installed; or write the file as JSON") from None
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return check_config(data, path)


class MockState:
    """All mutable state; `reset()` puts it back to the configured start."""

    def __init__(self, config: dict[str, Any] | None = None, *, clock_running: bool = False) -> None:
        if config is None and os.environ.get(CONFIG_ENV):
            config = load_config_file(os.environ[CONFIG_ENV])
        self.config = check_config(config or {})
        self.clock = Clock(running=clock_running)
        self.reset()

    def reset(self) -> None:
        self.clock.reset()
        self.settings = Settings(**self.config.get("settings", {}))
        accounts = default_accounts() + [account_from_dict(a) for a in self.config.get("accounts", [])]
        self.accounts: dict[str, Account] = {a.name: a for a in accounts}
        self.tasks: dict[str, Task] = {}
        self.files: dict[str, StoredFile] = {}
        self.journal: list[dict[str, Any]] = []
        self.sinks: dict[str, list[Any]] = {}
        # Scenarios: per task, per account, a queue for the next submits, and the default.
        self.task_scenarios: dict[str, Scenario] = {}
        self.account_scenarios: dict[str, Scenario] = {}
        self.next_scenarios: list[Scenario] = []
        self.default_scenario = Scenario()
        scenarios = self.config.get("scenarios", {})
        if "default" in scenarios:
            self.default_scenario = Scenario.from_dict(scenarios["default"])
        for name, one in scenarios.get("accounts", {}).items():
            self.account_scenarios[name] = Scenario.from_dict(one)
        self.next_scenarios.extend(Scenario.from_dict(one) for one in scenarios.get("next", []))
        self.set_seed(int(self.config.get("seed", 0)))

    def reset_account(self, name: str) -> None:
        """Put one account's balances back and forget its tasks and scenarios."""
        configured = {a.name: a for a in default_accounts()}
        configured.update({a["name"]: account_from_dict(a) for a in self.config.get("accounts", [])})
        if name not in configured:
            self.accounts.pop(name, None)
        else:
            self.accounts[name] = configured[name]
        self.tasks = {k: t for k, t in self.tasks.items() if t.account != name}
        self.account_scenarios.pop(name, None)

    def set_seed(self, seed: int) -> None:
        # Separate streams so fault dice do not shift the ids a test expects.
        self.seed = seed
        self.id_rng = random.Random(f"ids:{seed}")
        self.fault_rng = random.Random(f"faults:{seed}")
        self.file_rng = random.Random(f"files:{seed}")

    # ---- ids -------------------------------------------------------------------------------
    def uuid(self) -> str:
        return str(uuid.UUID(int=self.id_rng.getrandbits(128), version=4))

    def hd_task_id(self) -> str:
        # The HD vendor's ids are not uuids; a 24-hex id keeps the two kinds apart in logs.
        return f"{self.id_rng.getrandbits(96):024x}"

    # ---- lookups -------------------------------------------------------------------------
    def account_by(self, attr: str, value: str | None) -> Account | None:
        if not value:
            return None
        for account in self.accounts.values():
            if getattr(account, attr) == value:
                return account
        return None

    def scenario_for(self, account: str, task_scenario: Scenario | None) -> Scenario:
        """Pick a new task's scenario: request > next-queue > account > default."""
        if task_scenario is not None:
            return task_scenario
        if self.next_scenarios:
            return self.next_scenarios.pop(0)
        return self.account_scenarios.get(account, self.default_scenario)

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry["seq"] = len(self.journal) + 1
        entry["time"] = self.clock.now()
        self.journal.append(entry)
        return entry
