"""Pressing a dashboard's control: run its task at once and answer with the outcome, then ask the
control's state source to refresh (or its stream to sample), so every open page shows the device's
new state.

    POST /api/dashboards/{name}/controls/{control}   {"value": true}  |  {"params": {...}}  |  {}

The security middleware has checked the role (operator) and the dashboard's allow list
(policy.py); the task's allow list is checked here, since the path does not name the task. The
press's audit entry (control.press) holds the dashboard, the control, the task, its parameters
without secrets, the job, its outcome and its run time.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ..core.access import Principal, Role, allowed
from ..core.controls import Control
from ..core.job import JobRecord
from ..core.task import Task
from ..errors import JobTimeoutError, PermissionDenied, ValidationError
from ..i18n import _
from ..notes import json_of
from ..runtime import Runtime
from .audit import note, note_job, note_result
from .identity import owner_name, principal
from .live import live_or_none
from .offload import offload
from .routers import Router
from .schemas import ERRORS
from .serialize import JsonAnswer
from .state import RuntimeDep
from .ui.forms import form_params

router = Router(tags=["dashboards"])
BODY_KEYS = {"value", "params"}
BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "value": {"description": "A toggle's true or false, a slider's or number's number, a select's option."},
        "params": {"type": "object", "description": "A form's fields (the task parameters it asks for)."},
    },
    "additionalProperties": False,
}


def why_not(who: Principal | None, task: Task) -> str | None:
    """Why `who` may not use a control of `task` (None: they may), in words for the page."""
    if who is None:
        return _("Log in as an operator to use this control")
    needed = role_needed(task.allow)
    if not who.can(needed):
        return _("Admins can use this control") if needed is Role.ADMIN else _("Operators can use this control")
    if not allowed(who, task.allow):
        return _("Your account may not run what this control does")  # the hidden task stays unnamed
    return None


def role_needed(allow: tuple[str, ...] | None) -> Role:
    """The least role that may press a control of a task with this allow list: an operator's, or an
    admin's where the list names no role below it and no user or group (allow=["admin"])."""
    if allow and all(entry == Role.ADMIN.value for entry in allow):
        return Role.ADMIN
    return Role.OPERATOR


@router.post(
    "/api/dashboards/{name}/controls/{control}",
    response_model=None,
    responses={
        200: {
            "description": "The task ran (or is still running after the wait): "
            '{"job", "state", "result", "message", "error", "duration", "url"}'
        },
        **ERRORS,
    },
    openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": BODY_SCHEMA}}}},
)
async def press(runtime: RuntimeDep, request: Request, name: str, control: str) -> Response:
    """Press a control: run its task now with the control's fixed parameters and the chosen `value`
    (a toggle, slider, number or select) or the form's `params`, wait for the result up to the
    server's run wait limit, and answer with the outcome. A bad value is a 422 naming it."""
    return await press_answer(runtime, request, name, control)


async def press_answer(runtime: Runtime, request: Request, name: str, control: str) -> Response:
    board = runtime.dashboards.get(name)
    item = board.control(control)
    task = runtime.tasks.get(item.task)
    who = principal(request)
    if not allowed(who, task.allow):
        raise PermissionDenied(_("%(user)s may not use control %(control)s", user=who.name, control=repr(item.name)))
    value, given = await _read(request, task, item)
    params = item.parameters(value, given)
    started = time.monotonic()
    record = (await offload(runtime.engine.submit, task.name, params, owner=owner_name(request)))[0]
    note(request, dashboard=board.name, control=item.name)
    note_job(request, record, task)
    try:
        record = await runtime.engine.wait_async(record.id, runtime.settings.run_wait_max)
    except JobTimeoutError:
        record = await runtime.engine.get_async(record.id)
    note_result(request, record)  # the audit entry: task, parameters, outcome, duration
    _refresh_state(runtime, item)
    root = request.scope.get("root_path", "")
    return JsonAnswer(
        outcome(record, root, time.monotonic() - started),
        headers={"Location": f"{root}/api/jobs/{record.id}"},  # the audit entry names the job
    )


def outcome(record: JobRecord, root: str, waited: float) -> dict[str, Any]:
    return {
        "job": record.id,
        "state": record.status.value,
        "result": record.result,
        "message": record.message,
        "message_note": json_of(record.message),
        "error": record.error,
        "error_note": json_of(record.error),
        "duration": record.duration if record.duration is not None else round(waited, 3),
        "url": f"{root}/jobs/{record.id}",
    }


async def _read(request: Request, task: Task, item: Control) -> tuple[Any, dict[str, Any]]:
    """The chosen value and the form's fields: a JSON object {"value": ..., "params": {...}}, or a
    posted form (a form control's own fields, as on the task's page)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        raise ValidationError("a control takes JSON, or a form's fields urlencoded: it sends no files")
    if content_type.startswith("application/x-www-form-urlencoded"):
        if item.kind != "form":
            raise ValidationError(f'a {item.kind} takes JSON: {{"value": ...}}')
        form = await request.form(max_files=0, max_fields=1000)
        try:
            items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        finally:
            await form.close()
        return None, form_params(task, items)
    body = await request.body()
    if not body.strip():
        return None, {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError('the body must be a JSON object: {"value": ...} or {"params": {...}}')
    unknown = sorted(set(data) - BODY_KEYS)
    if unknown:
        raise ValidationError(f'unknown key {unknown[0]!r}: send {{"value": ...}} or {{"params": {{...}}}}')
    given = data.get("params") or {}
    if not isinstance(given, dict):
        raise ValidationError("params must be a JSON object of parameters")
    return data.get("value"), given


def _refresh_state(runtime: Runtime, item: Control) -> None:
    """Ask the state's source for a read now, or its stream for a value now."""
    live = live_or_none(runtime)
    if not item.state or live is None:
        return
    if item.is_stream and item.source in live.streams:
        live.streams[item.source].sample_now()
    elif not item.is_stream and item.source in live.sources:
        live.refresher.refresh(item.source)
