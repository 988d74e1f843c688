"""The decoded and SAM-transformed template, kept on disk by content (issue 19: `make demo`).

Decoding template.yaml (cfn-lint's decoder) and the SAM transform (aws-sam-translator) were ~1.2 s
of every stack start on 2 cores, most of it importing the two packages, for an answer that changes
only when the template, a state machine definition or one of those packages does. Each answer is
kept as JSON under ``.cache/local-stack/`` (gitignored), named by the SHA-256 of everything it was
computed from: the text it read and the versions of the packages that read it. A changed template
misses and is decoded and transformed again, so the stack still deploys the template as written.

The stack's parameter values (the mock's address, a new port each run) would make every start a
miss: the transform sees a placeholder per value instead, and the values are put in afterwards.
SAM passes a parameter's value through without looking into it, so this is the same answer
(``tests/unit/test_local_template_cache.py`` checks it on template.yaml).

``PICFLOW_LOCAL_CACHE=off`` turns the cache off; ``PICFLOW_LOCAL_CACHE=DIR`` puts it elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "decoded", "transformed"]

FORMAT = "1"  # bump when what is stored changes shape
KEEP = 32  # answers kept (the newest); tests deploy a few template variants
PLACEHOLDER = "picflow-local-parameter-{}-value"


def cache_dir(root: Path) -> Path | None:
    """Where answers are kept (None: not kept), from ``PICFLOW_LOCAL_CACHE``."""
    setting = os.environ.get("PICFLOW_LOCAL_CACHE", "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    return Path(setting) if setting else root / ".cache" / "local-stack"


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def _memo(cache: Path | None, kind: str, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON answer, read from ``cache`` when there (written there when not)."""
    if cache is None:
        return compute()
    path = cache / f"{kind}-{key}.json"
    with contextlib.suppress(OSError, ValueError):  # absent or unreadable: computed again
        return json.loads(path.read_text(encoding="utf-8"))
    answer = compute()
    with contextlib.suppress(OSError):  # a read-only tree only loses the speed-up
        cache.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a concurrent start (pytest-xdist) never reads half a file.
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{kind}-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(answer, out)
        os.replace(tmp, path)
        _prune(cache)
    return answer


def _prune(cache: Path) -> None:
    answers = sorted(cache.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in answers[KEEP:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def decoded(path: Path, decode: Callable[[Path], dict[str, Any]], cache: Path | None) -> dict[str, Any]:
    """``decode(path)`` (the template as plain JSON-like data), by the file's content."""
    key = _digest(FORMAT, path.read_text(encoding="utf-8"), version("cfn-lint"))
    answer: dict[str, Any] = _memo(cache, "decoded", key, lambda: decode(path))
    return answer


def transformed(
    sam: dict[str, Any],
    parameters: Mapping[str, str],
    policy_loader: Callable[[], Any],
    cache: Path | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SAM template after the transform (which edits it in place) and the CloudFormation
    template the transform made, for ``parameters``; ``policy_loader()`` is called on a miss."""
    placeholders = {name: PLACEHOLDER.format(name) for name in parameters}

    def compute() -> dict[str, Any]:
        from samtranslator.translator.transform import transform

        cfn = transform(sam, placeholders, policy_loader())
        return {"sam": sam, "cfn": cfn}

    # moto's IAM answers the policy loader: its version is part of the key.
    key = _digest(
        FORMAT,
        json.dumps(sam, sort_keys=True),
        json.dumps(sorted(parameters)),
        version("aws-sam-translator"),
        version("moto"),
    )
    text = json.dumps(_memo(cache, "transformed", key, compute))
    for name, placeholder in placeholders.items():
        text = text.replace(placeholder, json.dumps(str(parameters[name]))[1:-1])
    answer = json.loads(text)
    return answer["sam"], answer["cfn"]
