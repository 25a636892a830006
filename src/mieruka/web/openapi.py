"""The OpenAPI document, with one operation per task: its parameters as the request body; and the
pages that show it (`/docs`, `/redoc`)."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from .._version import __version__
from ..runtime import Runtime
from .identity import hidden
from .routers import Router
from .state import pages_of

# Our own pages rather than FastAPI's: those start the viewers with an inline script, which the
# Content-Security-Policy forbids.
router = Router(include_in_schema=False)


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    return _viewer(request, "swagger")


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return _viewer(request, "redoc")


def _viewer(request: Request, kind: str) -> HTMLResponse:
    return pages_of(request).TemplateResponse(
        request, "docs.html", {"root": request.scope.get("root_path", ""), "kind": kind}
    )


def install_openapi(api: FastAPI, runtime: Runtime) -> None:
    """`GET /openapi.json`: the document of what the caller may see (a task whose allow list leaves
    the caller out is not in it, nor its schemas)."""
    owned: dict[str, set[str]] = {}  # task -> the component schemas registered for it

    def build() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        doc = get_openapi(
            title=runtime.title,
            version=__version__,
            description=runtime.description or "Jobs, logs, artifacts and live events of this mieruka app.",
            routes=api.routes,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        generic = doc["paths"].get("/api/tasks/{task}/jobs", {}).get("post", {})
        generic_run = doc["paths"].get("/api/tasks/{task}/run", {}).get("post", {})
        for task in runtime.tasks:
            headline = task.description.splitlines()[0] if task.description else task.title
            ref = _register(
                schemas,
                task.signature.model.model_json_schema(ref_template="#/components/schemas/{model}"),
                task.signature.model.__name__,
                owned.setdefault(task.name, set()),
            )
            body = _request_body(schemas[ref], ref, task.signature.file_fields, task.signature.multi_file_fields)
            for suffix, template, verb in (("jobs", generic, "Submit"), ("run", generic_run, "Run")):
                op = copy.deepcopy(template)
                op["summary"] = f"{verb}: {headline}"
                op["description"] = task.description or op.get("description", "")
                op["operationId"] = f"{suffix}_{task.name}"
                op["tags"] = [f"task: {task.name}"]
                op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") != "task"]
                op["requestBody"] = body
                doc["paths"][f"/api/tasks/{task.name}/{suffix}"] = {"post": op}
        _declare_auth(doc)
        # Each task's own operations first: they are what a visitor of /docs came for.
        doc["tags"] = [{"name": f"task: {t.name}", "description": t.description} for t in runtime.tasks] + [
            {"name": name} for name in ("tasks", "jobs", "events", "system")
        ]
        api.openapi_schema = doc
        return doc

    api.openapi = build  # type: ignore[method-assign]

    async def openapi_json(request: Request) -> JSONResponse:
        doc = build()
        unseen = hidden(request)
        if unseen:
            doc = _without(doc, unseen, owned)
        root_path = request.scope.get("root_path", "").rstrip("/")
        if root_path:
            doc = {**doc, "servers": [{"url": root_path}]}
        return JSONResponse(doc)

    api.add_route("/openapi.json", openapi_json, include_in_schema=False)


def _without(doc: dict[str, Any], tasks: frozenset[str], owned: dict[str, set[str]]) -> dict[str, Any]:
    keep = set().union(*(names for task, names in owned.items() if task not in tasks))
    drop = set().union(*(owned.get(task, set()) for task in tasks)) - keep
    paths = {
        path: ops
        for path, ops in doc["paths"].items()
        if not any(path in (f"/api/tasks/{t}/jobs", f"/api/tasks/{t}/run") for t in tasks)
    }
    components = dict(doc.get("components", {}))
    components["schemas"] = {k: v for k, v in components.get("schemas", {}).items() if k not in drop}
    tags = [tag for tag in doc.get("tags", []) if tag["name"] not in {f"task: {t}" for t in tasks}]
    return {**doc, "paths": paths, "components": components, "tags": tags}


def _declare_auth(doc: dict[str, Any]) -> None:
    """Bearer tokens as the security scheme (Swagger UI's Authorize button takes one), and the
    401/403 answers every protected operation may give (web/security.py answers them)."""
    from .policy import rule_for

    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `mieruka tokens create --user NAME`, or your account page.",
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
    has_error_schema = "ErrorOut" in components.get("schemas", {})
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            rule = rule_for(method.upper(), _template_of(path))
            if rule.role is None:
                operation["security"] = []
                continue
            operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            for status, text in (
                ("401", "Not logged in, or the token is unknown, revoked or expired"),
                ("403", "The role, an allow list or the job's owner does not allow it"),
            ):
                if status not in responses:
                    responses[status] = {"description": text, **(error if has_error_schema else {})}


def _template_of(path: str) -> str:
    # Per-task operations are documented under their task's name; their rule is the generic one.
    parts = path.split("/")
    if len(parts) == 5 and parts[1:3] == ["api", "tasks"] and parts[4] in ("jobs", "run"):
        return f"/api/tasks/{{task}}/{parts[4]}"
    return path


def _register(schemas: dict[str, Any], schema: dict[str, Any], name: str, owned: set[str]) -> str:
    for def_name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(def_name, definition)
        owned.add(def_name)
    schemas[name] = schema
    owned.add(name)
    return name


def _request_body(schema: dict[str, Any], ref: str, file_fields: set[str], multi: set[str]) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
    if file_fields:
        form = copy.deepcopy(schema)
        props = form.get("properties", {})
        for name in file_fields:
            binary = {"type": "string", "format": "binary"}
            props[name] = {"type": "array", "items": binary} if name in multi else binary
            props[name]["description"] = schema.get("properties", {}).get(name, {}).get("description", "")
        content = {"multipart/form-data": {"schema": form}, **content}
    return {"required": False, "content": content}
