"""One error shape for every API failure: {"error": {"code", "message", ...}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import MierukaError

log = logging.getLogger("mieruka.web")

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(MierukaError)
    async def on_mieruka_error(request: Request, exc: MierukaError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @api.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
            fields.append({"field": ".".join(loc) or "(request)", "message": str(err.get("msg", "invalid"))})
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return error_response(422, "validation_error", f"invalid request: {summary}", fields=fields)

    @api.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        return error_response(exc.status_code, code, message)

    @api.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; the server log has the details")
