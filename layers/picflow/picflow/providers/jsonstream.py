"""A JSON answer read as a stream, with chosen string values sent straight to files.

Tencent's ReplaceBackground answers with its image inline as base64 (tens of MB):
:class:`StreamedJson` passes the JSON through in chunks, sends the value of each chosen key
straight to a sink, and keeps only the rest (a few hundred bytes) to parse normally. The sink looks
at the value's first bytes: ``http:``/``https:`` means a URL (kept as text), anything else is base64
and is decoded 4 characters at a time into a file in ``directory``. The base64 text and the decoded
bytes are never both in memory; at most one chunk of each is.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MalformedError", "StreamedJson", "Value"]

# Everything but the streamed values: an answer is a few hundred bytes, so 1 MiB is plenty.
_MAX_SKELETON = 1024 * 1024
_MAX_URL = 64 * 1024
# guess: a 4000x4000 PNG stays well below this; the cap protects Lambda's /tmp.
_MAX_RESULT_BYTES = 256 * 1024 * 1024


class MalformedError(ValueError):
    """The answer is not the JSON it claims to be (our message, never the provider's bytes)."""


@dataclass(frozen=True)
class Value:
    url: str | None = None
    path: str | None = None


_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
)


def _suffix(head: bytes) -> str:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _MAGIC if head.startswith(magic)), ".bin")


class _Base64File:
    """Decodes base64 fed in arbitrary pieces into a file, 4 characters at a time."""

    _WHITESPACE = b" \t\r\n"

    def __init__(self, directory: str | None) -> None:
        fd, self._part = tempfile.mkstemp(prefix="picflow-tencent-", suffix=".part", dir=directory)
        self._file = os.fdopen(fd, "wb")
        self._carry = b""
        self._padded = False
        self._head = b""
        self.size = 0

    def feed(self, data: bytes) -> None:
        data = self._carry + data.translate(None, self._WHITESPACE)
        whole = len(data) - len(data) % 4
        if whole:
            if self._padded:
                raise MalformedError("base64 data after padding")
            block = data[:whole]
            try:
                decoded = binascii.a2b_base64(block, strict_mode=True)
            except binascii.Error as exc:
                raise MalformedError(f"invalid base64: {exc}") from None
            self._padded = block.endswith(b"=")
            self.size += len(decoded)
            if self.size > _MAX_RESULT_BYTES:
                raise MalformedError(f"result larger than {_MAX_RESULT_BYTES} bytes")
            if len(self._head) < 12:
                self._head = (self._head + decoded)[:12]
            self._file.write(decoded)
        self._carry = data[whole:]

    def finish(self) -> str:
        if self._carry:
            raise MalformedError("base64 length is not a multiple of 4")
        if self.size == 0:
            raise MalformedError("empty base64 result")
        self._file.close()
        path = self._part.removesuffix(".part") + _suffix(self._head)
        os.replace(self._part, path)
        self._part = path
        return path

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._part)


class _ValueSink:
    """One streamed string value: a URL kept as text, or base64 decoded into a file."""

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._head = b""
        self._text: bytearray | None = None
        self._decoder: _Base64File | None = None

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            self._decoder.feed(data)
        elif self._text is not None:
            self._text += data
            if len(self._text) > _MAX_URL:
                raise MalformedError(f"result URL longer than {_MAX_URL} bytes")
        else:
            self._head += data
            if len(self._head) >= 8:
                self._decide()

    def _decide(self) -> None:
        head, self._head = self._head, b""
        # ':' is not a base64 character, so this cannot mistake base64 for a URL.
        if head.startswith((b"http:", b"https:")):
            self._text = bytearray()
        else:
            self._decoder = _Base64File(self._directory)
        self.feed(head)

    def finish(self) -> Value:
        if self._decoder is None and self._text is None:
            if not self._head:
                return Value()  # "" means no result; the caller decides what that costs
            self._decide()
        if self._text is not None:
            try:
                return Value(url=self._text.decode("utf-8"))
            except UnicodeDecodeError:
                raise MalformedError("result URL is not UTF-8") from None
        assert self._decoder is not None
        return Value(path=self._decoder.finish())

    def discard(self) -> None:
        if self._decoder is not None:
            self._decoder.discard()


_SPECIAL = re.compile(rb'["\\]')
_SIMPLE_ESCAPES: Final = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}


def _unescape(escape: bytes) -> bytes:
    """One JSON escape (``\\/`` or ``\\uXXXX``) as UTF-8 bytes."""
    if escape[1] == ord("u"):
        try:
            return chr(int(escape[2:6], 16)).encode("utf-8", "surrogatepass")
        except ValueError:
            raise MalformedError("invalid \\u escape") from None
    try:
        return _SIMPLE_ESCAPES[escape[1]]
    except KeyError:
        raise MalformedError("invalid escape") from None


class StreamedJson:
    """A JSON document read in chunks; the string values of ``keys`` go to value sinks.

    The rest (the "skeleton", with ``""`` in place of each streamed value) is kept and
    parsed with :func:`json.loads` at the end, so JSON syntax is still checked by the
    standard parser. The scanner only tracks strings, which is all it takes to find a
    ``"Key": "value"`` pair: a string that follows a ``:`` whose preceding token was a
    string is a value, and that string was its key. Keys are matched at any depth; the
    Tencent answer has no other object using these names.
    """

    _OUT, _STRING, _VALUE = range(3)

    def __init__(self, keys: Mapping[str, Any], directory: str | None) -> None:
        self._keys = keys
        self._directory = directory
        self._skeleton = bytearray()
        self._pending = b""  # an escape split across chunks
        self._state = self._OUT
        self._string_start = 0
        self._last_string = b""  # raw bytes of the last string in the skeleton
        self._after_string = -1  # skeleton length just after that string's closing quote
        self._sink: _ValueSink | None = None
        self._sink_key = ""
        self._sinks: list[_ValueSink] = []
        self.values: dict[str, Value] = {}

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk if self._pending else chunk
        self._pending = b""
        pos, end = 0, len(data)
        while pos < end:
            if self._state == self._OUT:
                pos = self._outside(data, pos)
                continue
            match = _SPECIAL.search(data, pos)
            stop = end if match is None else match.start()
            self._string_part(data[pos:stop])
            if match is None:
                break
            if data[stop] == ord('"'):
                self._close_string()
                pos = stop + 1
                continue
            size = 6 if stop + 1 < end and data[stop + 1] == ord("u") else 2
            if stop + size > end:
                self._pending = data[stop:]
                break
            escape = data[stop : stop + size]
            if self._sink is None:
                self._skeleton += escape
            else:
                self._sink.feed(_unescape(escape))
            pos = stop + size
        if len(self._skeleton) > _MAX_SKELETON:
            raise MalformedError(f"answer (without the image) larger than {_MAX_SKELETON} bytes")

    def _outside(self, data: bytes, pos: int) -> int:
        quote = data.find(b'"', pos)
        if quote < 0:
            self._skeleton += data[pos:]
            return len(data)
        self._skeleton += data[pos:quote]
        key = self._value_key()
        self._skeleton += b'"'
        if key is None:
            self._state = self._STRING
            self._string_start = len(self._skeleton)
        else:
            self._state = self._VALUE
            self._sink = _ValueSink(self._directory)
            self._sinks.append(self._sink)
            self._sink_key = key
        return quote + 1

    def _value_key(self) -> str | None:
        """The key if the string about to open is the value of one of ``keys``."""
        if self._after_string < 0 or self._skeleton[self._after_string :].strip() != b":":
            return None
        try:
            key = json.loads(b'"' + self._last_string + b'"')
        except ValueError:
            return None
        return key if isinstance(key, str) and key in self._keys else None

    def _string_part(self, part: bytes) -> None:
        if self._sink is None:
            self._skeleton += part
        elif part:
            self._sink.feed(part)

    def _close_string(self) -> None:
        if self._sink is None:
            self._last_string = bytes(self._skeleton[self._string_start :])
        else:
            self.values[self._sink_key] = self._sink.finish()
            self._sink = None
        self._skeleton += b'"'
        self._after_string = len(self._skeleton)
        self._state = self._OUT

    def finish(self) -> Any:
        if self._state != self._OUT or self._pending:
            raise MalformedError("answer ends inside a string")
        try:
            return json.loads(self._skeleton)
        except ValueError as exc:
            raise MalformedError(f"malformed JSON: {exc}") from None

    def discard(self) -> None:
        for sink in self._sinks:
            sink.discard()
