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


def _ask_of_pydantic_v1_only_when_loaded() -> None:
    """FastAPI asks of each route's parameters, and of what it encodes, whether it is a pydantic.v1
    model, importing pydantic.v1 to tell: a copy of pydantic 1, 17 ms of a server's first request
    and 1.4 MB. Nothing is a pydantic.v1 model unless pydantic.v1 was imported, so until then the
    answer is no without importing it; after, FastAPI's own check answers."""
    import sys

    from fastapi import encoders
    from fastapi._compat import shared

    class_check = getattr(shared, "is_pydantic_v1_model_class", None)
    instance_check = getattr(shared, "is_pydantic_v1_model_instance", None)
    if class_check is None or instance_check is None:
        return  # another FastAPI: left as it is

    def is_v1_class(cls: object) -> bool:
        return "pydantic.v1" in sys.modules and bool(class_check(cls))

    def is_v1_instance(obj: object) -> bool:
        return "pydantic.v1" in sys.modules and bool(instance_check(obj))

    # Each module that imported a check by name holds it as its own.
    for module in (shared, encoders):
        for name, was, now in (
            ("is_pydantic_v1_model_class", class_check, is_v1_class),
            ("is_pydantic_v1_model_instance", instance_check, is_v1_instance),
        ):
            if getattr(module, name, None) is was:
                setattr(module, name, now)


_import_fastapi()
_ask_of_pydantic_v1_only_when_loaded()
