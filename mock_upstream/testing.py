"""pytest fixtures and the `MockUpstream` control helper (a thin httpx wrapper over `/__mock/`).

A pytest plugin (entry point `pytest11`, so installing `picflow[mock]` is enough):
- `mock_server` (session): the mock served by uvicorn on a background thread over real
  loopback; has `base_url` and `app`. `--mock-upstream-scenario FILE` (or the ini option
  `mock_upstream_scenario`) starts it from a scenario file.
- `mock_upstream` (function): a `MockUpstream` bound to that server, reset before each test
  (accounts, tasks, files, journal, faults, scenarios, callbacks, seed, renders; clock
  re-anchored to now and frozen) back to the scenario file's start, if any.
  `--mock-upstream-journal DIR` writes each test's journal to `DIR/<test>.jsonl`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from mock_upstream.app import MockApp
from mock_upstream.server import ThreadedServer
from mock_upstream.state import MockState, load_config_file


class MockUpstream:
    """Drive a running mock: `MockUpstream("http://127.0.0.1:8765")`."""

    def __init__(
        self,
        base_url: str,
        client: httpx.Client | None = None,
        *,
        base_settings: dict[str, float] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Settings `load()` puts under every scenario document (the fixture's longer waits).
        self.base_settings = dict(base_settings or {})
        self.client = client or httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(30.0), trust_env=False
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        query = {
            k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None
        }
        response = self.client.request(method, f"/__mock/{path}", json=body, params=query)
        response.raise_for_status()
        return response.json()

    # ---- lifecycle ------------------------------------------------------------------------
    def reset(self, account: str | None = None) -> None:
        """Reset everything, or one account's balances, tasks and scenario."""
        self._call("POST", "reset", {"account": account} if account else {})

    def load(self, scenario: dict[str, Any] | str | Path) -> None:
        """Replace the scenario document (a dict, or a JSON/YAML file) and reset to it."""
        document = dict(scenario) if isinstance(scenario, dict) else load_config_file(str(scenario))
        document["settings"] = {**self.base_settings, **document.get("settings", {})}
        self._call("POST", "load", document)

    def set_seed(self, seed: int) -> None:
        """Make task ids, request ids and file tokens reproducible from `seed`."""
        self._call("POST", "seed", {"seed": seed})

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> MockUpstream:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # ---- clock ----------------------------------------------------------------------------
    def now(self) -> float:
        return float(self._call("GET", "clock")["now"])

    def advance_clock(self, seconds: float) -> float:
        """Move mock time forward (timed tasks end, callbacks come due); returns the new now."""
        return float(self._call("POST", "clock", {"advance": seconds})["now"])

    def set_clock(self, epoch: float | None = None, *, running: bool | None = None) -> float:
        body: dict[str, Any] = {}
        if epoch is not None:
            body["set"] = epoch
        if running is not None:
            body["running"] = running
        return float(self._call("POST", "clock", body)["now"])

    # ---- accounts and settings ------------------------------------------------------------
    @property
    def accounts(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "accounts")["accounts"])

    def account(self, name: str = "default") -> dict[str, Any]:
        return dict(self._call("GET", f"accounts/{name}"))

    def set_account(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create or update an account (token, user_key, secret_id, secret_key, balances...)."""
        return dict(self._call("POST", "accounts", {"name": name, **fields}))

    def configure(self, **settings: float) -> dict[str, Any]:
        """Change settings: file_ttl_seconds, hd_status_cache_seconds, tencent_processing_seconds..."""
        return dict(self._call("POST", "config", settings))

    # ---- scenarios ------------------------------------------------------------------------
    def set_scenario(
        self,
        *,
        account: str | None = None,
        task_id: str | None = None,
        next: int | None = None,
        polls: int | None = None,
        seconds: float | None = None,
        outcome: str = "success",
        code: int | str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Schedule and outcome for an account, a task, the next N submits, or by default."""
        body: dict[str, Any] = {"outcome": outcome, "polls": polls, "seconds": seconds}
        body.update({k: v for k, v in {"code": code, "message": message}.items() if v is not None})
        for name, value in (("account", account), ("task_id", task_id), ("next", next)):
            if value is not None:
                body[name] = value
        return dict(self._call("POST", "scenario", body))

    def clear_scenarios(self) -> None:
        self._call("DELETE", "scenario")

    @staticmethod
    def scenario_header(**scenario: Any) -> dict[str, str]:
        """Headers that give one request its own scenario: `X-Mock-Scenario: {...}`."""
        return {"X-Mock-Scenario": json.dumps(scenario)}

    # ---- faults ---------------------------------------------------------------------------
    def inject_fault(
        self,
        kind: str,
        *,
        route: str | None = None,
        method: str | None = None,
        account: str | None = None,
        task_id: str | None = None,
        action: str | None = None,
        times: int | None = 1,
        probability: float | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Add a fault rule (see mock_upstream.faults for kinds and params); returns it with its id."""
        body = {
            "kind": kind,
            "route": route,
            "method": method,
            "account": account,
            "task_id": task_id,
            "action": action,
            "times": times,
            "probability": probability,
            **params,
        }
        return dict(self._call("POST", "faults", body))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "faults")["faults"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    # ---- journal --------------------------------------------------------------------------
    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """Recorded requests; filters: provider, route, method, account, task_id, marker, status, paid."""
        return list(self._call("GET", "journal", **filters)["entries"])

    def export_journal(self, path: str | Path, **filters: Any) -> int:
        """Write the journal as JSON Lines to `path`; returns the number of entries written."""
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in filters.items()}
        response = self.client.get("/__mock/journal/export", params=query)
        response.raise_for_status()
        Path(path).write_bytes(response.content)
        return response.content.count(b"\n")

    def count(self, **filters: Any) -> int:
        return int(self._call("GET", "journal/count", **filters)["count"])

    def count_by(self, group_by: str, **filters: Any) -> dict[str, int]:
        return dict(self._call("GET", "journal/count", group_by=group_by, **filters)["groups"])

    # ---- callbacks ------------------------------------------------------------------------
    def callbacks(self) -> dict[str, Any]:
        """{"config", "pending", "log"}: the delivery log and what is still queued."""
        return dict(self._call("GET", "callbacks"))

    def configure_callbacks(self, **config: Any) -> dict[str, Any]:
        """delay, duplicate, drop, drop_probability, reorder, auto, timeout."""
        return dict(self._call("POST", "callbacks/config", config))

    def flush_callbacks(self) -> list[dict[str, Any]]:
        """Deliver every callback due now (mock clock); returns the attempts made."""
        return list(self._call("POST", "callbacks/flush")["delivered"])

    def sink_url(self, name: str) -> str:
        """A callback_url served by the mock itself, recording what it receives."""
        return self.url(f"/__mock/sink/{name}")

    def sink(self, name: str, *, wait_for: int | None = None, timeout: float = 5.0) -> list[Any]:
        """What the sink received; with `wait_for`, first wait until that many bodies arrived."""
        return list(self._call("GET", f"sink/{name}", wait_for=wait_for, timeout=timeout)["received"])

    # ---- Tencent job slots ----------------------------------------------------------------
    def hold_tencent(self, hold: bool = True) -> None:
        """While held, ReplaceBackground jobs stay running (occupying their account's slot)."""
        self._call("POST", "tencent/jobs", {"hold": hold})

    def release_tencent(self) -> None:
        self.hold_tencent(False)

    def wait_tencent_jobs(self, count: int, timeout: float = 5.0) -> dict[str, Any]:
        """Block until at least `count` ReplaceBackground jobs are running."""
        return dict(self._call("GET", "tencent/jobs", wait_active=count, timeout=timeout))

    # ---- renders --------------------------------------------------------------------------
    def renders(self) -> dict[str, Any]:
        """The worker pool: workers, held, running, started, started_total, delivered_total."""
        return dict(self._call("GET", "renders"))

    def hold_renders(self, hold: bool = True) -> dict[str, Any]:
        """While held, finished renders are not delivered: their tasks stay unfinished."""
        return dict(self._call("POST", "renders", {"hold": hold}))

    def release_renders(self) -> dict[str, Any]:
        return self.hold_renders(False)

    def wait_renders(
        self, *, started: int | None = None, idle: bool = False, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Block until `started` renders were picked up by a worker in all, and/or none is in flight."""
        return dict(
            self._call("GET", "renders", wait_started=started, wait_idle=idle or None, timeout=timeout)
        )

    def wait_sync_submits(self, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Block until `count` sync=1 submits are waiting for their tasks; returns the task ids."""
        return list(self._call("GET", "sync_waiting", wait=count, timeout=timeout)["task_ids"])

    # ---- inspection -----------------------------------------------------------------------
    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"tasks/{task_id}"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mock_upstream", "the picflow mock upstream")
    group.addoption(
        "--mock-upstream-scenario",
        default=None,
        help="start the mock_server fixture from this scenario file (JSON, or YAML with PyYAML)",
    )
    group.addoption(
        "--mock-upstream-journal",
        default=None,
        metavar="DIR",
        help="write each test's mock journal to DIR/<test>.jsonl",
    )
    parser.addini("mock_upstream_scenario", "scenario file for the mock_server fixture", default="")


# Tests wait longer for renders than the server's defaults (8 s sync, 2 s status): a loaded CI
# box renders slowly (the workers are niced), and a test that expects a finished task must not
# get a running one because of that. Still below the layer's 30 s read timeout. A scenario
# file's own settings win.
FIXTURE_SETTINGS: dict[str, float] = {"sync_wait_seconds": 20.0, "status_render_wait_seconds": 20.0}


@pytest.fixture(scope="session")
def mock_server(pytestconfig: pytest.Config) -> Iterator[ThreadedServer]:
    """The mock upstream on a free loopback port for the whole session."""
    path = pytestconfig.getoption("--mock-upstream-scenario") or pytestconfig.getini("mock_upstream_scenario")
    config = dict(load_config_file(str(path))) if path else {}
    config["settings"] = {**FIXTURE_SETTINGS, **config.get("settings", {})}
    with ThreadedServer(MockApp(MockState(config))) as server:
        yield server


@pytest.fixture
def mock_upstream(mock_server: ThreadedServer, request: pytest.FixtureRequest) -> Iterator[MockUpstream]:
    """A control helper for the session's mock, reset before the test."""
    with MockUpstream(mock_server.base_url, base_settings=FIXTURE_SETTINGS) as helper:
        helper.reset()
        yield helper
        folder = request.config.getoption("--mock-upstream-journal")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            helper.export_journal(Path(folder) / f"{name}.jsonl")
