"""Ids in paths: parsed once, by the route itself, in their one canonical spelling.

`/api/jobs/{job_id:id}` matches only a positive decimal integer written without sign, spaces or
leading zeros; `+5`, `05`, `5%20` or `%095` match no route (404). The security layer and the
handler therefore see the same int, and an id that names a job can be written only one way (the
owner check, the audit log and every cache agree on it).
"""

from __future__ import annotations

import re

from starlette.convertors import Convertor, register_url_convertor

# At most 18 digits: every id fits a signed 64-bit database integer.
ID_PATTERN = "[1-9][0-9]{0,17}"


class IdConvertor(Convertor[int]):
    regex = ID_PATTERN

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        if value < 1:
            raise ValueError("an id is a positive integer")
        return str(value)


register_url_convertor("id", IdConvertor())

JOB_ID = "{job_id:id}"
TOKEN_ID = "{token_id:id}"
DISPLAY_ID = "{display_id:id}"


def parse_id(text: str) -> int | None:
    """An id written anywhere else (a form field, a header): the same one spelling, or None."""
    return int(text) if _ID.fullmatch(text) else None


_ID = re.compile(ID_PATTERN, re.ASCII)
