"""Chaos runs: jobs across all 14 operations through the local stack, against a faulty mock upstream.

One engine for `tests/chaos/test_chaos.py` (a few dozen jobs in `make test`) and `bench/chaos.py`
(500 jobs, prints the table). Each job is an S3 upload of an image of its own (unique bytes, so
no job reuses another's results) that the real trigger, state machine and handlers run against
mock_upstream, whose fault rules fire with a seeded probability (`fault_rate`, 20 % by default)
on every upstream route:

- paid submits (task/pic, HD redraw, Tencent): 5xx, 429 with Retry-After, connection resets,
  read timeouts (latency past the client's read timeout, set low for the run through
  ``PICFLOW_HTTP_READ_TIMEOUT``), malformed JSON, a wrong content type, Tencent JobNumExceed;
- status reads: the same, less JobNumExceed;
- result downloads: 5xx, resets, read timeouts, truncated bodies, expired URLs (403);
- callbacks: every one duplicated, a share dropped, and a share late (the task only ends when
  polled, so its callback comes after the job has fallen back to polling);
- S3 events: a share of the uploads' events delivered twice (replayed through Lambda invoke).

Then it checks what must hold whatever happened, from the mock's journal (every request made
for a job carries ``X-Correlation-Id: <job id>``), the job records, the executions and S3:

- every job ends SUCCEEDED or FAILED, with a classified error, within its deadline; none stuck,
  no provider slot left held;
- no job paid twice: at most one paid submit per job in the journal (a faulted attempt that
  never reached the provider is not paid there), and exactly one for a job that succeeded;
- every stored output is what its manifest says (sha256, size), decodes as its declared type,
  and has the sha256 of a file (or inline result) the mock served for that job's task;
- no input object deleted or overwritten; every FAILED job keeps its input and its error.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from picflow.core import errors
from picflow.core.catalogue import get_operation
from picflow.core.names import s3_job_id

if TYPE_CHECKING:
    from mock_upstream.testing import MockUpstream
    from picflow_cli.local.stack import LocalStack

__all__ = ["CLASSIFIED_ERRORS", "OPERATIONS", "ChaosReport", "ChaosSettings", "run_chaos"]

SAMPLES: Final = Path(__file__).resolve().parents[2] / "mock_upstream" / "samples"

# operation -> (sample image, params, modes to cycle through: None = the operation's only style)
OPERATIONS: Final[dict[str, tuple[str, dict[str, Any], tuple[str | None, ...]]]] = {
    "segmentation": ("product.jpg", {"output_type": 1}, ("callback", "poll", "callback", "sync")),
    "background": ("foreground.png", {"prompt": "a quiet beach", "batch_size": 2}, ("callback", "poll")),
    "idphoto": ("portrait.png", {"size": "300x400", "format": "jpg"}, ("callback", "sync", "poll")),
    "replace_background": ("product.jpg", {"prompt": "a marble table"}, (None,)),
    "redraw": ("image.png", {"upscale": 2}, (None,)),
    "vectorize": ("logo.jpg", {"color_count": 4}, (None,)),
    "face_enhance": ("portrait.png", {}, (None,)),
    "seamless": ("image.png", {"direction": 0}, (None,)),
    "remove_fabric": ("image.png", {}, (None,)),
    "edit_image": ("image.png", {"prompt": "watercolour"}, (None,)),
    "extract_pattern": ("image.png", {"aspect_ratio": "1:1"}, (None,)),
    "remove_diamonds": ("image.png", {}, (None,)),
    "expand_image": ("image.png", {"expand_top": 0.2}, (None,)),
    "remove_watermark": ("image.png", {}, (None,)),
}

# A FAILED job's error.type must be one of picflow's error classes (the Step Functions contract)
# or a documented Step Functions error; anything else (InternalError, Lambda.*) is unclassified.
CLASSIFIED_ERRORS: Final = frozenset(errors.__all__) - {"PicflowError"} | {
    "States.Timeout",
    "States.HeartbeatTimeout",
}

# Faults that damage an answer after the provider produced it: a file served under one of these
# is not what the provider stored, so it does not count as "what the mock served".
_DAMAGING: Final = ("malformed_json", "wrong_content_type", "truncated_body", "corrupt_body", "truncated")


# Faults (by label) after which the client has no answer it can read: a submit under one is in doubt.
_ANSWER_LOST: Final = frozenset({"connection reset", "read timeout", "malformed JSON", "wrong content type"})

_Rules = list[tuple[str, str, dict[str, Any]]]  # (label, fault kind, rule fields)


# Every submit of this operation is throttled (429 + Retry-After) for the whole run: its jobs
# must end FAILED DeadlineExceededError at their deadline, unpaid, their provider slot released.
THROTTLED_FOREVER: Final = "remove_watermark"


@dataclass(frozen=True)
class ChaosSettings:
    jobs: int
    seed: int = 7
    fault_rate: float = 0.3
    in_flight: int = 12  # jobs running at once (a new one starts as one ends)
    job_deadline: int = 45  # the jobs' own deadline (PICFLOW_JOB_DEADLINE), seconds from Validate
    read_timeout: float = 4.0  # the clients' read timeout during the run; the latency fault exceeds it
    callback_timeout: int = 2  # seconds a callback may take before the job polls instead
    concurrency: str | None = None  # PICFLOW_CONCURRENCY for the run (the stack's caps otherwise)
    # AWS's own faults, as shares of requests / invocations (picflow_cli.local.faults).
    s3_fault_rate: float | None = None  # default: a third of fault_rate (botocore retries them)
    crash_rate: float | None = None  # default: a twentieth of fault_rate per invocation
    stall: float = 120.0  # a job's wait gives up when nothing ran in the stack for this long

    @property
    def s3_faults(self) -> float:
        return self.fault_rate / 3 if self.s3_fault_rate is None else self.s3_fault_rate

    @property
    def crashes(self) -> float:
        return self.fault_rate / 20 if self.crash_rate is None else self.crash_rate

    @property
    def stuck_after(self) -> float:
        """A job not ended this long after its upload is stuck: its deadline, then the failure
        path (release, record, notify) with room for a loaded machine."""
        return self.job_deadline + 120.0

    def fault_plan(self) -> _Rules:
        """(label, kind, rule fields) for every route; each route's rules share `fault_rate`."""
        slow: dict[str, Any] = {"seconds": self.read_timeout + 1.0}
        # Slow but answering: within the read timeout, so the answer arrives.
        sluggish: dict[str, Any] = {"min_seconds": 0.2, "max_seconds": self.read_timeout / 2}
        answers: _Rules = [
            ("5xx", "http_status", {"status": 503}),
            ("429 Retry-After", "rate_limit", {"retry_after": 1}),
            ("connection reset", "reset", {}),
            ("read timeout", "latency", slow),
            ("slow but answering", "latency", sluggish),
            ("malformed JSON", "malformed_json", {}),
            ("wrong content type", "wrong_content_type", {}),
        ]
        downloads: _Rules = [
            ("5xx", "http_status", {"status": 503}),
            ("connection reset", "reset", {}),
            ("read timeout", "latency", slow),
            ("slow but answering", "latency", sluggish),
            ("truncated download", "truncated", {}),
            ("expired download", "http_status", {"status": 403}),
        ]
        job_num: _Rules = [
            ("Tencent JobNumExceed", "provider_error", {"code": "RequestLimitExceeded.JobNumExceed"})
        ]
        routes: list[tuple[dict[str, Any], _Rules]] = [
            ({"route": "/task/pic/*", "method": "POST"}, answers),  # task/pic submits
            ({"route": "/api/submit_*"}, answers),  # HD redraw submits
            ({"action": "ReplaceBackground"}, answers + job_num),  # Tencent (sync: submit = result)
            ({"route": "/task/*", "method": "GET"}, answers),  # task/pic status reads
            ({"route": "/api/check_task_status"}, answers),  # HD redraw status reads
            ({"route": "/files/*"}, downloads),  # result downloads
        ]
        plan: _Rules = []
        for scope, kinds in routes:
            # Every rule rolls its own die: k rules at p each leave (1 - p)^k = 1 - fault_rate clean.
            p = 1.0 - (1.0 - self.fault_rate) ** (1.0 / len(kinds))
            plan += [(label, kind, {**scope, **fields, "probability": p}) for label, kind, fields in kinds]
        return plan


@dataclass
class JobRun:
    index: int
    operation: str
    mode: str | None
    key: str
    duplicate_event: bool
    job_id: str = ""
    version_id: str = ""
    input_sha256: str = ""
    seconds: float = 0.0
    status: str = "NOT STARTED"
    execution: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChaosReport:
    settings: ChaosSettings
    elapsed: float = 0.0
    runs: list[JobRun] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    duplicate_paid: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    # Paid (a paid submit in the mock's journal) but FAILED: cause -> jobs, and which could have
    # been recovered (the provider still offered the result: a delivered callback, a known task).
    paid_failures: Counter[str] = field(default_factory=Counter)
    recoverable: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> float:
        """The share of jobs that ended SUCCEEDED or FAILED."""
        ended = sum(1 for r in self.runs if r.status in ("SUCCEEDED", "FAILED"))
        return ended / len(self.runs) if self.runs else 0.0

    @property
    def ok(self) -> bool:
        misses = self.duplicate_paid or self.stuck or self.corrupt or self.violations
        return not (misses or self.orphans or self.recoverable) and self.terminal == 1.0

    def summary(self) -> str:
        ended = Counter(r.status for r in self.runs)
        verdict = "OK" if self.ok else "VIOLATED"
        return (
            f"summary: {len(self.runs)} chaos jobs in {self.elapsed:.1f} s (wall),"
            f" {sum(self.faults.values())} faults injected,"
            f" {ended['SUCCEEDED']} succeeded / {ended['FAILED']} failed classified;"
            f" terminal {self.terminal:.1%}, stuck {len(self.stuck)},"
            f" double-paid {len(self.duplicate_paid)}, corrupt {len(self.corrupt)},"
            f" orphan objects {len(self.orphans)}, recoverable paid-but-failed {len(self.recoverable)},"
            f" paid-but-failed {sum(self.paid_failures.values())},"
            f" other violations {len(self.violations)}: {verdict}"
        )

    def table(self) -> str:
        s = self.settings
        slowest = max((r.seconds for r in self.runs), default=0.0)
        lines = [
            f"chaos run: {len(self.runs)} jobs over {len({r.operation for r in self.runs})} operations,"
            f" seed {s.seed}, fault rate {s.fault_rate:.0%} per upstream request, {s.in_flight} in flight,"
            f" {self.elapsed:.1f} s (slowest job {slowest:.1f} s, deadline {s.job_deadline:.0f} s)",
            f"AWS faults: S3 503 SlowDown on {s.s3_faults:.0%} of the functions' S3 requests (botocore"
            f" retries them), a Lambda crash mid-step in {s.crashes:.1%} of invocations",
            "",
            f"{'faults injected':<44} {'count':>7}",
        ]
        lines += [f"  {label:<42} {n:>7}" for label, n in sorted(self.faults.items())]
        lines += ["", f"{'outcomes':<44} {'jobs':>7}"]
        lines += [f"  {label:<42} {n:>7}" for label, n in sorted(self.outcomes.items())]
        lines += ["", f"{'retries':<44} {'count':>7}"]
        lines += [f"  {label:<42} {n:>7}" for label, n in sorted(self.retries.items())]
        lines += ["", f"{'paid but FAILED, by cause (mock journal)':<92} {'jobs':>5}"]
        lines += [f"  {label:<90} {n:>5}" for label, n in sorted(self.paid_failures.items())]
        if not self.paid_failures:
            lines.append("  (none)")
        lines += [
            "",
            f"{'terminal (must be 100%)':<44} {self.terminal:>7.1%}",
            f"{'stuck jobs (must be 0)':<44} {len(self.stuck):>7}",
            f"{'double-paid jobs (must be 0)':<44} {len(self.duplicate_paid):>7}",
            f"{'corrupt outputs (must be 0)':<44} {len(self.corrupt):>7}",
            f"{'orphan objects (must be 0)':<44} {len(self.orphans):>7}",
            f"{'recoverable paid-but-failed (must be 0)':<44} {len(self.recoverable):>7}",
            f"{'other violations (must be 0)':<44} {len(self.violations):>7}",
            f"{'wall time':<44} {self.elapsed:>6.1f}s",
        ]
        for title, items in (
            ("duplicate paid", self.duplicate_paid),
            ("stuck", self.stuck),
            ("corrupt", self.corrupt),
            ("orphan", self.orphans),
            ("recoverable", self.recoverable),
            ("violation", self.violations),
        ):
            lines += [f"  {title}: {item}" for item in items[:20]]
        return "\n".join(lines)


def _unique_image(sample: bytes, name: str, index: int, seed: int) -> bytes:
    """The sample with a few pixels of its own: unique bytes, so no job reuses another's results."""
    from PIL import Image

    rng = random.Random(f"{seed}:{index}")
    with Image.open(io.BytesIO(sample)) as img:
        img.load()
        image = img.copy()
    for _ in range(3):
        xy = (rng.randrange(image.width), rng.randrange(image.height))
        pixel = tuple(rng.randrange(256) for _ in image.getbands())
        image.putpixel(xy, pixel if len(pixel) > 1 else pixel[0])
    out = io.BytesIO()
    if name.endswith(".jpg"):
        image.save(out, "JPEG", quality=95)
    else:
        image.save(out, "PNG")
    return out.getvalue()


class _Engine:
    def __init__(self, stack: LocalStack, mock: MockUpstream, settings: ChaosSettings) -> None:
        import boto3

        assert stack.info is not None
        assert stack.runtime is not None
        self.stack = stack
        self.runtime = stack.runtime
        self.info = stack.info
        self.mock = mock
        self.settings = settings
        self.s3 = stack.client("s3")
        self.lam = stack.client("lambda")
        self.ddb: Any = boto3.resource("dynamodb", endpoint_url=self.info.moto_url, region_name="us-east-1")
        self.report = ChaosReport(settings)
        self.run_id = uuid.uuid4().hex[:6]
        self.samples = {p.name: p.read_bytes() for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")}
        self.fault_labels: dict[str, str] = {}
        self.crashed: set[str] = set()  # jobs a Lambda crash hit
        self.lock = threading.Lock()

    # --- setup ------------------------------------------------------------------------------

    def arm(self) -> None:
        s = self.settings
        self.mock.reset()
        self.mock.set_seed(s.seed)
        # Mock time flows with real time (Tencent refuses signatures > 5 minutes off its clock).
        self.mock.set_clock(running=True)
        # Status reads see the task's real state (the 3 s HD cache would freeze on the mock's clock).
        self.mock.configure(hd_status_cache_seconds=0)
        self.mock.configure_callbacks(duplicate=1, drop_probability=s.fault_rate)
        # First, so it wins over the probabilistic rules of the same route.
        route = get_operation(THROTTLED_FOREVER).endpoint
        forever = self.mock.inject_fault("rate_limit", route=route, retry_after=1, times=None)
        self.fault_labels[str(forever["id"])] = f"429 forever ({THROTTLED_FOREVER} submits)"
        for label, kind, fields in s.fault_plan():
            rule = self.mock.inject_fault(kind, times=None, **fields)
            self.fault_labels[str(rule["id"])] = label
        # Late callbacks: a share of tasks end only when polled (after their callback wait ran out).
        rng = random.Random(f"scenarios:{s.seed}")
        slow = [rng.random() < s.fault_rate for _ in range(s.jobs * 2)]
        while slow:
            first = slow[0]
            run = next((i for i, v in enumerate(slow) if v != first), len(slow))
            self.mock.set_scenario(next=run, polls=2 if first else None)
            del slow[:run]

    def plan(self) -> list[JobRun]:
        rng = random.Random(f"jobs:{self.settings.seed}")
        names = list(OPERATIONS)
        runs = []
        for index in range(self.settings.jobs):
            operation = names[index % len(names)]
            sample, _, modes = OPERATIONS[operation]
            mode = modes[(index // len(names)) % len(modes)]
            token = f"cx{self.run_id}n{index:05d}"
            key = f"{operation}/chaos-{self.run_id}/{token}{Path(sample).suffix}"
            runs.append(JobRun(index, operation, mode, key, rng.random() < self.settings.fault_rate))
        return runs

    # --- one job ----------------------------------------------------------------------------

    def run_job(self, run: JobRun) -> JobRun:
        sample, params, _ = OPERATIONS[run.operation]
        body = _unique_image(self.samples[sample], sample, run.index, self.settings.seed)
        metadata = {"params": json.dumps(params)}
        if run.mode is not None:
            metadata["mode"] = run.mode
        started = time.monotonic()
        put = self.s3.put_object(Bucket=self.info.input_bucket, Key=run.key, Body=body, Metadata=metadata)
        run.version_id = str(put["VersionId"])
        run.input_sha256 = hashlib.sha256(body).hexdigest()
        run.job_id = s3_job_id(self.info.input_bucket, run.key, run.version_id)
        if run.duplicate_event:
            self._replay_event(run)
        try:
            # Gives up when nothing ran in the stack for `stall` s, or at the job's deadline plus
            # its failure path (`stuck_after`): a job not ended by then is stuck.
            cap = max(self.settings.stuck_after - (time.monotonic() - started), 0.1)
            run.execution = self.stack.wait_for_execution(run.job_id, timeout=self.settings.stall, cap=cap)
            run.status = str(run.execution["status"])
        except TimeoutError:
            run.status = "STUCK"
        run.seconds = time.monotonic() - started
        return run

    def _replay_event(self, run: JobRun) -> None:
        """S3 delivers at least once: the upload's event again, through Lambda's own invoke."""
        trigger = self.info.resources["S3TriggerFunction"]
        needle = quote(run.key, safe="")
        deadline = time.monotonic() + 30
        event = None
        while event is None:
            with self.runtime.changed:
                calls = [i for i in self.runtime.invocations if i.function == trigger]
                event = next((i.event for i in calls if needle in json.dumps(i.event)), None)
                if event is None:
                    if time.monotonic() > deadline:
                        self._violation(f"{run.key}: no S3 trigger invocation to replay")
                        return
                    self.runtime.changed.wait(0.2)
        answer = self.lam.invoke(FunctionName=trigger, Payload=json.dumps(event))
        replay = json.loads(answer["Payload"].read())
        jobs = replay.get("jobs") or [{}]
        if jobs[0].get("created") is not False or jobs[0].get("job_id") != run.job_id:
            self._violation(f"{run.job_id}: a replayed S3 event started {replay}")
        with self.lock:
            self.report.faults["duplicated S3 event"] += 1

    def _violation(self, text: str) -> None:
        with self.lock:
            self.report.violations.append(text)

    # --- verification -----------------------------------------------------------------------

    def verify(self, runs: list[JobRun], since: float) -> None:
        report = self.report
        journal = self.mock.journal()
        by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in journal:
            for fired in entry.get("faults") or []:
                report.faults[self.fault_labels.get(str(fired).split(":", 1)[0], str(fired))] += 1
            if entry.get("marker"):
                by_job[str(entry["marker"])].append(entry)
        files = [e for e in journal if e.get("provider") == "files"]
        callbacks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for delivery in self.mock.callbacks()["log"]:
            callbacks[str(delivery["task_id"])].append(delivery)
        self._count_callbacks(runs)
        self._count_crashes(runs, since)
        self._count_retries(runs, since)
        table = self.ddb.Table(self.info.resources["JobsTable"])
        for run in runs:
            if run.status == "STUCK":
                report.stuck.append(
                    f"{run.job_id} ({run.operation}, {run.key}) not ended after {run.seconds:.0f} s"
                )
                continue
            record = table.get_item(Key={"job_id": run.job_id}, ConsistentRead=True).get("Item") or {}
            self._check_input(run)
            paid = [e for e in by_job.get(run.job_id, []) if e.get("paid")]
            if len(paid) > 1:
                report.duplicate_paid.append(f"{run.job_id} ({run.operation}): {len(paid)} paid submits")
            if record.get("status") != run.status:
                self._violation(f"{run.job_id}: record {record.get('status')} vs execution {run.status}")
            if run.status == "SUCCEEDED":
                report.outcomes["SUCCEEDED"] += 1
                if len(paid) != 1:
                    self._violation(f"{run.job_id}: succeeded with {len(paid)} paid submits")
                self._check_outputs(run, record, paid, files)
            elif run.status == "FAILED":
                error = record.get("error") or {}
                kind = str(error.get("type"))
                report.outcomes[f"FAILED {kind} ({error.get('code')})"] += 1
                if kind not in CLASSIFIED_ERRORS:
                    self._violation(f"{run.job_id} ({run.operation}): unclassified error {error}")
                if run.execution.get("error") != kind or not error.get("message"):
                    self._violation(f"{run.job_id}: execution error {run.execution.get('error')} vs {error}")
                # Throttled forever: the deadline ends it, unpaid (a crash mid-Submit leaves the
                # claim in doubt: OutcomeUnknownError SubmitInDoubt, never a second submit).
                # So does a fault that took the answer to a submit (reset, read timeout, an
                # unreadable body): the client cannot know whether that request was taken.
                in_doubt = run.job_id in self.crashed or self._answer_lost(by_job.get(run.job_id, []))
                allowed = {"DeadlineExceededError"} | ({"OutcomeUnknownError"} if in_doubt else set())
                if run.operation == THROTTLED_FOREVER and (kind not in allowed or paid):
                    self._violation(f"{run.job_id}: throttled forever, ended {kind} with {len(paid)} paid")
                if paid:
                    cause, recoverable = self._paid_failure(run, record, paid[0], callbacks)
                    report.paid_failures[f"{cause}{' [RECOVERABLE]' if recoverable else ''}"] += 1
                    if recoverable:
                        report.recoverable.append(f"{run.job_id} ({run.operation}, {run.mode}): {cause}")
            else:
                report.outcomes[run.status] += 1
                self._violation(f"{run.job_id}: ended {run.status}")
        self._check_slots(runs)
        self._check_orphans(runs)

    def _paid_failure(
        self,
        run: JobRun,
        record: Mapping[str, Any],
        paid: Mapping[str, Any],
        callbacks: Mapping[str, list[dict[str, Any]]],
    ) -> tuple[str, bool]:
        """Why a paid job failed, read against the journal, and whether the provider still offered
        its result (a recoverable loss): its callback delivered, or its task known to the job."""
        error = record.get("error") or {}
        cause = f"{error.get('type')} ({error.get('code')})"
        provider = get_operation(run.operation).provider.value
        task_id = str(paid.get("task_id") or "")
        delivered = any(d["outcome"] == "delivered" for d in callbacks.get(task_id, []))
        if not record.get("provider_task_id"):
            # The job never learned the task: the paid answer was damaged or lost on our side.
            how = "paid answer damaged" if paid.get("faults") else "paid answer lost in a crashed step"
            if provider == "tencent":
                return f"{cause}: {how}; Tencent is synchronous (no task to read again)", False
            if provider == "hdredraw":
                return f"{cause}: {how}; HD redraw's answer is the task's only handle", False
            if delivered:
                return f"{cause}: {how}; its callback named the task", True
            return f"{cause}: {how}; its callback was lost too", False
        if provider == "tencent":
            # Read, then its result URLs refused or its invocation crashed before storing them:
            # Tencent is synchronous, its answer was the only copy.
            return f"{cause}: Tencent answer read, results not stored (sync: the only copy)", False
        # The task was known and ended done at the mock (every chaos task succeeds).
        if (
            not delivered
            and error.get("type") == "DeadlineExceededError"
            and not self._offered_in_time(task_id, record)
        ):
            # The provider had nothing to give before the job's deadline (its render ended later,
            # e.g. starved on a loaded machine): the deadline, not a lost result, ended the job.
            return f"{cause}: task still running at the job's deadline", False
        how = "its callback came" if delivered else "task known to the job"
        return f"{cause}: {how}, result not collected", True

    def _offered_in_time(self, task_id: str, record: Mapping[str, Any]) -> bool:
        """Whether the mock offered the task's result (its `ended_at`, on the mock's running
        clock, anchored to wall time at reset) before the job's deadline (validated_at + the
        deadline the run configured)."""
        ended = self.mock.task(task_id).get("ended_at") if task_id else None
        validated = record.get("validated_at")
        if ended is None or not validated:
            return ended is not None
        deadline = datetime.fromisoformat(str(validated)).timestamp() + self.settings.job_deadline
        return float(ended) < deadline

    def _check_orphans(self, runs: list[JobRun]) -> None:
        """Every object in the output bucket of this run's jobs is listed by a SUCCEEDED job's
        manifest (or is that manifest); a FAILED job leaves none."""
        table = self.ddb.Table(self.info.resources["JobsTable"])
        expected: set[str] = set()
        for run in runs:
            if run.status != "SUCCEEDED":
                continue
            record = table.get_item(Key={"job_id": run.job_id}).get("Item") or {}
            manifest = record.get("manifest") or {}
            expected |= {str(o["key"]) for o in manifest.get("outputs") or []}
            if manifest.get("key"):
                expected.add(str(manifest["key"]))
        ours = {r.job_id for r in runs}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.info.output_bucket):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if key in expected:
                    continue
                if any(part in ours for part in key.split("/")):
                    self.report.orphans.append(key)

    def _answer_lost(self, entries: list[dict[str, Any]]) -> bool:
        """Whether a fault kept one of these requests' answers from the client."""
        return any(
            self.fault_labels.get(str(fired).split(":", 1)[0]) in _ANSWER_LOST
            for entry in entries
            for fired in entry.get("faults") or []
        )

    def _count_crashes(self, runs: list[JobRun], since: float) -> None:
        ours = {r.job_id for r in runs}
        for call in list(self.runtime.invocations):
            if call.started < since or call.error_type != "Runtime.ExitError":
                continue
            event = call.event if isinstance(call.event, dict) else {}
            state = event.get("state") if isinstance(event.get("state"), dict) else event.get("request")
            job_id = str((state or {}).get("job_id") or event.get("execution_name") or "")
            if job_id in ours or not job_id:
                self.report.faults["Lambda crash mid-step"] += 1
                self.crashed.add(job_id)

    def _check_input(self, run: JobRun) -> None:
        """The upload is still there, untouched: one version, no delete marker, same bytes."""
        listed = self.s3.list_object_versions(Bucket=self.info.input_bucket, Prefix=run.key)
        versions = [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == run.key]
        markers = [m for m in listed.get("DeleteMarkers", []) if m["Key"] == run.key]
        if versions != [run.version_id] or markers:
            self._violation(
                f"{run.job_id}: input {run.key} versions {versions}, delete markers {len(markers)}"
            )
            return
        body = self.s3.get_object(Bucket=self.info.input_bucket, Key=run.key)["Body"].read()
        if hashlib.sha256(body).hexdigest() != run.input_sha256:
            self._violation(f"{run.job_id}: input {run.key} changed")

    def _check_outputs(
        self, run: JobRun, record: Mapping[str, Any], paid: list[dict[str, Any]], files: list[dict[str, Any]]
    ) -> None:
        from PIL import Image

        task_id = str(record.get("provider_task_id") or "")
        served = {str(e["result_sha256"]) for e in paid if e.get("result_sha256")}
        served |= {
            str(e["result_sha256"])
            for e in files
            if task_id
            and task_id in str(e.get("path"))
            and e.get("status") == 200
            and e.get("result_sha256")
            and not any(str(f).endswith(_DAMAGING) for f in e.get("faults") or [])
        }
        manifest = record.get("manifest") or {}
        outputs = list(manifest.get("outputs") or [])
        if not outputs:
            self.report.corrupt.append(f"{run.job_id}: succeeded without outputs")
        for out in outputs:
            where = f"{run.job_id} ({run.operation}) {out.get('key')}"
            data = self.s3.get_object(Bucket=manifest["bucket"], Key=out["key"])["Body"].read()
            sha = hashlib.sha256(data).hexdigest()
            if sha != out["sha256"] or len(data) != int(out["size"]):
                self.report.corrupt.append(f"{where}: stored bytes differ from the manifest")
            elif sha not in served:
                self.report.corrupt.append(f"{where}: sha256 {sha[:12]} is not what the mock served")
            elif str(out["content_type"]).startswith("image/"):
                try:
                    with Image.open(io.BytesIO(data)) as img:
                        img.load()
                        declared = Image.MIME.get(img.format or "")
                    if declared != out["content_type"]:
                        self.report.corrupt.append(
                            f"{where}: decodes as {declared}, not {out['content_type']}"
                        )
                except Exception as exc:
                    self.report.corrupt.append(f"{where}: does not decode: {exc}")
            elif out["content_type"] == "application/postscript" and not data.startswith(b"%!PS-Adobe"):
                self.report.corrupt.append(f"{where}: not PostScript")

    def _count_callbacks(self, runs: list[JobRun]) -> None:
        log = self.mock.callbacks()["log"]
        self.report.faults["duplicated callback"] += sum(
            1 for d in log if d["copy"] > 0 and d["outcome"] != "dropped"
        )
        self.report.faults["dropped callback"] += sum(
            1 for d in log if d["copy"] == 0 and d["outcome"] == "dropped"
        )
        table = self.ddb.Table(self.info.resources["JobsTable"])
        late = 0
        for run in runs:
            if run.mode != "callback" or run.status == "STUCK":
                continue
            record = table.get_item(Key={"job_id": run.job_id}).get("Item") or {}
            # The callback came, but only after the job had stopped waiting for it and polled.
            if int(record.get("polls") or 0) > 0 and record.get("callbacks"):
                late += 1
        self.report.faults["late callback (after polling began)"] += late

    def _count_retries(self, runs: list[JobRun], since: float) -> None:
        ours = {r.job_id for r in runs}
        collect = self.info.resources["CollectFunction"]
        validate = self.info.resources["ValidateFunction"]
        steps: Counter[tuple[str, str]] = Counter()
        for call in list(self.runtime.invocations):
            event = call.event if isinstance(call.event, dict) else {}
            state = event.get("state") if isinstance(event.get("state"), dict) else event.get("request")
            job_id = str((state or {}).get("job_id") or event.get("execution_name") or "")
            if call.started < since or job_id not in ours:
                continue
            if call.function == collect:
                steps[(job_id, "Collect")] += 1
            elif call.function == validate:
                steps[(job_id, "Validate")] += 1
            elif event.get("step") == "submit":
                steps[(job_id, "Submit")] += 1
        for (_, step), attempts in steps.items():
            if attempts > 1:
                self.report.retries[f"{step} re-attempts (Step Functions)"] += attempts - 1

    def _check_slots(self, runs: list[JobRun]) -> None:
        ours = {r.job_id for r in runs}
        table = self.ddb.Table(self.info.resources["SemaphoreTable"])
        for provider in ("taskpic", "tencent", "hdredraw"):
            item = table.get_item(Key={"name": provider}, ConsistentRead=True).get("Item") or {}
            held = ours & set(item.get("holders") or {})
            if held:
                self._violation(f"{provider} slots still held by ended jobs: {sorted(held)[:5]}")


def run_chaos(stack: LocalStack, mock: MockUpstream, settings: ChaosSettings) -> ChaosReport:
    """Run `settings.jobs` jobs under faults through `stack` against `mock`; check and report."""
    engine = _Engine(stack, mock, settings)
    from picflow_cli.local import faults

    assert stack.info is not None
    resources = stack.info.resources
    env: dict[str, str] = {
        "PICFLOW_HTTP_READ_TIMEOUT": str(settings.read_timeout),
        "PICFLOW_CALLBACK_TIMEOUT": str(settings.callback_timeout),
        "PICFLOW_JOB_DEADLINE": str(settings.job_deadline),
        faults.S3_FAULT_RATE: str(settings.s3_faults),
        faults.CRASH_RATE: str(settings.crashes),
        faults.FAULT_SEED: str(settings.seed),
        # moto delivers S3 events inline and once (S3 retries a failed asynchronous invoke).
        faults.FAULTS_EXCEPT: ",".join((resources["S3TriggerFunction"], resources["ApiFunction"])),
    }
    if settings.concurrency:
        env["PICFLOW_CONCURRENCY"] = settings.concurrency
    with stack.function_environment(**env):
        engine.arm()
        runs = engine.plan()
        since = time.time()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(settings.in_flight, thread_name_prefix="chaos") as pool:
                engine.report.runs = list(pool.map(engine.run_job, runs))
        finally:
            engine.report.elapsed = time.monotonic() - started
        engine.verify(engine.report.runs, since)
        mock.clear_faults()
    return engine.report
