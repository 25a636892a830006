"""Cross-site request forgery: a cookie-authenticated state-changing request must carry the session's
token, in the `X-CSRF-Token` header (mieruka.js adds it to htmx requests) or as the form field
`csrf_token` (`{{ csrf_input() }}` in every form). Bearer requests carry no ambient credentials and
are not checked; in the open single-user mode, a cross-site `Origin` is refused instead.

The form field is read from the body as it arrives, with python-multipart's streaming parsers, and no
further than needed: the first part of a multipart body (forms put the field first, so an upload is
never held here to find it), at most MAX_FORM_SCAN bytes of an urlencoded one. What was read is
replayed to the route.
"""

from __future__ import annotations

import hmac
import html
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlparse

from jinja2 import pass_context
from markupsafe import Markup
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, QuerystringParser, parse_options_header
from starlette.requests import Request
from starlette.types import Message, Receive

from ..core.access import Principal
from .identity import LOCAL, STATE_KEY, Denied
from .limits import replay
from .policy import SAFE_METHODS, Rule

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks, QuerystringCallbacks

LOGIN_CSRF_COOKIE = "mieruka_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MAX_FORM_SCAN = 1024 * 1024  # an urlencoded form bigger than this is not a form of ours
MULTIPART_HEAD = 64 * 1024  # the CSRF field comes first: this much is plenty to find it
LOGIN_FORMS = ("/login", "/login/link/{secret}", "/language")  # the forms posted without a session


def csrf_token(request: Request) -> str:
    """The token this request's forms carry: the session's, else the login form's cookie."""
    who: Principal | None = getattr(request.state, STATE_KEY, None)
    if who is not None and who.session_csrf:
        return who.session_csrf
    return request.cookies.get(LOGIN_CSRF_COOKIE, "")


@pass_context
def csrf_input(context: Any) -> Markup:
    """`{{ csrf_input() }}`: the hidden CSRF field; put it first in every form that posts."""
    request = context.get("request")
    value = csrf_token(request) if request is not None else ""
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(value)}">')


@pass_context
def page_csrf_token(context: Any) -> str:
    """`{{ csrf_token() }}`: the token itself, for the page's scripts."""
    return csrf_token(context["request"])


async def check_csrf(request: Request, receive: Receive, rule: Rule, who: Principal | None, template: str) -> Receive:
    """Raise Denied unless a state-changing request proves it comes from this site's pages; returns a
    receive that replays whatever body had to be read to find the token."""
    if request.method in SAFE_METHODS:
        return receive
    if rule.csrf and (who is None or who.via == "session"):
        return await _check_token(request, receive, _expected(request, who, template))
    if who is LOCAL or (who is not None and who.via == "proxy"):
        _same_origin(request)  # a proxy's login (Windows authentication) rides along like a cookie
    return receive


def _expected(request: Request, who: Principal | None, template: str) -> str:
    if who is not None:
        return who.session_csrf or ""
    return request.cookies.get(LOGIN_CSRF_COOKIE, "") if template in LOGIN_FORMS else ""


async def _check_token(request: Request, receive: Receive, expected: str) -> Receive:
    given = request.headers.get(CSRF_HEADER)
    read: list[Message] = []
    if given is None:
        given, read = await read_field(request.headers.get("content-type", ""), receive)
    if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Denied(403, "csrf_failed", "missing or wrong CSRF token: reload the page and try again")
    return replay(read, receive) if read else receive


def _same_origin(request: Request) -> None:
    """The open single-user mode has no session to tie a token to; a browser still names the site a
    request comes from, so another site's page cannot make the local server change anything."""
    origin = request.headers.get("origin")
    if origin is not None and urlparse(origin).netloc != request.headers.get("host", ""):
        raise Denied(403, "csrf_failed", f"cross-site request from {origin[:100]} refused")


async def read_field(content_type: str, receive: Receive) -> tuple[str | None, list[Message]]:
    """The csrf_token field of a form body (None when it is not where it is looked for), and the
    messages read to find it. A body the parser cannot read has no field."""
    try:
        found, parser, limit = _reader(content_type)
    except (FormParserError, LookupError):
        return None, []  # not a form, no boundary, or one python-multipart refuses
    read: list[Message] = []
    fed = 0
    while not found.done and fed < limit:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break  # the client went away
        body, more = message.get("body", b""), message.get("more_body", False)
        chunk = body[: limit - fed]
        fed += len(chunk)
        try:
            parser.write(chunk)
            if not more and len(chunk) == len(body):
                parser.finalize()
        except FormParserError:
            break
        if not more:
            break
    return found.value, read


def _reader(content_type: str) -> tuple[_Found, MultipartParser | QuerystringParser, int]:
    """What finds the field in a body of this type, the parser feeding it, and how much to read."""
    kind, options = parse_options_header(content_type)
    if kind == b"application/x-www-form-urlencoded":
        field = _UrlencodedField()
        return field, QuerystringParser(field.callbacks()), MAX_FORM_SCAN
    if kind == b"multipart/form-data" and options.get(b"boundary"):
        part = _FirstPart()
        return part, MultipartParser(options[b"boundary"], part.callbacks()), MULTIPART_HEAD
    raise LookupError(content_type)


class _Found:
    """The field's value once the parser has passed it (`done`), None when the body has none."""

    def __init__(self) -> None:
        self.done = False
        self.value: str | None = None

    def finish(self, value: str | None = None) -> None:
        if not self.done:
            self.done, self.value = True, value


class _UrlencodedField(_Found):
    """The first csrf_token field of `a=1&csrf_token=...&b=2`."""

    def __init__(self) -> None:
        super().__init__()
        self.name = bytearray()
        self.data = bytearray()

    def callbacks(self) -> QuerystringCallbacks:
        return {
            "on_field_start": self.start,
            "on_field_name": lambda data, start, end: self.name.extend(data[start:end]),
            "on_field_data": lambda data, start, end: self.data.extend(data[start:end]),
            "on_field_end": self.end,
            "on_end": self.finish,
        }

    def start(self) -> None:
        self.name.clear()
        self.data.clear()

    def end(self) -> None:
        if unquote_plus(self.name.decode("latin-1")) == CSRF_FIELD:
            self.finish(unquote_plus(self.data.decode("latin-1")))


class _FirstPart(_Found):
    """The first part of a multipart body, when it is the csrf_token field; known to be another
    field (or a file) as soon as its headers end."""

    def __init__(self) -> None:
        super().__init__()
        self.header = bytearray()
        self.header_value = bytearray()
        self.disposition = b""
        self.data = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_header_field": lambda data, start, end: self.header.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": lambda: self.finish(self.data.decode("latin-1")),
            "on_end": self.finish,
        }

    def header_end(self) -> None:
        if self.header.lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        options = parse_options_header(self.disposition)[1]
        if options.get(b"name") != CSRF_FIELD.encode() or b"filename" in options:
            self.finish()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.done:
            self.data.extend(data[start:end])
