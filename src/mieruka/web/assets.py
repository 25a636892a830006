"""The static files: compressed, and cached for a year under a URL that changes with their content.

Pages link them as `{{ static_url('mieruka.js') }}`, which adds `?v=<hash of the file>`; an answer
to the current hash may be kept forever, since other content gets another URL. A request without
it (an old bookmark, a script naming a file) still works, cached briefly.

Only these files are compressed, never pages or API answers: those hold secrets (the CSRF token)
beside text a visitor chose, which compression would let an eavesdropper guess (BREACH).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from mimetypes import guess_type
from pathlib import Path
from typing import Any

import anyio
from jinja2 import pass_context
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).with_name("static")
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"
COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".txt", ".md", ".map")
MIN_COMPRESSED = 1024  # smaller files gain nothing worth the work


@dataclass
class _File:
    mtime_ns: int
    size: int
    version: str
    gzipped: bytes | None = field(default=None, repr=False)


_files: dict[Path, _File] = {}


def _known(path: Path) -> _File | None:
    """The file's version, computed again only when the file changed."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    known = _files.get(path)
    if known is None or (known.mtime_ns, known.size) != (info.st_mtime_ns, info.st_size):
        if not path.is_file():
            return None
        known = _File(info.st_mtime_ns, info.st_size, hashlib.sha256(path.read_bytes()).hexdigest()[:12])
        _files[path] = known
    return known


def _compressed(path: Path) -> _File | None:
    """The file with its gzip body, when compressing it is worth it (blocking: run in a thread)."""
    known = _known(path)
    if known is not None and known.gzipped is None and path.suffix in COMPRESSIBLE and known.size >= MIN_COMPRESSED:
        known.gzipped = gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
    return known


def version(name: str, directory: Path = STATIC) -> str:
    """The hash of a static file's content ("" for a file that does not exist)."""
    found = _known(directory / name)
    return found.version if found is not None else ""


@pass_context
def static_url(context: Any, name: str) -> str:
    """`{{ static_url('mieruka.js') }}`: the file's URL under the server's path prefix, with its version."""
    root = context.get("root")
    if root is None:
        request = context.get("request")
        root = request.scope.get("root_path", "") if request is not None else ""
    tag = version(name)
    return f"{root}/static/{name}" + (f"?v={tag}" if tag else "")


class Assets(StaticFiles):
    """StaticFiles with a Cache-Control by version, and gzip for whoever accepts it."""

    def __init__(self, directory: Path = STATIC) -> None:
        super().__init__(directory=directory)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] in ("GET", "HEAD"):
            try:
                full_path, _ = await anyio.to_thread.run_sync(self.lookup_path, path)
            except (OSError, ValueError):
                full_path = ""
            if full_path:
                await anyio.to_thread.run_sync(_compressed, Path(full_path))
        return await super().get_response(path, scope)

    def file_response(
        self, full_path: os.PathLike[str] | str, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        path = Path(full_path)
        known = _files.get(path)
        asked = Headers(scope=scope)
        current = known is not None and f"v={known.version}" in scope.get("query_string", b"").decode().split("&")
        response: Response
        if (
            known is not None
            and known.gzipped is not None
            and known.mtime_ns == stat_result.st_mtime_ns
            and status_code == 200
            and "gzip" in asked.get("accept-encoding", "").lower()
        ):
            etag = f'"{known.version}-gzip"'
            if self.is_not_modified(Headers({"etag": etag}), asked):
                response = Response(status_code=304, headers={"etag": etag})
            else:
                response = Response(
                    known.gzipped,
                    media_type=guess_type(path.name)[0] or "text/plain",
                    headers={"etag": etag, "content-encoding": "gzip"},
                )
        else:
            response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = IMMUTABLE if current else SHORT
        response.headers["vary"] = "Accept-Encoding"
        return response
