"""schemathesis hooks for scripts/fuzz.py: a long poll (`?wait=`, up to 300 s by design) on a job
that was queued with a delay waits in full, which would only burn the fuzzing's time budget."""

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
