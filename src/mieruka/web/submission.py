"""Read a job submission from a request: a JSON body, or a multipart form with files.

Uploaded files are stored under <home>/uploads/<upload id>/<file name> before the job is created
(the engine copies them to the shared upload storage when it accepts the job); if anything fails
they are removed again, so nothing half-written is left behind.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shutil
import types
import typing
import uuid
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message

from ..artifacts.uploads import UploadStorage
from ..core.params import FileRef
from ..core.task import Task
from ..errors import PayloadTooLarge, ValidationError

log = logging.getLogger("mieruka.uploads")
_UNSAFE = re.compile(r"[^\w.\- ()+@]")


def safe_filename(name: str | None) -> str:
    """A plain file name: no folders, no control characters, at most 200 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "upload"


class Submission:
    def __init__(self, uploads: UploadStorage, max_size: int) -> None:
        self.uploads = uploads
        self.upload_root = uploads.root
        self.max_size = max_size
        self.upload_ids: list[str] = []

    def discard(self) -> None:
        """Remove the files saved for a submission that did not become a job."""
        for upload_id in self.upload_ids:
            try:
                self.uploads.delete(upload_id)  # and its shared copy, if the engine made one
            except Exception:
                log.warning("cannot delete upload %s from the shared storage", upload_id, exc_info=True)
        self.upload_ids.clear()

    def check_length(self, request: Request) -> None:
        """Refuse a body announced as too large before reading any of it."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_size + 65536:
            raise PayloadTooLarge(f"the request is {int(length):,} bytes; the limit is {self.max_size:,} bytes")

    def from_form(self, form: FormData, task: Task) -> dict[str, Any]:
        """Parameters from an already parsed form (the UI keeps the form to show it again)."""
        return self._from_form(form, task)

    async def read(self, request: Request, task: Task) -> dict[str, Any]:
        self.check_length(request)
        limited = Request(request.scope, _limited_receive(request, self.max_size + 65536))
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            try:
                form = await limited.form(max_files=1000, max_fields=1000)
            except PayloadTooLarge:
                raise
            except Exception as exc:
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
        """Parameters from form fields, read as the web UI's form sends them (see `_form_value`)."""
        import dataclasses

        fields = task.signature.model.model_fields
        files = task.signature.file_fields

        def nests(root: str) -> bool:  # whether `root.x` names a part of the parameter `root` (an object)
            if root not in fields or root in files:
                return False
            annotation = fields[root].annotation
            if _shape(annotation) == "json":
                return True
            if get_origin(annotation) in (typing.Union, types.UnionType):
                kinds = [a for a in get_args(annotation) if a is not type(None)]
                annotation = kinds[0] if len(kinds) == 1 else None
            return isinstance(annotation, type) and (
                dataclasses.is_dataclass(annotation) or typing.is_typeddict(annotation)
            )

        params: dict[str, Any] = {}
        for name in form:
            if name == "csrf_token" and name not in fields:
                continue  # the form's CSRF field (web/security.py), checked before the route runs
            if name not in fields and not ("." in name and nests(name.split(".", 1)[0])):
                params[name] = form.get(name)  # let validation report it as unknown
        for name, info in fields.items():
            values = form.getlist(name)
            if name in files:
                uploads = [v for v in values if isinstance(v, UploadFile) and (v.filename or v.size)]
                if not uploads:
                    continue
                refs = [self._save(name, upload) for upload in uploads]
                params[name] = refs if name in task.signature.multi_file_fields else refs[0]
                continue
            texts = [v for v in values if isinstance(v, str)]
            nested: dict[str, list[str]] = {}
            if nests(name):
                prefix = f"{name}."
                nested = {
                    key[len(prefix) :]: [v for v in form.getlist(key) if isinstance(v, str)]
                    for key in form
                    if key.startswith(prefix)
                }
            if not texts and not nested:
                continue
            value = _form_value(info.annotation, texts, nested)
            if value is not ...:
                params[name] = value
        return params

    def _save(self, field: str, upload: UploadFile) -> dict[str, Any]:
        size = upload.size if upload.size is not None else _measure(upload)
        if size > self.max_size:
            raise PayloadTooLarge(
                f"{field}: {upload.filename!r} is {size:,} bytes; the limit is {self.max_size:,} bytes"
            )
        return self._store(upload.filename, upload.content_type, lambda fh: shutil.copyfileobj(upload.file, fh))

    def _from_json_file(self, field: str, value: Any) -> Any:
        """A file in a JSON body: {"filename": ..., "content_base64": ...}, or a list of them."""
        if isinstance(value, list):
            return [self._from_json_file(field, item) for item in value]
        if not isinstance(value, dict) or "content_base64" not in value:
            # A FileRef from an earlier upload (the engine accepts only the submitter's own), or
            # something validation will reject.
            return value
        try:
            content = base64.b64decode(value["content_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValidationError(
                f"{field}: content_base64 is not valid base64", [{"field": field, "message": "invalid base64"}]
            ) from None
        if len(content) > self.max_size:
            raise PayloadTooLarge(f"{field}: the file is {len(content):,} bytes; the limit is {self.max_size:,}")
        return self._store(value.get("filename"), value.get("content_type"), lambda fh: fh.write(content))

    def _store(
        self, filename: str | None, content_type: str | None, write: typing.Callable[[typing.BinaryIO], object]
    ) -> dict[str, Any]:
        upload_id = uuid.uuid4().hex
        name = safe_filename(filename)
        folder = self.upload_root / upload_id
        folder.mkdir(parents=True)
        self.upload_ids.append(upload_id)
        path = folder / name
        with path.open("wb") as fh:
            write(fh)
        ref = FileRef(
            upload_id=upload_id,
            filename=name,
            size=path.stat().st_size,
            content_type=content_type or "application/octet-stream",
        )
        return ref.model_dump()


def _measure(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    size = upload.file.tell()
    upload.file.seek(0)
    return size


def _form_value(annotation: Any, texts: list[str], nested: dict[str, list[str]] | None = None) -> Any:
    """One parameter from the strings a form sent for it, converted as far as validation needs:

    - scalars: the last value (a checkbox sends a hidden "false" and then "true" when ticked); an empty value
      is None when None is allowed; line breaks as "\\n" (a browser sends a textarea's as "\\r\\n");
    - lists: one item per line (a textarea) and/or one item per repeated field, blank lines dropped, each item
      stripped; or a JSON array. Nothing but blanks is None when None is allowed, else [];
    - models, dataclasses, dicts: dotted fields (`window.start` arrives here as nested {"start": [...]}),
      each converted by its own type and laid over the JSON object in the field itself if there is one; or JSON.
      Empty JSON is None when None is allowed, else left out (returns ...) so the default applies.
    """
    import dataclasses

    inner, optional = annotation, False
    while True:  # the type under Annotated[...] and Optional[...]
        origin = get_origin(inner)
        if origin is typing.Annotated:
            inner = get_args(inner)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(inner) if a is not type(None)]
            optional = optional or len(args) < len(get_args(inner))
            if len(args) != 1:
                break
            inner = args[0]
        else:
            break
    kind = _shape(annotation)
    structured = isinstance(inner, type) and (dataclasses.is_dataclass(inner) or typing.is_typeddict(inner))
    if kind == "scalar" and structured:
        kind = "json"  # a dataclass or TypedDict, in JSON like a model
    if nested:
        hints: dict[str, Any] = {}
        other: Any = Any  # the type of a key `hints` does not name
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            hints = {(f.alias or key): f.annotation for key, f in inner.model_fields.items()}
        elif structured:
            try:
                hints = typing.get_type_hints(inner)
            except Exception:
                hints = {}
        elif get_origin(inner) is dict and len(get_args(inner)) == 2:
            other = get_args(inner)[1]
        base = _json_or_text(texts[-1]) if texts and texts[-1].strip() else {}
        value: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
        heads: dict[str, tuple[list[str], dict[str, list[str]]]] = {}
        for key, strings in nested.items():
            head, _, rest = key.partition(".")
            own, deeper = heads.setdefault(head, ([], {}))
            if rest:
                deeper[rest] = strings
            else:
                own.extend(strings)
        for head, (own, deeper) in heads.items():
            item = _form_value(hints.get(head, other), own, deeper)
            if item is not ...:
                value[head] = item
        return value
    if kind == "list":
        filled = [t for t in texts if t.strip()]
        if len(filled) == 1 and filled[0].lstrip().startswith("["):
            parsed = _json_or_text(filled[0])
            if isinstance(parsed, list):
                return parsed
        items = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
        return None if not items and optional else items
    if kind == "json":
        if not texts or not texts[-1].strip():
            return None if optional else ...
        return _json_or_text(texts[-1])
    value_text = texts[-1].replace("\r\n", "\n") if texts else ""
    if value_text == "" and optional:
        return None
    if get_origin(inner) is typing.Literal:  # Literal[1, 2]: "1" means 1 (pydantic compares exactly)
        for choice in get_args(inner):
            if isinstance(choice, bool | int | float) and value_text == json.dumps(choice):
                return choice
    return value_text


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
