"""One error path for every failure: the API answers `{"error": {"code", "message", ...}}`; a
browser asking for a page gets the same error as a page with the site's header and a way back.

Which of the two is decided in one place, `wants_page()`: by route family (`/api/...`, the OpenAPI
document, metrics and health answer JSON whatever they are asked), then by `Accept`. htmx requests
keep getting JSON: htmx swaps no error answer, and mieruka.js sends a 401 to the login page.

A database that does not answer is no bug: whichever layer meets it, the answer is 503
`database_unavailable` with Retry-After, and a browser gets a page that reloads itself
(templates/unavailable.html: no script, nothing from the database) until the database is back.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..errors import DatabaseUnavailable, JobNotFound, MierukaError, TaskNotFound
from ..i18n import N_, _
from ..store.outage import unavailable
from .front import Api
from .ids import parse_id
from .limits import MAX_ERROR_FIELDS, Refused, capped
from .state import runtime_or_none
from .viewing import DISPLAY_COOKIE

log = logging.getLogger("mieruka.web")

_JOB_PATH = re.compile(r"^(?:/api)?/jobs/([^/]*)")
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
API_FAMILY = ("/api/", "/openapi.json", "/metrics", "/healthz", "/static/")
TEMPLATES_KEY = "mieruka_error_pages"
TITLES = {
    400: N_("Bad request"),
    401: N_("Please log in"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    405: N_("Not possible here"),
    408: N_("Too slow"),
    409: N_("Not possible now"),
    413: N_("Too large"),
    422: N_("Something is not right"),
    429: N_("Too many attempts"),
    500: N_("Something went wrong"),
    503: N_("Unavailable for now"),
    504: N_("Still waiting"),
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": _bounded({"code": code, "message": message, **extra})}, status_code=status)


def wants_page(request: Request) -> bool:
    """Whether this request's error is shown as a page (a browser navigating) rather than as JSON."""
    if request.headers.get("hx-request"):
        return False
    path = _route_path(request)
    if path == "/api" or path.startswith(API_FAMILY):
        return False
    return "text/html" in request.headers.get("accept", "")


def _root(request: Request) -> str:
    # A mount (the static files) adds its own path to root_path; the site's prefix stays here.
    return str(request.scope.get("app_root_path", request.scope.get("root_path", "")))


def _route_path(request: Request) -> str:
    path, root = str(request.scope.get("path", "")), _root(request)
    return path[len(root) :] if root and path.startswith(root) else path


def respond(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    """The error answer: a page for a browser (wants_page), else the JSON shape."""
    error = _bounded({"code": code, "message": message, **extra})
    templates: Jinja2Templates | None = (
        getattr(request.app.state, TEMPLATES_KEY, None) if "app" in request.scope else None
    )
    if templates is not None and wants_page(request):
        # The page carries the reader's CSRF token; an unexpected error's answer does not pass the
        # security middleware, which says no-store for every other one.
        page_headers = {"Cache-Control": "no-store", **(headers or {})}
        # Without its database the page asks it nothing (no user, no presence) and reloads itself.
        page = "unavailable.html" if code == DatabaseUnavailable.code else "error.html"
        try:
            return templates.TemplateResponse(
                request, page, _page_context(request, status, error, headers), status_code=status, headers=page_headers
            )
        except Exception:
            log.exception("the error page for %s could not be shown", request.url.path)
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _page_context(
    request: Request, status: int, error: dict[str, Any], headers: Mapping[str, str] | None
) -> dict[str, Any]:
    root, path = _root(request), _route_path(request)
    referer = request.headers.get("referer", "")
    here = f"{request.url.scheme}://{request.url.netloc}{root}/"
    back = referer if referer.startswith(here) and referer != str(request.url) else ""
    return {
        "root": root,
        "status": status,
        "title": _(TITLES.get(status, N_("Error"))),
        "error": error,
        "back": back,
        "section": path.split("/")[1] if path.count("/") > 1 else "",
        "login": status in (401, 403),
        "retention_days": _retention_days(request),
        "retry_after": (headers or {}).get("Retry-After", ""),
    }


def database_down(request: Request, exc: BaseException) -> DatabaseUnavailable | None:
    """`exc` as DatabaseUnavailable naming this app's database, or None when it is no outage."""
    runtime = runtime_or_none(request)
    return unavailable(exc, runtime.settings.effective_database_url if runtime is not None else "")


def unavailable_response(request: Request, problem: DatabaseUnavailable) -> Response:
    """The 503 of a database that does not answer, logged in one line (no traceback: no bug)."""
    log.warning("%s %s: %s", request.method, request.url.path, problem.message)
    return respond(request, problem.status_code, headers={"Retry-After": str(problem.retry_after)}, **problem.to_dict())


def outage(request: Request, exc: Exception) -> Refused:
    """A database that did not answer as the 503 to send (logged in one line); any other error is
    raised again."""
    problem = database_down(request, exc)
    if problem is None:
        raise exc
    log.warning("%s %s: %s", request.method, request.url.path, problem.message)
    return Refused(problem.status_code, problem.code, problem.message, {"Retry-After": str(problem.retry_after)})


def refusal(request: Request, refused: Refused) -> Response:
    """The answer to a request refused before its route: a browser opening a page it must log in
    for goes to the login page, and comes back after; anyone else gets the error."""
    if (
        refused.status == 401
        and request.method == "GET"
        and not request.headers.get("hx-request")
        and "text/html" in request.headers.get("accept", "")
    ):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        root = request.scope.get("root_path", "")
        if request.cookies.get(DISPLAY_COOKIE) and request.query_params.get("kiosk"):
            # A wall screen whose link stopped working: its landing page says so (nobody logs in there).
            return RedirectResponse(f"{root}/display", status_code=303)
        return RedirectResponse(f"{root}/login?next={quote(target, safe='')}", status_code=303)
    response = respond(request, refused.status, refused.code, refused.message, headers=refused.headers)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mieruka"'
    return response


def _retention_days(request: Request) -> int | None:
    runtime = runtime_or_none(request)
    seconds = runtime.settings.retention_max_age if runtime is not None else None
    return round(seconds / 86400) if seconds is not None and seconds > 0 else None


def _bounded(error: dict[str, Any]) -> dict[str, Any]:
    """An error answer stays small whatever the request was: a message of at most MAX_ERROR_TEXT
    characters, at most MAX_ERROR_FIELDS fields (and how many there were)."""
    error["message"] = capped(str(error.get("message", "")))
    fields = error.get("fields")
    if isinstance(fields, list) and len(fields) > MAX_ERROR_FIELDS:
        error["fields"] = fields[:MAX_ERROR_FIELDS]
        error["more_fields"] = len(fields) - MAX_ERROR_FIELDS
    if isinstance(error.get("fields"), list):
        error["fields"] = [
            {k: capped(str(v)) for k, v in f.items()} if isinstance(f, dict) else f for f in error["fields"]
        ]
    return error


def install_error_handlers(api: FastAPI, pages: Jinja2Templates | None = None, postgres: bool = True) -> None:
    """Route every error through respond(); `pages` renders templates/error.html for browsers.
    `postgres`: the store may raise psycopg's errors (a store on SQLite never imports psycopg)."""
    setattr(api.state, TEMPLATES_KEY, pages)
    api.exception_handler(MierukaError)(on_mieruka_error)
    # The errors of the database drivers, wrapped by SQLAlchemy or not (the store's PostgreSQL hot
    # path speaks psycopg directly): handled here, inside the middleware, so no traceback follows.
    for kind in _database_errors(postgres):
        api.exception_handler(kind)(on_unexpected)
    if "sqlalchemy.exc" not in sys.modules and isinstance(api, Api):
        api.answers_when_loaded("sqlalchemy.exc", "SQLAlchemyError")
    api.exception_handler(RequestValidationError)(on_validation_error)
    api.exception_handler(HTTPException)(on_http_error)
    api.exception_handler(Refused)(on_refused)
    api.exception_handler(ClientDisconnect)(on_disconnect)
    api.exception_handler(Exception)(on_unexpected)


async def on_mieruka_error(request: Request, exc: MierukaError) -> Response:
    if isinstance(exc, DatabaseUnavailable):
        return unavailable_response(request, exc)
    if exc.status_code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.message)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    answer = exc.to_dict()
    if wants_page(request):
        answer["message"] = _said(exc)
    return respond(request, exc.status_code, headers=headers, **answer)


def _said(exc: MierukaError) -> str:
    """The message of an error that the core raises in English (it knows no language), as the
    error page says it: in the reader's language where it is one of the UI's messages."""
    if isinstance(exc, JobNotFound):
        return _("no job with id %(id)s", id=exc.job_id)
    if isinstance(exc, TaskNotFound):
        return _("no task named %(task)s", task=repr(exc.name))
    return exc.message


async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    fields = []
    errors = exc.errors()
    for err in errors[:MAX_ERROR_FIELDS]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        fields.append({"field": ".".join(loc) or "(request)", "message": str(err.get("msg", "invalid"))})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    more: dict[str, Any] = {"more_fields": len(errors) - len(fields)} if len(errors) > len(fields) else {}
    return respond(request, 422, "validation_error", f"invalid request: {summary}", fields=fields, **more)


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such path: {request.url.path}"
        job = _JOB_PATH.match(request.url.path)
        if job and parse_id(job.group(1)) is None:
            code, message = (
                "job_not_found",
                (f"no job {job.group(1)!r}: a job id is written as a plain positive number, e.g. /api/jobs/42"),
            )
    return respond(request, exc.status_code, code, message, headers=exc.headers)


async def on_refused(request: Request, exc: Refused) -> Response:
    return respond(request, exc.status, exc.code, exc.message)


async def on_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
    # The client went away mid-body: nobody reads this answer, and nothing went wrong here.
    log.info("%s %s: the client disconnected before sending the whole body", request.method, request.url.path)
    return error_response(400, "bad_request", "the request body did not arrive in full")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A database that does not answer is a 503; anything else a bug, a 500 with its traceback logged."""
    problem = database_down(request, exc)
    if problem is not None:
        return unavailable_response(request, problem)
    return _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return respond(request, 500, "internal_error", "internal server error; the server log has the details")


def _database_errors(postgres: bool) -> list[type[Exception]]:
    kinds: list[type[Exception]] = [sqlite3.Error]
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None:  # else answered by on_unexpected, and ended there (Api.answers_when_loaded)
        kinds.append(sa_exc.SQLAlchemyError)
    if not postgres and "psycopg" not in sys.modules:
        return kinds  # 73 modules and 6 MB not loaded for errors that cannot come
    try:
        import psycopg
    except ImportError:  # without the postgres extra there is no psycopg error to meet
        return kinds
    return [*kinds, psycopg.Error]
