"""schemathesis hooks for scripts/fuzz.py: long polls are cut short (a `?wait=`, up to 300 s by
design, on a job queued with a delay waits in full and would only burn the time budget), and the
fuzzer's own account is left alone."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if query and "wait" in query:
        try:
            query["wait"] = min(float(query["wait"]), 1.0)
        except (TypeError, ValueError):
            pass  # not a number: let the server reject it
    return query


FUZZER = "fuzz"  # the admin scripts/fuzz.py creates, whose token every request carries


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The fuzzer's own account stays as it is: deleting it, or taking its admin role, would answer
    every later request with 401 or 403, and the rest of the run would reach nothing."""
    if (
        case.operation.path == "/api/users/{name}"
        and case.method.upper() in ("DELETE", "PATCH")
        and (case.path_parameters or {}).get("name") == FUZZER
    ):
        case.path_parameters["name"] = f"{FUZZER}-someone-else"
