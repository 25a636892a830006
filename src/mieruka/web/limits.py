"""Limits on what a request may carry, checked before any route reads it.

A path with control characters matches no route (Starlette's `$` would otherwise let `/jobs/5\\n`
through as job 5). A NUL character is refused everywhere text arrives (path, query, JSON,
urlencoded forms): PostgreSQL cannot store it, and no backend should differ in what it accepts.
JSON and urlencoded bodies are read once here, bounded in size (413), in nesting depth and in
object keys (422), then replayed to the route: a hostile body costs a bounded amount of memory and
time and never reaches a recursive parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope

from ..core.params import holds_nul

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUL_ESCAPED = re.compile(rb"%00", re.IGNORECASE)
MAX_ERROR_FIELDS = 50  # an error names at most this many fields
MAX_ERROR_TEXT = 2000  # and its message is at most this long


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass(frozen=True)
class Limits:
    body_size: int
    json_depth: int
    json_keys: int


def check_target(scope: Scope) -> None:
    """The path and the query string: no control characters in the one, no NUL in the other."""
    if _CONTROL.search(scope.get("path", "")):
        raise Refused(404, "not_found", "no such path: a path never holds control characters")
    if _NUL_ESCAPED.search(scope.get("query_string", b"")) or b"\x00" in scope.get("query_string", b""):
        raise Refused(422, "validation_error", "the query string holds a NUL character (%00): text must not")


def kind_of(scope: Scope) -> str | None:
    """'json' or 'form' for the bodies read whole here, 'multipart' for those scanned as they pass;
    None for others."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            text = value.decode("latin-1").lower()
            if text.startswith("application/json") or (text.startswith("application/") and "+json" in text):
                return "json"
            if text.startswith("application/x-www-form-urlencoded"):
                return "form"
            if text.startswith("multipart/form-data"):
                return "multipart"
            return None
    return None


async def checked_body(scope: Scope, receive: Receive, kind: str, limits: Limits, max_size: int) -> Receive:
    """Read the whole body (at most `max_size` bytes, else 413), check it, and return a receive
    that gives it to the route as one message."""
    declared = _content_length(scope)
    if declared is not None and declared > max_size:
        raise Refused(413, "payload_too_large", f"the body is {declared:,} bytes; the limit is {max_size:,}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return replay([message], receive)  # the client went away: the route sees it as before
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_size:
            raise Refused(413, "payload_too_large", f"the body is over the limit of {max_size:,} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if kind == "json" and len(body) > 65536:
        await run_in_threadpool(check_json, body, limits)  # a large body must not hold up the others
    elif kind == "json":
        check_json(body, limits)
    elif _NUL_ESCAPED.search(body) or b"\x00" in body:
        raise Refused(422, "validation_error", "the form holds a NUL character (%00): text must not")
    return replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def scanned_multipart(scope: Scope, receive: Receive) -> Receive:
    """A receive that checks the text fields of a multipart body for NUL as the route reads it (files
    may hold any bytes); a NUL raises Refused from inside the route's form parsing."""
    kind = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
    boundary = parse_options_header(kind)[1].get(b"boundary")
    if not boundary:
        return receive
    part = _Part()
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": part.begin,
            "on_header_field": part.header_field,
            "on_header_value": part.header_value,
            "on_header_end": part.header_end,
            "on_part_data": part.data,
        },
    )

    async def scanning() -> Message:
        message = await receive()
        if message["type"] == "http.request" and message.get("body") and not part.unreadable:
            try:
                parser.write(message["body"])
            except Refused:
                raise
            except Exception:
                part.unreadable = True
        return message

    return scanning


class _Part:
    """Where the multipart parser is: in a file's data, or a text field's."""

    def __init__(self) -> None:
        self.file = self.unreadable = False
        self.name = self.value = b""

    def begin(self) -> None:
        self.file = False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        if self.name.lower() == b"content-disposition" and b"filename=" in self.value:
            self.file = True
        self.name = self.value = b""

    def data(self, data: bytes, start: int, end: int) -> None:
        if not self.file and b"\x00" in data[start:end]:
            raise Refused(422, "validation_error", "a form field holds a NUL character: text must not")


def check_json(body: bytes, limits: Limits) -> None:
    """Depth, key count and NUL of a JSON body; a body that is not JSON is left to the route."""
    if not body.strip():
        return
    keys = 0

    def count(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal keys
        keys += len(pairs)
        if keys > limits.json_keys:
            raise Refused(422, "validation_error", f"the JSON body has more than {limits.json_keys:,} keys")
        return dict(pairs)

    # Outside strings, brackets give the depth and colons the keys: a body over either limit is
    # refused before it is parsed (and never reaches a recursive parser).
    bare = _STRINGS.sub(b'""', body)
    if bare.count(b":") > limits.json_keys:
        raise Refused(422, "validation_error", f"the JSON body has more than {limits.json_keys:,} keys")
    if _too_deep(bare, limits.json_depth):
        raise Refused(422, "validation_error", f"the JSON body is nested deeper than {limits.json_depth} levels")
    try:
        data = json.loads(body, object_pairs_hook=count)
    except (ValueError, RecursionError):
        return  # not JSON (or not UTF-8): the route says so in its own words
    if holds_nul(data):
        raise Refused(422, "validation_error", "the JSON body holds a NUL character (\\u0000): text must not")


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _too_deep(bare: bytes, limit: int) -> bool:
    """Whether the brackets of a body without its strings nest deeper than `limit`."""
    if bare.count(b"[") + bare.count(b"{") <= limit:
        return False
    depth = 0
    for match in _BRACKETS.finditer(bare):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


_BRACKETS = re.compile(rb"[\[{\]}]")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives `messages` (read ahead of the route) first, then the rest."""
    pending = list(messages)

    async def replaying() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying


def capped(message: str) -> str:
    return message if len(message) <= MAX_ERROR_TEXT else message[:MAX_ERROR_TEXT] + " ..."
