"""The HTTP face: REST API, Server-Sent Events, OpenAPI docs."""

from __future__ import annotations


def _import_fastapi() -> None:
    """Import FastAPI with the pydantic models it declares at import (its OpenAPI document's, about
    fifty) left to be built when first used, by the first request for /openapi.json: building them
    was a tenth of a server's start. Models declared at the same time elsewhere are deferred too,
    which changes nothing but when they are built."""
    import sys

    if "fastapi" in sys.modules:
        return
    from pydantic import BaseModel

    config = BaseModel.model_config
    given = "defer_build" in config
    before = config.get("defer_build", False)
    config["defer_build"] = True
    try:
        import fastapi  # noqa: F401
    finally:
        if given:
            config["defer_build"] = before
        else:
            config.pop("defer_build")


_import_fastapi()
