"""The CLI's errors: each becomes one line on stderr and a non-zero exit, in ``main``.

    CliError                  exit 2 unless said otherwise
    ├── UsageError            arguments argparse cannot check (k=v params, input paths)
    ├── ConfigError           no API to talk to, no API key, ``sam`` missing
    ├── LocalStackError       ``local up``/``down``: a port in use, a stack already running
    ├── TransportError        the API could not be reached (connect, timeout), from httpx
    ├── ApiError              the API refused: HTTP status, type, message, field, rule
    └── JobsFailedError       ``run``: a job ended FAILED or CANCELLED, or waiting timed out (exit 1)

httpx exceptions are mapped to these in one place (:mod:`picflow_cli.client`), raised ``from``
the original.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "CliError",
    "ConfigError",
    "JobsFailedError",
    "LocalStackError",
    "TransportError",
    "UsageError",
]


class CliError(Exception):
    """An error the user can act on: ``str(exc)`` is the one line printed."""

    exit_code = 2


class UsageError(CliError):
    pass


class ConfigError(CliError):
    pass


class LocalStackError(CliError):
    pass


class TransportError(CliError):
    pass


class ApiError(CliError):
    """A refusal in the API's shape ``{"error": {type, message, field, rule}}`` (or API Gateway's
    ``{"message"}`` for a missing key or route)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        field: str | None = None,
        rule: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status, self.kind, self.message = status, kind, message
        self.field, self.rule, self.request_id = field, rule, request_id
        super().__init__(self.render())

    def render(self) -> str:
        line = f"{self.message} (HTTP {self.status} {self.kind}"
        if self.field and self.rule:
            line += f"; {self.field} must be {self.rule}"
        elif self.field:
            line += f"; field {self.field}"
        if self.request_id:
            line += f"; request id {self.request_id}"
        return line + ")"


class JobsFailedError(CliError):
    exit_code = 1
