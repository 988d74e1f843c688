"""Provider clients built once per Lambda container from their specs, configuration and secrets.

Generic: a provider's client, base URL setting and secret keys are its spec's
(:data:`picflow.core.catalogue.SPECS`), so adding a provider adds nothing here. Credentials come
from one Secrets Manager secret (JSON) read through powertools parameters with caching, so a warm
container does not call Secrets Manager per job and a rotated secret is picked up within
``SECRET_MAX_AGE`` seconds.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import httpx

from picflow.core import config
from picflow.core.catalogue import SPECS, Provider, Style
from picflow.core.errors import InvalidRequestError
from picflow.core.warm import long_lived
from picflow.net.http import DEFAULT_TIMEOUT, build_client
from picflow.providers.base import ProviderClient, Secret

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from picflow.core.tasks import TaskStatus

__all__ = [
    "SECRET_MAX_AGE",
    "CallbackParser",
    "Credentials",
    "Registry",
    "callback_parser",
    "client_class",
    "load_credentials",
    "registry",
]

SECRET_MAX_AGE = 300
NOTIFY_SIGNING_KEY = "notify_signing_key"


@dataclass(frozen=True)
class Credentials:
    """Every provider's keys (its spec's ``secret_keys``), and the key completion notices are
    signed with (shared with the receivers of notify_url; optional)."""

    secrets: Mapping[str, Secret]
    notify_signing_key: Secret | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Credentials:
        keys = [key for spec in SPECS.values() for key in spec.secret_keys]
        notify = raw.get(NOTIFY_SIGNING_KEY)
        return cls(
            secrets={key: Secret(str(raw[key])) for key in keys},
            notify_signing_key=Secret(str(notify)) if notify else None,
        )


@functools.cache
def _secrets() -> SecretsProvider:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from picflow.net import sdk

    # Left to itself powertools builds its client from a new boto3.Session, which loads botocore's
    # endpoint and model data a second time (~70 ms of a cold start): use the layer's session.
    return SecretsProvider(boto3_client=sdk.client("secretsmanager"))


def load_credentials() -> Credentials:
    raw = _secrets().get(config.env(config.PROVIDER_SECRET), transform="json", max_age=SECRET_MAX_AGE)
    if not isinstance(raw, dict):
        raise TypeError("the provider secret must be a JSON object")
    return Credentials.from_mapping(raw)


def client_class(provider: Provider) -> type[ProviderClient]:
    """The class its spec names, imported on first use (a Lambda loads only its provider's)."""
    module, _, name = SPECS[provider].client.partition(":")
    cls: type[ProviderClient] = getattr(importlib.import_module(module), name)
    return cls


class CallbackParser(Protocol):
    def parse_callback(self, body: bytes, *, operation: str | None = None) -> TaskStatus: ...


def callback_parser(provider: Provider) -> CallbackParser:
    """How ``provider``'s callbacks read (only a provider whose spec offers callbacks has one)."""
    if Style.CALLBACK not in SPECS[provider].styles:
        raise InvalidRequestError(
            f"{provider} does not call back", provider=provider.value, code="NoCallbacks"
        )
    return cast("CallbackParser", client_class(provider))


class Registry:
    """Clients by provider; ``http`` is shared so connections are pooled per container."""

    def __init__(self, http: httpx.Client | None = None) -> None:
        self._http = http

    def http(self, base_url: str = "") -> httpx.Client:
        if self._http is not None:
            return self._http
        return _pooled_client(base_url, config.env_float(config.HTTP_READ_TIMEOUT, 30.0))

    def client(self, provider: Provider) -> ProviderClient:
        spec = SPECS[provider]
        http = self.http(config.env(spec.base_url))
        return client_class(provider).from_config(http, load_credentials().secrets)

    def downloads(self) -> httpx.Client:
        """For result URLs (absolute; any host the provider names)."""
        return self.http("")


@functools.cache
def _pooled_client(base_url: str, read_timeout: float) -> httpx.Client:
    timeout = DEFAULT_TIMEOUT
    with long_lived():  # kept for the container, with its TLS context (and httpcore, imported by the first)
        return build_client(
            base_url,
            timeout=httpx.Timeout(
                connect=timeout.connect, read=read_timeout, write=timeout.write, pool=timeout.pool
            ),
        )


@functools.cache
def registry() -> Registry:
    return Registry()
