"""The moto server with keep-alive connections: moto's own WSGI app, in this process.

moto's ``ThreadedMotoServer`` serves its app with werkzeug's development server, which ends
every response with ``Connection: close`` (http.server cannot drain an unread request body
before the next request line). So every AWS call of every Lambda, of the Step Functions
interpreter and of the tests opened a TCP connection, and the server started a thread for it:
accepting and starting threads was ~45 % of the moto process's busy time in bench/throughput.py
(issue 19's profile, after the definition and JSONPath caches), all under the one GIL the
backends need.

:class:`MotoServer` serves the same app (``DomainDispatcherApplication(create_backend_app)``, the
request environ built by moto's own ``MotoRequestHandler``) and keeps a connection open between
requests, as AWS's endpoints do:

- a request body with a ``Content-Length`` is read in full before the app runs, so the next
  request line is where the socket stands whatever the app read; a chunked body (no length)
  is passed as werkzeug passes it and its connection closes after the answer;
- an answer without a ``Content-Length`` (and not HEAD, 1xx, 204 or 304) is buffered and
  given one, so the client knows where it ends without the connection closing;
- the connection closes when the client asks (``Connection: close``, HTTP/1.0 without
  keep-alive), the app says so, or the app fails (a 500, as werkzeug answers).

A connection's thread lives as long as the connection: the clients' connection pools bound them.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

__all__ = ["KeepAliveHandler", "MotoServer"]

log = logging.getLogger(__name__)

# DynamoDB makes a request's condition check and its write one atomic step per item; moto checks
# and writes in Python with no lock, so two requests on one item could both pass their conditions
# (a lost update: a released semaphore slot came back, the chaos test saw it). One DynamoDB request
# at a time restores the guarantee (the interleaving of other services is unchanged).
_DYNAMODB = threading.Lock()

NO_BODY_STATUSES = frozenset({204, 304})
POLL = 0.05  # seconds between the server loop's looks at a stop request


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, answering on a connection that stays open (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    # An answer goes out as two writes (head, then body). With Nagle's algorithm on, the body waits
    # for the client's ACK of the head, which the client delays (40 ms on Linux): every AWS call
    # with a body took >= 40 ms however little moto did (`make demo`'s 48 Lambda configuration
    # calls, ~2 s). The SDKs' own sockets set TCP_NODELAY already.
    disable_nagle_algorithm = True

    def run_wsgi(self) -> None:
        # http.server's parse_request has answered ``Expect: 100-continue`` already.
        environ = self.make_environ()
        chunked = environ.get("wsgi.input_terminated", False)
        if chunked:
            self.close_connection = True  # what the app leaves unread cannot be skipped
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        self.environ = environ
        try:
            status, headers, body = self._call_app(environ)
        except Exception:
            log.exception("moto server: error on %s %s", self.command, self.path)
            status, headers, body = "500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")], b""
            body = b"Internal Server Error"
            self.close_connection = True
        self._send(status, headers, body)

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            with _DYNAMODB:
                return self._run_app(environ)
        return self._run_app(environ)

    def _run_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        answer: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info and answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer[:] = [status, headers]
            return chunks.append  # WSGI's legacy write()

        result = self.server.app(environ, start_response)
        try:
            for data in result:
                chunks.append(data)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not answer:
            raise RuntimeError("the app did not start a response")
        return answer[0], answer[1], b"".join(chunks)

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response_only(code, reason)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower == "connection":
                if value.lower() == "close":
                    self.close_connection = True
                continue
            if lower == "transfer-encoding":
                continue  # the body is whole here: it gets a length instead
            if lower == "content-length":
                has_length = True
            self.send_header(name, value)
        bodyless = self.command == "HEAD" or code < 200 or code in NO_BODY_STATUSES
        if not has_length and not bodyless:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and not bodyless:
            self.wfile.write(body)


class MotoServer:
    """moto's app on a keep-alive threaded server, in a thread of this process
    (``ThreadedMotoServer``'s interface: start, stop, ``port``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_port)

    def start(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self.host, self._port, app, threaded=True, request_handler=KeepAliveHandler
        )
        # The loop sees stop()'s request at its next poll: socketserver's 0.5 s was up to half a
        # second of every stack's stop (`make demo`, each e2e test's stack).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL}, name="moto-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
