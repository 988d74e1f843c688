"""The AWS SDK session every client of the layer is built from.

boto3's default session, with two changes to how botocore loads its models (the JSON files that
describe each service, its endpoint rules and the partitions), both measured in the first client
of every cold start (bench/coldstart.py):

- Before it loads a service's model, botocore's ``Loader.load_service_model`` lists every service
  it has a model of (~445 directories and ~1,400 stat calls on each search path, once for the
  service model and once for the endpoint rules) only to check that the one asked for is among
  them: ~16-19 ms of CPU. :class:`ModelLoader` answers the same question from that service's own
  directory. botocore has this under review (boto/botocore#3687).
- botocore parses each file into ``OrderedDict``s (``object_pairs_hook``, from its Python 2 days),
  2-4x slower than plain dicts, which keep their order since Python 3.7: ~12-20 ms of an S3
  client's first build. :class:`JSONFiles` parses into dicts.

The answers and the data are botocore's own (tests/unit/test_sdk.py). If botocore renames what is
overridden here, its own code runs again: slower, never wrong.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, overload

from botocore.loaders import JSONFileLoader, Loader

from picflow.core.warm import long_lived

if TYPE_CHECKING:
    import boto3

__all__ = ["JSONFiles", "ModelLoader", "client", "session"]


class ServiceNames(Sequence[str]):
    """The services a loader has a ``type_name`` model of, as botocore lists them, answering
    ``name in names`` without listing them all (the full, sorted list is made only if read)."""

    def __init__(self, loader: ModelLoader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, name: object) -> bool:
        # As botocore lists them: an entry of a search path (exactly that name, whatever the file
        # system's case rules) that is a directory holding the model in some API version.
        if not isinstance(name, str):
            return False
        for path in self._loader.search_paths:
            if not os.path.isdir(path) or name not in os.listdir(path):
                continue
            service_dir = os.path.join(path, name)
            if not os.path.isdir(service_dir):
                continue
            for api_version in os.listdir(service_dir):
                if self._loader.file_loader.exists(os.path.join(service_dir, api_version, self._type_name)):
                    return True
        return False

    def _all(self) -> list[str]:
        return self._loader.every_service(self._type_name)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._all()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


class JSONFiles(JSONFileLoader):
    """botocore's JSON file loader, parsing into plain dicts."""

    def _load_file(self, full_path: str, open_method: Callable[..., IO[bytes]]) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            return json.loads(fp.read().decode("utf-8"))


class ModelLoader(Loader):
    """botocore's model loader, whose files are parsed into plain dicts and whose model loads check
    the service's name without listing every service."""

    def __init__(self, extra_search_paths: list[str] | None = None) -> None:
        super().__init__(extra_search_paths=extra_search_paths, file_loader=JSONFiles())
        self._loading = threading.local()

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        # botocore's own body, whose name check (the one use of the listing on this path) gets
        # a ServiceNames; the flag is per thread, so another thread's listing stays a list.
        outer = getattr(self._loading, "active", False)
        self._loading.active = True
        try:
            return super().load_service_model(service_name, type_name, api_version)
        finally:
            self._loading.active = outer

    def list_available_services(self, type_name: str) -> list[str] | ServiceNames:  # type: ignore[override]
        """botocore's sorted list; inside a model load, the name check that lists only if read."""
        if getattr(self._loading, "active", False):
            return ServiceNames(self, type_name)
        return self.every_service(type_name)

    def every_service(self, type_name: str) -> list[str]:
        """botocore's own full listing (cached per loader)."""
        listed: list[str] = super().list_available_services(type_name)
        return listed


def session() -> boto3.Session:
    """boto3's default session; if none exists yet, made over a botocore session that loads its
    models with :class:`ModelLoader` (a session made elsewhere first is used as it is)."""
    import boto3
    import botocore.session

    if boto3.DEFAULT_SESSION is None:
        core = botocore.session.get_session()
        # As botocore's create_loader(): the data_path setting (AWS_DATA_PATH) names extra model
        # directories, searched first.
        extra = core.get_config_variable("data_path")
        paths = [os.path.expanduser(os.path.expandvars(p)) for p in extra.split(os.pathsep)] if extra else []
        core.register_component("data_loader", ModelLoader(extra_search_paths=paths))
        boto3.setup_default_session(botocore_session=core)
    assert boto3.DEFAULT_SESSION is not None
    return boto3.DEFAULT_SESSION


def client(service: str, **kwargs: Any) -> Any:
    """A client of :func:`session`, built as the container's (picflow.core.warm.long_lived)."""
    with long_lived():
        return session().client(service, **kwargs)  # type: ignore[call-overload]
