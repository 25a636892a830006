"""The app's routers: routes built at their first request, and added to the app as they are."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import compile_path, get_name

_BUILDING = threading.RLock()


class LazyRoute(APIRoute):
    """An APIRoute that does at first what matching a request and the access check read (its path,
    methods, name) and the rest (dependencies, parameter and response models through pydantic) when
    anything else of it is first read: at its first request, or when the OpenAPI document is made.
    Building all of them took a third of a server's start, for routes most servers never serve."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        name = kwargs.get("name")
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name
        self.methods = {method.upper() for method in kwargs.get("methods") or ["GET"]}
        self.include_in_schema = kwargs.get("include_in_schema", True)
        self.path_regex = _Pattern(self, path)  # type: ignore[assignment]  # what matching uses of a re.Pattern
        self._deferred = (path, endpoint, kwargs)

    def compiled(self) -> re.Pattern[str]:
        """The path's pattern, compiled now if it is not yet (with its format and convertors)."""
        pattern = self.__dict__["path_regex"]
        if isinstance(pattern, _Pattern):
            self.path_regex, self.path_format, self.param_convertors = compile_path(self.path)
            return self.path_regex
        return pattern  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not set yet: everything APIRoute's own __init__ would have set.
        if name.startswith("__"):
            raise AttributeError(name)
        if name in ("path_format", "param_convertors"):  # reversing a route needs no more than these
            self.compiled()
            return self.__dict__[name]
        with _BUILDING:
            deferred = self.__dict__.pop("_deferred", None)
            if deferred is not None:
                path, endpoint, kwargs = deferred
                try:
                    APIRoute.__init__(self, path, endpoint, **kwargs)
                except BaseException:
                    self._deferred = deferred  # each request says what is wrong, not a missing attribute
                    raise
        return object.__getattribute__(self, name)

    def build(self) -> LazyRoute:
        """Build it now (a test, or a server that wants every route checked)."""
        self.__getattr__("app")
        return self


class _Pattern:
    """A route's path pattern, compiled when a path could match it: a path without the route's
    literal beginning is told no at once. A server compiled a hundred patterns as it started (a
    thirtieth of its start), for routes most of its requests never come near."""

    __slots__ = ("_prefix", "_route")

    def __init__(self, route: LazyRoute, path: str) -> None:
        self._route = route
        self._prefix = path.split("{", 1)[0]

    def match(self, text: str) -> re.Match[str] | None:
        if not text.startswith(self._prefix):
            return None
        return self._route.compiled().match(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._route.compiled(), name)


class Router(APIRouter):
    """FastAPI's router, with routes built at first use."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=LazyRoute, **kwargs)


def adopt(into: APIRouter, router: APIRouter) -> None:
    """Add `router`'s routes to `into` as they are. FastAPI's `include_router` builds every route
    a second time on the first request (dependencies, parameter and response models) and looks at
    each included router on every request after; ours declare their prefix, tags and responses
    themselves and are included with nothing to add, so their built routes serve as they are."""
    into.routes.extend(router.routes)
