"""Read a job submission from a request: a JSON body, or a multipart form with files.

Uploaded files are stored under <home>/uploads/<upload id>/<file name> before the job is created;
if anything fails they are removed again, so nothing half-written is left behind.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import types
import typing
import uuid
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message

from ..core.params import FileRef
from ..core.task import Task
from ..errors import PayloadTooLarge, ValidationError

_UNSAFE = re.compile(r"[^\w.\- ()+@]")


def safe_filename(name: str | None) -> str:
    """A plain file name: no folders, no control characters, at most 200 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "upload"


class Submission:
    def __init__(self, upload_root: Path, max_size: int) -> None:
        self.upload_root = upload_root
        self.max_size = max_size
        self.upload_ids: list[str] = []

    def discard(self) -> None:
        """Remove the files saved for a submission that did not become a job."""
        for upload_id in self.upload_ids:
            shutil.rmtree(self.upload_root / upload_id, ignore_errors=True)
        self.upload_ids.clear()

    async def read(self, request: Request, task: Task) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_size + 65536:
            raise PayloadTooLarge(f"the request is {int(length):,} bytes; the limit is {self.max_size:,} bytes")
        limited = Request(request.scope, _limited_receive(request, self.max_size + 65536))
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            try:
                form = await limited.form(max_files=1000, max_fields=1000)
            except PayloadTooLarge:
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error
                raise ValidationError(f"cannot read the form: {exc}") from None
            try:
                return self._from_form(form, task)
            finally:
                await form.close()
        body = await limited.body()
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object of parameters")
        for name in task.signature.file_fields:
            if name in data:
                data[name] = self._from_json_file(name, data[name])
        return data

    # -- forms ---------------------------------------------------------------------------------
    def _from_form(self, form: FormData, task: Task) -> dict[str, Any]:
        fields = task.signature.model.model_fields
        params: dict[str, Any] = {}
        for name in form:
            if name not in fields:
                params[name] = form.get(name)  # let validation report it as unknown
        for name, info in fields.items():
            values = form.getlist(name)
            if name in task.signature.file_fields:
                uploads = [v for v in values if isinstance(v, UploadFile) and (v.filename or v.size)]
                if not uploads:
                    continue
                refs = [self._save(name, upload) for upload in uploads]
                params[name] = refs if name in task.signature.multi_file_fields else refs[0]
                continue
            texts = [v for v in values if isinstance(v, str)]
            if not texts:
                continue
            params[name] = _form_value(info.annotation, texts)
        return params

    def _save(self, field: str, upload: UploadFile) -> dict[str, Any]:
        size = upload.size if upload.size is not None else _measure(upload)
        if size > self.max_size:
            raise PayloadTooLarge(f"{field}: {upload.filename!r} is {size:,} bytes; the limit is "
                                  f"{self.max_size:,} bytes")
        return self._store(upload.filename, upload.content_type, lambda fh: shutil.copyfileobj(upload.file, fh))

    def _from_json_file(self, field: str, value: Any) -> Any:
        """A file in a JSON body: {"filename": ..., "content_base64": ...}, or a list of them."""
        if isinstance(value, list):
            return [self._from_json_file(field, item) for item in value]
        if not isinstance(value, dict) or "content_base64" not in value:
            return value  # a FileRef from an earlier upload, or something validation will reject
        try:
            content = base64.b64decode(value["content_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValidationError(f"{field}: content_base64 is not valid base64",
                                  [{"field": field, "message": "invalid base64"}]) from None
        if len(content) > self.max_size:
            raise PayloadTooLarge(f"{field}: the file is {len(content):,} bytes; the limit is {self.max_size:,}")
        return self._store(value.get("filename"), value.get("content_type"), lambda fh: fh.write(content))

    def _store(self, filename: str | None, content_type: str | None,
               write: typing.Callable[[typing.BinaryIO], object]) -> dict[str, Any]:
        upload_id = uuid.uuid4().hex
        name = safe_filename(filename)
        folder = self.upload_root / upload_id
        folder.mkdir(parents=True)
        self.upload_ids.append(upload_id)
        path = folder / name
        with path.open("wb") as fh:
            write(fh)
        ref = FileRef(upload_id=upload_id, filename=name, size=path.stat().st_size,
                      content_type=content_type or "application/octet-stream")
        return ref.model_dump()


def _measure(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    size = upload.file.tell()
    upload.file.seek(0)
    return size


def _form_value(annotation: Any, texts: list[str]) -> Any:
    """Form fields are strings: lists repeat the field (or hold JSON), models hold JSON."""
    kind = _shape(annotation)
    if kind == "list":
        if len(texts) == 1 and texts[0].lstrip().startswith("["):
            return _json_or_text(texts[0])
        return [t for t in texts if t != ""]
    if kind == "json":
        return _json_or_text(texts[-1])
    value = texts[-1]
    return None if value == "" and _optional(annotation) else value


def _shape(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _shape(get_args(annotation)[0])
    if origin in (list, set, tuple, frozenset):
        return "list"
    if origin is dict or annotation is dict:
        return "json"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "json"
    if origin is typing.Union or origin is types.UnionType:
        shapes = {_shape(a) for a in get_args(annotation) if a is not type(None)}
        return shapes.pop() if len(shapes) == 1 else "scalar"
    return "scalar"


def _optional(annotation: Any) -> bool:
    return type(None) in get_args(annotation)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _limited_receive(request: Request, limit: int) -> typing.Callable[[], typing.Awaitable[Message]]:
    received = 0
    receive = request.receive

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(f"the request is larger than the limit of {limit:,} bytes")
        return message

    return limited
