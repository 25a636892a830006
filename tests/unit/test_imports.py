"""Heavy modules stay out until they are used (issue 23): importing mieruka, declaring an app, and
starting and serving one on an up-to-date SQLite database load no migration tool, no PostgreSQL
driver, no Celery and no pandas. Each case runs in a fresh interpreter, where sys.modules tells."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"

# Never wanted by a plain app on SQLite with the threads or local executor.
NEVER = {"alembic", "mako", "psycopg", "celery", "kombu", "redis", "pandas", "numpy", "boto3"}
# Nor by the server of such an app, until a feature that needs it is configured: the HTTP client of
# single sign-on (with the 90 modules httpx brings: rich, pygments) and LDAP's client.
NOT_SERVING = NEVER | {"httpx", "rich", "pygments", "ldap3", "joserfc"}
# Nor by a server start, until it is needed: the process table (a worker to kill or look at), a
# config file's reader, a docstring's parser (a task with a docstring), argon2 (a password), the
# mail client (a notification by mail), and on SQLite, SQLAlchemy (the first listing, or any cold
# statement: store/database.py).
NOT_STARTING = {"psutil", "tomllib", "docstring_parser", "argon2", "smtplib", "sqlalchemy"}
# Nor, by an app started from a script (it serves nothing), the web stack, nor asyncio while no task
# is a coroutine.
NOT_EMBEDDED = NOT_STARTING | {"uvicorn", "h11", "httptools", "fastapi", "starlette", "jinja2", "multipart", "asyncio"}
# Not wanted until the app starts or serves.
NOT_DECLARING = NEVER | {"sqlalchemy", "fastapi", "starlette", "uvicorn", "jinja2", "argon2", "multipart"}
# Loaded by the apps that use them: cron schedules, pipelines (their runner watches processes).
NOT_DECLARING |= {"croniter", "dateutil", "psutil"}

APP = """
import mieruka

app = mieruka.App("imports", home=HOME, executor="threads", workers=1)


@app.task
def double(x: int) -> int:
    return 2 * x
"""


def loaded_after(code: str, tmp_path: Path, modules: bool = False) -> set[str]:
    """The top-level packages (`modules`: the modules) loaded after running `code` in a fresh
    interpreter (with HOME, a fresh folder, defined; the tests' own modules importable)."""
    script = f"HOME = {str(tmp_path / 'home')!r}\n{code}\n"
    name = "m" if modules else "m.split('.')[0]"
    script += f"import sys, json\nprint(json.dumps(sorted({{{name} for m in sys.modules}})))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent)])
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_mieruka_loads_no_framework(tmp_path: Path) -> None:
    assert loaded_after("import mieruka", tmp_path) & NOT_DECLARING == set()


def test_importing_the_command_line_loads_no_framework(tmp_path: Path) -> None:
    assert loaded_after("import mieruka.cli", tmp_path) & NOT_DECLARING == set()


def test_the_account_and_database_commands_load_no_framework(tmp_path: Path) -> None:
    """`mieruka users`, `tokens` and `db upgrade` open the database and nothing of the web stack or
    the app: SQLAlchemy once cost them half their time (a URL parsed with it)."""
    home = tmp_path / "home"
    commands = [
        ["db", "upgrade"],
        ["users", "add", "ann", "--role", "admin", "--password-stdin"],
        ["users", "ls"],
        ["tokens", "create", "--user", "ann"],
        ["tokens", "ls"],
    ]
    for argv in commands:
        code = (
            "import io, sys\n"
            "from mieruka.cli import main\n"
            "sys.stdin = io.StringIO('a long enough password\\n')\n"
            f"assert main([*{argv!r}, '--home', {str(home)!r}]) == 0\n"
        )
        loaded = loaded_after(code, tmp_path)
        assert loaded & ((NOT_DECLARING - {"argon2"}) | {"pydantic"}) == set(), argv


def test_declaring_an_app_with_a_task_loads_no_framework(tmp_path: Path) -> None:
    assert loaded_after(APP, tmp_path) & NOT_DECLARING == set()


def test_starting_on_an_up_to_date_database_loads_no_migration_tool(tmp_path: Path) -> None:
    """The first start creates the schema (from the SQLite snapshot: Alembic runs only for an older
    database); the next one finds it up to date with one query and serves its first job without
    Alembic, Mako or psycopg."""
    run_one = APP + textwrap.dedent(
        """
        with app:
            assert app.wait(app.submit("double", x=21)).result == 42
        """
    )
    assert loaded_after(run_one, tmp_path) & NEVER == set()  # a new database
    assert loaded_after(run_one, tmp_path) & NOT_EMBEDDED == set()
    database = tmp_path / "home" / "mieruka.db"
    database.unlink()
    with closing(sqlite3.connect(database)) as other:
        other.execute("CREATE TABLE notes (text TEXT)")  # a database that holds other tables: Alembic's work
    assert "alembic" in loaded_after(run_one, tmp_path)
    assert loaded_after(run_one, tmp_path) & NEVER == set()


def test_serving_an_app_on_an_up_to_date_database_loads_no_migration_tool(tmp_path: Path) -> None:
    serve = APP + textwrap.dedent(
        """
        from mieruka.web.api import create_api
        from starlette.testclient import TestClient

        api = create_api(app.runtime, stop_app=True)
        with TestClient(api, "http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
            assert client.get("/healthz").status_code == 200
            job = client.post("/api/tasks/double/jobs", json={"x": 4}).json()
            assert client.get(f"/api/jobs/{job['id']}?wait=30").json()["result"] == 8
        """
    )
    loaded_after(APP + "\napp.start()\napp.stop()\n", tmp_path)  # makes the schema
    assert loaded_after(serve, tmp_path) & (NEVER | NOT_STARTING) == set()  # (the test client is httpx's)
    # Nor SQLAlchemy's PostgreSQL dialect (30 modules): the partial indexes name it on PostgreSQL only.
    assert not {m for m in loaded_after(serve, tmp_path, modules=True) if m.startswith("sqlalchemy.dialects.postgres")}


def test_building_the_server_of_an_app_loads_no_client_it_does_not_use(tmp_path: Path) -> None:
    build = APP + textwrap.dedent(
        """
        import mieruka.server
        from mieruka.web.api import create_api

        create_api(app.runtime, stop_app=True)
        """
    )
    loaded_after(APP + "\napp.start()\napp.stop()\n", tmp_path)
    assert loaded_after(build, tmp_path) & NOT_SERVING == set()


def test_english_pages_load_no_babel_and_a_japanese_one_does(tmp_path: Path) -> None:
    """Babel (its CLDR data: tens of megabytes) is for pages in the other languages (issue 22)."""
    page = APP + textwrap.dedent(
        """
        from mieruka.web.api import create_api
        from starlette.testclient import TestClient

        api = create_api(app.runtime, stop_app=True)
        with TestClient(api, "http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
            answer = client.get("/jobs", headers={"Accept": "text/html", "Accept-Language": LANGUAGE})
            assert answer.status_code == 200 and f'<html lang="{LANGUAGE}"' in answer.text
        """
    )
    loaded_after(APP + "\napp.start()\napp.stop()\n", tmp_path)  # makes the schema
    assert "babel" not in loaded_after('LANGUAGE = "en"\n' + page, tmp_path)
    assert "babel" in loaded_after('LANGUAGE = "ja"\n' + page, tmp_path)


def test_fastapis_openapi_models_are_built_at_the_first_request_for_the_document(tmp_path: Path) -> None:
    """FastAPI declares its OpenAPI document's pydantic models at import (a tenth of a server's start):
    mieruka.web imports it with their building deferred to their first use, and no other model's."""
    serve = APP + textwrap.dedent(
        """
        from mieruka.web.api import create_api
        from fastapi.openapi import models
        from pydantic import BaseModel
        from starlette.testclient import TestClient

        assert "defer_build" not in BaseModel.model_config  # pydantic's default is as it was

        class Later(BaseModel):
            x: int

        assert Later.__pydantic_complete__  # a model declared afterwards is built as it is declared
        api = create_api(app.runtime, stop_app=True)
        with TestClient(api, "http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
            assert client.get("/healthz").status_code == 200
            assert not models.OpenAPI.__pydantic_complete__
            document = client.get("/openapi.json").json()
            assert "/api/tasks/double/jobs" in document["paths"], document["paths"].keys()
            assert models.OpenAPI.__pydantic_complete__
        """
    )
    loaded_after(serve, tmp_path)


def test_serving_loads_neither_pydantic_v1_nor_prometheus_until_needed(tmp_path: Path) -> None:
    """FastAPI asks of every route's parameters whether they are pydantic.v1 models: not by importing
    pydantic.v1 (a copy of pydantic 1) while nothing else did; once imported, its models are told.
    prometheus_client comes with the first scrape of /metrics, which counts what came before."""
    serve = APP + textwrap.dedent(
        """
        import sys
        from mieruka.web.api import create_api
        from fastapi._compat import shared
        from starlette.testclient import TestClient

        api = create_api(app.runtime, stop_app=True)
        with TestClient(api, "http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
            assert client.get("/jobs", headers={"Accept": "text/html"}).status_code == 200
            assert "/api/tasks/double/jobs" in client.get("/openapi.json").json()["paths"]  # every route built
            job = client.post("/api/tasks/double/jobs", json={"x": 4}).json()
            assert client.get(f"/api/jobs/{job['id']}?wait=30").json()["result"] == 8
            assert "pydantic.v1" not in sys.modules and "prometheus_client" not in sys.modules
            assert 'mieruka_jobs_finished_total{state="succeeded",task="double"} 1.0' in client.get("/metrics").text
        from pydantic import v1

        class Old(v1.BaseModel):
            x: int

        assert shared.annotation_is_pydantic_v1(Old) and shared.is_pydantic_v1_model_instance(Old(x=1))
        assert not shared.annotation_is_pydantic_v1(int)
        """
    )
    loaded_after(APP + "\napp.start()\napp.stop()\n", tmp_path)
    loaded_after(serve, tmp_path)


def test_the_server_loads_uvicorn_without_its_command_line(tmp_path: Path) -> None:
    """uvicorn's package imports its command line (click, the reloaders' watchfiles, multiprocessing);
    the server takes its modules without it, and the package still gives every name it has."""
    code = textwrap.dedent(
        """
        import sys
        import mieruka.server
        import uvicorn
        from uvicorn.lifespan.on import LifespanOn
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.config import Config

        assert uvicorn.Config is Config and uvicorn.Server.__module__ == "uvicorn.server"
        assert not {"click", "watchfiles", "multiprocessing", "uvicorn.main"} & set(sys.modules), sorted(sys.modules)
        assert callable(uvicorn.run) and uvicorn.__version__ and "click" in sys.modules
        from uvicorn import run

        assert run is sys.modules["uvicorn.main"].run
        try:
            uvicorn.no_such_name
        except AttributeError:
            pass
        else:
            raise AssertionError("a name uvicorn does not have")
        """
    )
    loaded_after(code, tmp_path)
