"""One job submission from a request, for the API and the UI alike: read the body (a JSON object, a
multipart form with files, or an urlencoded form), save the uploads, and queue the job with the engine.

The body is counted as it arrives: past the upload limit (plus room for the form around the file) the
submission stops reading and refuses with PayloadTooLarge, whether or not the client said how long the
body would be. Uploaded files are stored under <home>/uploads/<upload id>/<file name> before the job is
created (the engine copies them to the shared upload storage when it accepts the job); if anything fails
they are removed again, so nothing half-written is left behind.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from ..artifacts.uploads import UploadStorage
from ..core.job import JobRecord
from ..core.params import FileRef
from ..core.task import Task
from ..errors import PayloadTooLarge, ValidationError
from ..i18n import _
from ..runtime import Runtime
from .audit import Ticket, job_entry, note_job, ticket_of
from .offload import offload
from .ui.forms import form_params

log = logging.getLogger("mieruka.uploads")
_UNSAFE = re.compile(r"[^\w.\- ()+@]")
FORM_ROOM = 65536  # bytes a body may hold beyond the upload limit: the form's other fields and boundaries
# A refused body is not read to its end: the answer closes the connection rather than draining the rest.
CLOSE = {"Connection": "close"}


def safe_filename(name: str | None) -> str:
    """A plain file name: no folders, no control characters, at most 200 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "upload"


class Submission:
    """One request's way to a job: `await Submission(...).submit()` returns (job, created) or raises
    ValidationError (422), PayloadTooLarge (413) or the engine's errors, having kept none of the files.
    `values` holds the text fields of a posted form, for a page to show the form again as it was filled in."""

    def __init__(self, runtime: Runtime, request: Request, task: Task, owner: str | None) -> None:
        self.engine = runtime.engine
        self.audit_log = runtime.auth.audit
        self.uploads: UploadStorage = runtime.engine.uploads
        self.max_size = runtime.settings.max_upload_size
        self.request, self.task, self.owner = request, task, owner
        self.values: FormData | None = None
        self.upload_ids: list[str] = []

    async def submit(
        self,
        priority: int | None = None,
        delay: float | None = None,
        idempotency_key: str | None = None,
        audit_with_job: bool = False,
    ) -> tuple[JobRecord, bool]:
        """`audit_with_job`: the request's automatic entry is complete once the job is stored (no
        `note_result` to come), and is written right after it, in the same thread."""
        ticket = ticket_of(self.request) if audit_with_job else None
        try:
            params = await self.read()
            record, created = await offload(self._queue, params, priority, delay, idempotency_key, ticket)
        except BaseException:
            self.discard()
            raise
        if not created:
            self.discard()  # the same request came before: its job already has the files
        if ticket is None or not ticket.written:  # its detail is for the entry written after the answer
            note_job(self.request, record, self.task, "accepted" if created else "duplicate")
        return record, created

    def _queue(
        self,
        params: dict[str, Any],
        priority: int | None,
        delay: float | None,
        idempotency_key: str | None,
        ticket: Ticket | None,
    ) -> tuple[JobRecord, bool]:
        along: list[JobRecord] = []

        def entry_with_job(cur: Any, job: JobRecord) -> None:
            assert ticket is not None
            self.audit_log.write_on(cur, [ticket.entry(f"job:{job.id}", job_entry(job, self.task, "accepted"))])
            along.append(job)

        record, created = self.engine.submit(
            self.task.name,
            params,
            priority=priority,
            idempotency_key=idempotency_key,
            delay=delay,
            owner=self.owner,
            along=entry_with_job if ticket is not None else None,
        )
        if ticket is not None and created and along:  # stored in the job's own transaction
            ticket.written = True
            self.audit_log.tidy()
        elif ticket is not None:  # a repeated key, or a job stored while it went to the broker
            detail = job_entry(record, self.task, "accepted" if created else "duplicate")
            try:
                self.audit_log.record_many([ticket.entry(f"job:{record.id}", detail)])
            except Exception:
                log.warning("audit entry of job %s not written with it; trying again", record.id, exc_info=True)
            else:
                ticket.written = True
        return record, created

    async def read(self) -> dict[str, Any]:
        """The parameters in the request's body, its files saved."""
        limit = self.max_size + FORM_ROOM
        length = self.request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(
                _(
                    "the request is %(size)s bytes; the limit is %(limit)s bytes",
                    size=format(int(length), ","),
                    limit=format(self.max_size, ","),
                )
            )
        limited = Request(self.request.scope, _limited_receive(self.request.receive, limit, self.max_size))
        content_type = self.request.headers.get("content-type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            return await self._read_form(limited)
        return self._read_json(await limited.body())

    def discard(self) -> None:
        """Remove the files saved for a submission that did not become a job."""
        for upload_id in self.upload_ids:
            try:
                self.uploads.delete(upload_id)  # and its shared copy, if the engine made one
            except Exception:
                log.warning("cannot delete upload %s from the shared storage", upload_id, exc_info=True)
        self.upload_ids.clear()

    # -- bodies --------------------------------------------------------------------------------
    async def _read_form(self, limited: Request) -> dict[str, Any]:
        try:
            form = await limited.form(max_files=1000, max_fields=1000)
        except PayloadTooLarge:
            raise
        except Exception as exc:  # starlette's HTTPException(400) for a malformed form, among others
            raise ValidationError(
                _("cannot read the form: %(error)s", error=getattr(exc, "detail", None) or exc)
            ) from None
        try:
            items = form.multi_items()
            self.values = FormData([(k, v) for k, v in items if isinstance(v, str)])
            params = form_params(self.task, items)
            signature = self.task.signature
            for name in signature.file_fields:
                uploads = [v for k, v in items if k == name and isinstance(v, UploadFile) and (v.filename or v.size)]
                if uploads:
                    refs = [self._save(name, upload) for upload in uploads]
                    params[name] = refs if name in signature.multi_file_fields else refs[0]
            return params
        finally:
            await form.close()

    def _read_json(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object of parameters")
        for name in self.task.signature.file_fields:
            if name in data:
                data[name] = self._from_json_file(name, data[name])
        return data

    # -- files ---------------------------------------------------------------------------------
    def _save(self, field: str, upload: UploadFile) -> dict[str, Any]:
        size = upload.size if upload.size is not None else _measure(upload)
        if size > self.max_size:
            raise PayloadTooLarge(
                _(
                    "%(field)s: %(file)s is %(size)s bytes; the limit is %(limit)s bytes",
                    field=field,
                    file=repr(upload.filename),
                    size=format(size, ","),
                    limit=format(self.max_size, ","),
                )
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
        self, filename: str | None, content_type: str | None, write: Callable[[BinaryIO], object]
    ) -> dict[str, Any]:
        upload_id = uuid.uuid4().hex
        name = safe_filename(filename)
        folder = self.uploads.root / upload_id
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


def _limited_receive(receive: Receive, limit: int, max_size: int) -> Callable[[], Awaitable[Message]]:
    """A receive that raises PayloadTooLarge as soon as more than `limit` bytes of body came in."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(
                    _("the request is larger than the upload limit of %(limit)s bytes", limit=format(max_size, ","))
                )
        return message

    return limited
