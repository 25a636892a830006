"""Routes built at their first use (issue 23): a server builds only the routes it serves, and each
route, once built, is the APIRoute FastAPI would have built at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI, Query
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import compile_path

from mieruka.web.routers import LazyRoute, Router, adopt

SRC = Path(__file__).parents[2] / "src"


class Answer(BaseModel):
    doubled: int


def _router() -> Router:
    router = Router(prefix="/api", tags=["t"])

    @router.get("/double/{x}", response_model=Answer, summary="double it")
    def double(x: int, times: int = Query(2, ge=1)) -> Answer:
        return Answer(doubled=x * times)

    @router.post("/things", status_code=201)
    def make(thing: Answer) -> dict[str, int]:
        return {"made": thing.doubled}

    return router


def test_a_route_is_built_at_its_first_request_and_serves_as_fastapi_would() -> None:
    router = _router()
    api = FastAPI()
    adopt(api.router, router)
    double, make = router.routes
    assert isinstance(double, LazyRoute) and isinstance(make, LazyRoute)
    assert "dependant" not in vars(double) and "dependant" not in vars(make)
    client = TestClient(api)
    assert client.get("/api/double/4", params={"times": 3}).json() == {"doubled": 12}
    assert "dependant" in vars(double) and "dependant" not in vars(make)
    # Matching needs nothing built: a wrong method is told apart, and the route stays unbuilt.
    assert client.get("/api/things").status_code == 405 and "dependant" not in vars(make)
    assert client.get("/api/double/x").status_code == 422
    assert client.get("/api/double/4", params={"times": 0}).status_code == 422
    made = client.post("/api/things", json={"doubled": 5})
    assert made.status_code == 201 and made.json() == {"made": 5}
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/api/double/{x}"]["get"]["summary"] == "double it"
    assert paths["/api/things"]["post"]["tags"] == ["t"]


def test_every_route_of_the_app_builds_as_fastapi_builds_it(tmp_path: Path) -> None:
    """Building at first use moves a route's mistakes from the import to its first request: every
    route of the app is built here, and compared with FastAPI's own build from the same arguments."""
    import mieruka
    from mieruka.web.api import create_api

    app = mieruka.App("routes", home=tmp_path / "home", executor="threads", workers=1)

    @app.task
    def add(a: int, b: int = 2) -> int:
        return a + b

    api = create_api(app.runtime)
    lazy = [route for route in api.router.routes if isinstance(route, LazyRoute)]
    assert len(lazy) > 100 and not [r for r in api.router.routes if type(r) is APIRoute]
    for route in lazy:
        deferred = vars(route).get("_deferred")
        route.build()
        if deferred is None:  # built already, by an earlier test in this process
            continue
        path, endpoint, kwargs = deferred
        eager = APIRoute(path, endpoint, **kwargs)
        assert (route.path, route.name, route.methods, route.unique_id) == (
            eager.path,
            eager.name,
            eager.methods,
            eager.unique_id,
        )
        assert route.path_regex.pattern == eager.path_regex.pattern
        assert route.include_in_schema == eager.include_in_schema
        assert [p.name for p in route.dependant.query_params] == [p.name for p in eager.dependant.query_params]
        assert (route.response_model, route.status_code) == (eager.response_model, eager.status_code)


def test_a_server_builds_only_the_routes_it_serves(tmp_path: Path) -> None:
    """In a fresh interpreter (routes are built once per process): none is built by making the
    app; serving the health check builds its route and few others."""
    script = f"""
import json, re, mieruka
from fastapi.testclient import TestClient
from starlette.routing import compile_path
from mieruka.web.api import create_api
from mieruka.web.routers import LazyRoute

app = mieruka.App("routes", home={str(tmp_path / "home")!r}, executor="threads", workers=1)
api = create_api(app.runtime)
routes = [r for r in api.router.routes if isinstance(r, LazyRoute)]
built = lambda: sorted(r.path for r in routes if "_deferred" not in vars(r))
compiled = lambda: sorted(r.path for r in routes if isinstance(vars(r)["path_regex"], re.Pattern))
before, compiled_before = built(), compiled()
with TestClient(api, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
    status = client.get("/healthz").status_code
print(json.dumps({{"routes": len(routes), "before": before, "after": built(), "status": status,
                  "compiled_before": compiled_before, "compiled": compiled()}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["status"] == 200 and seen["routes"] > 100
    assert seen["before"] == []
    assert "/healthz" in seen["after"] and len(seen["after"]) <= 3, seen["after"]
    # Nor is a route's path pattern compiled until a path could match it.
    assert seen["compiled_before"] == []
    assert "/healthz" in seen["compiled"] and len(seen["compiled"]) <= 3, seen["compiled"]


def test_a_pattern_compiled_at_first_use_matches_as_starlettes(tmp_path: Path) -> None:
    """Until a path could match it, a route's pattern tells a path without the route's literal
    beginning no: every route of the app against every route's path (its parameters filled in) and
    near misses answers as Starlette's compiled pattern does, parameters included."""
    import mieruka
    from mieruka.web.api import create_api

    app = mieruka.App("routes", home=tmp_path / "home", executor="threads", workers=1)
    api = create_api(app.runtime)
    lazy = [route for route in api.router.routes if isinstance(route, LazyRoute)]
    filled = [re.sub(r"\{[^}]+\}", "7", route.path) for route in lazy]
    paths = sorted({*filled, *(p + "/" for p in filled), *(p + "x" for p in filled), *(p[:-1] for p in filled), "/"})
    for route in lazy:
        eager = compile_path(route.path)[0]
        for path in paths:
            ours, theirs = route.path_regex.match(path), eager.match(path)
            assert (ours and ours.groupdict()) == (theirs and theirs.groupdict()), (route.path, path)
        assert route.path_format == compile_path(route.path)[1]


def test_a_route_that_cannot_be_built_says_why_at_each_request() -> None:
    router = Router()

    @router.get("/broken", status_code=204)  # FastAPI refuses a response model on a 204 when it builds
    def broken() -> dict[str, int]:
        return {}

    (route,) = router.routes
    assert isinstance(route, LazyRoute)
    for _ in range(2):  # the second look sees the same reason, not a missing attribute
        with pytest.raises(AssertionError, match="must not have a response body"):
            route.build()
