"""One error shape for every API failure: {"error": {"code", "message", ...}}."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..errors import MierukaError, TooManyAttempts
from .ids import parse_id
from .limits import MAX_ERROR_FIELDS, Refused, capped

log = logging.getLogger("mieruka.web")

_JOB_PATH = re.compile(r"^(?:/api)?/jobs/([^/]*)")
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": _bounded({"code": code, "message": message, **extra})}, status_code=status)


def _bounded(error: dict[str, Any]) -> dict[str, Any]:
    """An error answer stays small whatever the request was: a message of at most MAX_ERROR_TEXT
    characters, at most MAX_ERROR_FIELDS fields (and how many there were)."""
    error["message"] = capped(str(error.get("message", "")))
    fields = error.get("fields")
    if isinstance(fields, list) and len(fields) > MAX_ERROR_FIELDS:
        error["fields"] = fields[:MAX_ERROR_FIELDS]
        error["more_fields"] = len(fields) - MAX_ERROR_FIELDS
    if isinstance(error.get("fields"), list):
        error["fields"] = [{k: capped(str(v)) for k, v in f.items()} if isinstance(f, dict) else f
                           for f in error["fields"]]
    return error


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(MierukaError)
    async def on_mieruka_error(request: Request, exc: MierukaError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
        return JSONResponse({"error": _bounded(exc.to_dict())}, status_code=exc.status_code, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        errors = exc.errors()
        for err in errors[:MAX_ERROR_FIELDS]:
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
            fields.append({"field": ".".join(loc) or "(request)", "message": str(err.get("msg", "invalid"))})
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        more = {"more_fields": len(errors) - len(fields)} if len(errors) > len(fields) else {}
        return error_response(422, "validation_error", f"invalid request: {summary}", fields=fields, **more)

    @api.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
            job = _JOB_PATH.match(request.url.path)
            if job and parse_id(job.group(1)) is None:
                code, message = "job_not_found", (f"no job {job.group(1)!r}: a job id is written as a plain "
                                                  f"positive number, e.g. /api/jobs/42")
        return error_response(exc.status_code, code, message)

    @api.exception_handler(Refused)
    async def on_refused(request: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @api.exception_handler(ClientDisconnect)
    async def on_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client went away mid-body: nobody reads this answer, and nothing went wrong here.
        log.info("%s %s: the client disconnected before sending the whole body", request.method, request.url.path)
        return error_response(400, "bad_request", "the request body did not arrive in full")

    @api.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; the server log has the details")
