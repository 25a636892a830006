"""The security headers of every answer: a Content-Security-Policy allowing only this server,
nosniff, no framing, a same-origin referrer, and no-store (pages and answers may hold secrets: a new
token, a login link) for all but the static files. A route's own headers win."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Message, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# ReDoc styles its elements with inserted <style> elements (styled-components) and runs a worker
# from a blob: only its page allows those. Swagger UI works under the strict policy.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").replace(
    "script-src 'self'", "script-src 'self'; worker-src 'self' blob:"
)
DOCS_PATHS = ("/redoc",)
_FIXED = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


def secured(send: Send, docs: bool = False, no_store: bool = True) -> Callable[[Message], Awaitable[None]]:
    """`send`, adding the headers to the start of the answer (`docs`: the policy of the docs pages)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": with_headers(list(message.get("headers", [])), docs, no_store)}
        await send(message)

    return sending


_ADDED = {
    (docs, no_store): (
        (b"content-security-policy", (DOCS_CSP if docs else CSP).encode()),
        *_FIXED,
        *([(b"cache-control", b"no-store")] if no_store else []),
    )
    for docs in (False, True)
    for no_store in (False, True)
}


def with_headers(headers: list[tuple[bytes, bytes]], docs: bool, no_store: bool) -> list[tuple[bytes, bytes]]:
    names = {k.lower() for k, _ in headers}
    return headers + [(name, value) for name, value in _ADDED[docs, no_store] if name not in names]
