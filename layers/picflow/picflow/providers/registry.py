"""Provider clients built once per Lambda container from configuration and secrets.

Credentials come from one Secrets Manager secret (JSON) read through powertools
parameters with caching, so a warm container does not call Secrets Manager per job and a
rotated secret is picked up within ``SECRET_MAX_AGE`` seconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from picflow.core import config
from picflow.net.http import DEFAULT_TIMEOUT, build_client
from picflow.providers.base import Secret

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from picflow.providers.hdredraw import HdRedrawClient
    from picflow.providers.taskpic import TaskPicClient
    from picflow.providers.tencent import TencentClient

__all__ = ["SECRET_MAX_AGE", "Credentials", "Registry", "registry"]

SECRET_MAX_AGE = 300


@dataclass(frozen=True)
class Credentials:
    taskpic_token: Secret
    tencent_secret_id: Secret
    tencent_secret_key: Secret
    hdredraw_user_key: Secret
    # The key completion notices are signed with (shared with the receivers of notify_url).
    notify_signing_key: Secret | None = None

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> Credentials:
        return cls(
            taskpic_token=Secret(str(raw["taskpic_token"])),
            tencent_secret_id=Secret(str(raw["tencent_secret_id"])),
            tencent_secret_key=Secret(str(raw["tencent_secret_key"])),
            hdredraw_user_key=Secret(str(raw["hdredraw_user_key"])),
            notify_signing_key=Secret(str(raw["notify_signing_key"]))
            if raw.get("notify_signing_key")
            else None,
        )


@functools.cache
def _secrets() -> SecretsProvider:
    import boto3
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    # Left to itself powertools builds its client from a new boto3.Session, which loads botocore's
    # endpoint and model data a second time (~70 ms of a cold start): use the default session's.
    return SecretsProvider(boto3_client=boto3.client("secretsmanager"))


def load_credentials() -> Credentials:
    raw = _secrets().get(config.env(config.PROVIDER_SECRET), transform="json", max_age=SECRET_MAX_AGE)
    if not isinstance(raw, dict):
        raise TypeError("the provider secret must be a JSON object")
    return Credentials.from_mapping(raw)


class Registry:
    """Clients keyed by provider; ``http`` is shared so connections are pooled per container."""

    def __init__(self, http: httpx.Client | None = None) -> None:
        self._http = http

    def http(self, base_url: str = "") -> httpx.Client:
        if self._http is not None:
            return self._http
        return _pooled_client(base_url, config.env_float(config.HTTP_READ_TIMEOUT, 30.0))

    def taskpic(self) -> TaskPicClient:
        from picflow.providers.taskpic import TaskPicClient

        return TaskPicClient(self.http(config.env(config.TASKPIC_BASE_URL)), load_credentials().taskpic_token)

    def tencent(self) -> TencentClient:
        from picflow.providers.tencent import TencentClient

        creds = load_credentials()
        endpoint = config.env(config.TENCENT_ENDPOINT)
        # host=None: sign the host of the configured endpoint (the real one, or the local mock).
        return TencentClient(
            self.http(endpoint), creds.tencent_secret_id, creds.tencent_secret_key, host=None
        )

    def hdredraw(self) -> HdRedrawClient:
        from picflow.providers.hdredraw import HdRedrawClient

        return HdRedrawClient(
            self.http(config.env(config.HDREDRAW_BASE_URL)), load_credentials().hdredraw_user_key
        )

    def downloads(self) -> httpx.Client:
        """For result URLs (absolute; any host the provider names)."""
        return self.http("")


@functools.cache
def _pooled_client(base_url: str, read_timeout: float) -> httpx.Client:
    timeout = DEFAULT_TIMEOUT
    return build_client(
        base_url,
        timeout=httpx.Timeout(
            connect=timeout.connect, read=read_timeout, write=timeout.write, pool=timeout.pool
        ),
    )


@functools.cache
def registry() -> Registry:
    return Registry()
