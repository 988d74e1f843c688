"""Configuration in one module: environment variable names and how they are read.

Values are read lazily, on every call, with ``os.environ[...]`` so a missing one fails
loudly and tests can change them between invocations. Secrets are never environment
variables: only the *names* of the Secrets Manager secrets that hold them.
"""

from __future__ import annotations

import os

__all__ = [
    "BATCH_STATE_MACHINE_ARN",
    "CALLBACK_BASE_URL",
    "DEFAULT_TENANT_KEY",
    "EVENT_BUS_NAME",
    "HDREDRAW_BASE_URL",
    "HTTP_READ_TIMEOUT",
    "INPUT_BUCKET",
    "JOBS_TABLE",
    "OUTPUT_BUCKET",
    "PROVIDER_SECRET",
    "RESULT_CACHE_TABLE",
    "RESULT_HOSTS",
    "RESULT_URL_TTL_DEFAULT",
    "SEMAPHORE_TABLE",
    "STATE_MACHINE_ARN",
    "TASKPIC_BASE_URL",
    "TENCENT_ENDPOINT",
    "concurrency_overrides",
    "env",
    "env_float",
    "env_int",
    "operation_function",
    "optional",
    "result_hosts",
]

JOBS_TABLE = "PICFLOW_JOBS_TABLE"
SEMAPHORE_TABLE = "PICFLOW_SEMAPHORE_TABLE"
# The content-addressed result cache (picflow.aws.cache).
RESULT_CACHE_TABLE = "PICFLOW_RESULT_CACHE_TABLE"
INPUT_BUCKET = "PICFLOW_INPUT_BUCKET"
OUTPUT_BUCKET = "PICFLOW_OUTPUT_BUCKET"
STATE_MACHINE_ARN = "PICFLOW_STATE_MACHINE_ARN"
BATCH_STATE_MACHINE_ARN = "PICFLOW_BATCH_STATE_MACHINE_ARN"
EVENT_BUS_NAME = "PICFLOW_EVENT_BUS_NAME"
# Public base URL of the API stage; callbacks for the task/pic API are built on it.
CALLBACK_BASE_URL = "PICFLOW_CALLBACK_BASE_URL"
TASKPIC_BASE_URL = "PICFLOW_TASKPIC_BASE_URL"
TENCENT_ENDPOINT = "PICFLOW_TENCENT_ENDPOINT"
HDREDRAW_BASE_URL = "PICFLOW_HDREDRAW_BASE_URL"
# Name (or ARN) of the Secrets Manager secret holding all provider credentials as JSON.
PROVIDER_SECRET = "PICFLOW_PROVIDER_SECRET"  # noqa: S105 - a variable name, not a secret
# Multiplies every Wait the workflow asks for; 0 in tests (moto's Wait really sleeps).
WAIT_SCALE = "PICFLOW_WAIT_SCALE"
# Per-provider in-flight caps, e.g. "taskpic=8,tencent=1,hdredraw=4".
CONCURRENCY = "PICFLOW_CONCURRENCY"
# Seconds a callback may take before the job falls back to polling.
CALLBACK_TIMEOUT = "PICFLOW_CALLBACK_TIMEOUT"
# Hard deadline of one job, seconds from submit.
JOB_DEADLINE = "PICFLOW_JOB_DEADLINE"
MAX_POLLS = "PICFLOW_MAX_POLLS"
RESULT_URL_TTL = "PICFLOW_RESULT_URL_TTL"
# Seconds presigned result URLs (GET answers, notices) stay valid unless RESULT_URL_TTL says.
RESULT_URL_TTL_DEFAULT = 900
# Days a job record is kept (DynamoDB TTL).
JOB_TTL_DAYS = "PICFLOW_JOB_TTL_DAYS"
# Seconds an upstream answer may take (httpx read timeout); 30 unless set.
HTTP_READ_TIMEOUT = "PICFLOW_HTTP_READ_TIMEOUT"
# The Lambda function of each operation, "segmentation=<name>,background=<name>,...": the job
# state machine invokes the one Validate names (template.yaml builds it from the functions).
OPERATION_FUNCTIONS = "PICFLOW_OPERATION_FUNCTIONS"
# Extra hosts a user-given URL may point at (the local stack's mock and S3 endpoints).
URL_ALLOWLIST = "PICFLOW_URL_ALLOWLIST"
# Hosts a provider's result URLs may name besides its spec's, "taskpic=a.example|b.example:8443,
# tencent=*.cos.example" (the local stack: the mock's address).
RESULT_HOSTS = "PICFLOW_RESULT_HOSTS"
# The API key id (the usage plan's first key, the template's) whose caller is the default tenant:
# the one that owns S3-triggered jobs of today's layout (picflow.core.names.DEFAULT_TENANT).
DEFAULT_TENANT_KEY = "PICFLOW_DEFAULT_TENANT_KEY"


def env(name: str) -> str:
    return os.environ[name]


def optional(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _pairs(raw: str) -> dict[str, str]:
    """``"a=1,b=2"`` as a dict (blank items skipped)."""
    pairs = {}
    for item in raw.split(","):
        name, _, value = item.partition("=")
        if name.strip() and value.strip():
            pairs[name.strip()] = value.strip()
    return pairs


def operation_function(operation: str) -> str:
    """The function that submits and checks ``operation``; a missing entry fails loudly."""
    functions = _pairs(env(OPERATION_FUNCTIONS))
    if operation not in functions:
        raise KeyError(f"{OPERATION_FUNCTIONS} names no function for {operation!r}")
    return functions[operation]


def concurrency_overrides() -> dict[str, int]:
    """``PICFLOW_CONCURRENCY`` parsed: caps that replace a provider's default (its spec's)."""
    return {name: int(value) for name, value in _pairs(optional(CONCURRENCY)).items()}


def result_hosts(provider: str) -> tuple[str, ...]:
    """``PICFLOW_RESULT_HOSTS``'s extra result hosts of ``provider`` (``|``-separated)."""
    raw = _pairs(optional(RESULT_HOSTS)).get(provider, "")
    return tuple(h.strip().lower() for h in raw.split("|") if h.strip())
