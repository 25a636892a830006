"""The `mieruka` command as a user runs it: a real process against a real server process."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import mieruka
from mieruka.cli import _parse_params
from mieruka.errors import MierukaError
from tests.conftest import TESTS, ServerProcess, free_port, running_server, shared_server, wait_healthy

UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server (tests/jobs.py, two workers) shared by this module's tests: starting one costs seconds."""
    proc = ServerProcess("tests/jobs.py:app", tmp_path_factory.mktemp("cli") / "server-home", "--workers", "2")
    with shared_server(proc, request) as ready:
        yield ready


@pytest.fixture
def http(srv: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The user's environment without any MIERUKA_* setting of the test run, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env["PYTHONPATH"] = str(TESTS.parent)
    return {**env, **(extra or {})}


def mieruka_cmd(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mieruka.cli", *args],
        cwd=cwd or TESTS.parent,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(srv: ServerProcess, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a client command against the shared server, the URL given as --url."""
    return mieruka_cmd(*args, "--url", srv.url, timeout=timeout)


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return json.loads(result.stdout)


def assert_error(result: subprocess.CompletedProcess[str], *fragments: str, code: int = 1) -> str:
    """A failure: the given exit code, nothing on stdout, one `mieruka: ...` line on stderr."""
    assert result.returncode == code, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("mieruka: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert result.stdout == ""
    return lines[0]


def table(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    """The rows of `jobs ls` as {id, task, status}."""
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["ID", "TASK", "STATUS", "PROGRESS"], header
    out = []
    for row in rows:
        fields = row.split()
        out.append({"id": fields[0], "task": fields[1], "status": fields[2]})
    return out


def wait_status(http: httpx.Client, job_id: int, *states: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/api/jobs/{job_id}").json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {states}: {job}"
        time.sleep(0.1)


def submit_running(http: httpx.Client, seconds: float = 30) -> int:
    """A `sleep` job, returned once it runs."""
    job_id: int = http.post("/api/tasks/sleep/jobs", json={"seconds": seconds}).json()["id"]
    wait_status(http, job_id, "running")
    return job_id


# -- no server needed --------------------------------------------------------------------------


def test_version() -> None:
    result = mieruka_cmd("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mieruka {mieruka.__version__}"


def test_entry_point_script_runs() -> None:
    script = Path(sys.executable).with_name("mieruka")
    if not script.exists():
        pytest.skip(f"no `mieruka` script beside {sys.executable} (package not installed)")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mieruka {mieruka.__version__}"


def test_no_command_prints_help_and_exits_2() -> None:
    result = mieruka_cmd()
    assert result.returncode == 2
    assert result.stdout.startswith("usage: mieruka")
    for command in ("run", "demo", "submit", "jobs", "db"):
        assert f"    {command}" in result.stdout


def test_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    home = tmp_path / "dbhome"
    for _ in range(2):  # idempotent: the second run finds the schema up to date
        result = mieruka_cmd("db", "upgrade", "--home", str(home), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
        assert str(home / "mieruka.db") in result.stdout
    assert (home / "mieruka.db").is_file()
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'mieruka.db'}")
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"jobs", "job_logs", "artifacts"} <= tables


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["a=2", "b=3"], {"a": 2, "b": 3}),
        (["flag=true", "off=false", "none=null"], {"flag": True, "off": False, "none": None}),
        (['names=["x"]', 'window={"start": 1}'], {"names": ["x"], "window": {"start": 1}}),
        (
            ["text=hello world", "ratio=0.5", "empty=", "eq=a=b"],
            {"text": "hello world", "ratio": 0.5, "empty": "", "eq": "a=b"},
        ),
    ],
)
def test_values_are_json_when_they_parse(pairs: list[str], expected: dict[str, Any]) -> None:
    assert _parse_params(pairs) == expected


@pytest.mark.parametrize("pair", ["a", "=3"])
def test_parse_params_rejects_pairs_without_key_or_equals(pair: str) -> None:
    with pytest.raises(MierukaError, match="is not KEY=VALUE"):
        _parse_params([pair])


def test_run_missing_file(tmp_path: Path) -> None:
    assert_error(mieruka_cmd("run", "no_such_file.py", cwd=tmp_path, timeout=30), "no such file", "no_such_file.py")


def test_run_module_without_app(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("x = 1\n")
    assert_error(mieruka_cmd("run", "plain.py", cwd=tmp_path, timeout=30), "found 0 mieruka.App")
    assert_error(mieruka_cmd("run", "plain.py:app", cwd=tmp_path, timeout=30), "'app' is not a mieruka.App")


def test_run_missing_module(tmp_path: Path) -> None:
    assert_error(
        mieruka_cmd("run", "no_such_module_xyz:app", cwd=tmp_path, timeout=30), "cannot import", "no_such_module_xyz"
    )


def test_unreachable_server() -> None:
    line = assert_error(mieruka_cmd("submit", "add", "a=1", "--url", UNREACHABLE), "cannot reach", UNREACHABLE)
    assert "--url" in line
    assert_error(mieruka_cmd("jobs", "ls", "--url", UNREACHABLE), "cannot reach", UNREACHABLE)
    assert_error(mieruka_cmd("jobs", "show", "1", env={"MIERUKA_URL": UNREACHABLE}), "cannot reach", UNREACHABLE)


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999999", "not a url"])
def test_a_server_url_that_is_not_one(url: str) -> None:
    assert_error(mieruka_cmd("jobs", "ls", "--url", url), url)


def test_key_without_equals_fails_before_contacting_the_server() -> None:
    # The URL is unreachable: the parameter error must come first, and alone.
    assert_error(mieruka_cmd("submit", "add", "a", "--url", UNREACHABLE), "'a' is not KEY=VALUE")


def test_file_option_needs_an_existing_file(tmp_path: Path) -> None:
    assert_error(
        mieruka_cmd("submit", "read_upload", "--file", f"document={tmp_path / 'missing.txt'}", "--url", UNREACHABLE),
        "--file",
        "FIELD=PATH",
    )
    assert_error(mieruka_cmd("submit", "read_upload", "--file", "document", "--url", UNREACHABLE), "--file")


# -- submit --------------------------------------------------------------------------------------


def test_submit_wait_prints_the_result(srv: ServerProcess) -> None:
    out = ok_json(cli(srv, "submit", "add", "a=2", "b=3", "--wait"))
    assert out["status"] == "succeeded"
    assert out["result"] == 5
    assert out["error"] is None
    assert isinstance(out["id"], int)


def test_submit_with_url_from_environment(srv: ServerProcess) -> None:
    out = ok_json(mieruka_cmd("submit", "add", "a=40", "--wait", env={"MIERUKA_URL": srv.url}))
    assert out["result"] == 42


def test_submit_failing_job_with_wait_exits_1(srv: ServerProcess) -> None:
    result = cli(srv, "submit", "fail", "message=kaboom", "--wait")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "failed"
    assert "kaboom" in out["error"]
    assert "Traceback" not in result.stderr


def test_submit_wait_timeout_exits_1_and_says_so(srv: ServerProcess, http: httpx.Client) -> None:
    started = time.monotonic()
    result = cli(srv, "submit", "sleep", "seconds=30", "--wait", "--timeout", "0.5")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    http.post(f"/api/jobs/{out['id']}/cancel")
    assert time.monotonic() - started < 15
    assert out["status"] in ("queued", "running")
    assert "still" in result.stderr and "Traceback" not in result.stderr


def test_submit_without_wait_prints_id_and_status(srv: ServerProcess, http: httpx.Client) -> None:
    out = ok_json(cli(srv, "submit", "add", "a=7", "b=8"))
    assert set(out) == {"id", "status", "url"}
    assert out["status"] in ("queued", "running", "succeeded")
    assert out["url"] == f"/api/jobs/{out['id']}"
    job = wait_status(http, out["id"], "succeeded")
    assert job["task"] == "add"
    assert job["params"] == {"a": 7, "b": 8}
    assert job["result"] == 15


def test_submit_uploads_a_file(srv: ServerProcess, tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_text("hello from the cli\n")
    out = ok_json(cli(srv, "submit", "read_upload", "--file", f"document={doc}", "--wait"))
    assert out["status"] == "succeeded", out
    assert out["result"]["name"] == "notes.txt"
    assert out["result"]["text"] == "hello from the cli\n"
    assert out["result"]["size"] == len("hello from the cli\n")


def test_submit_uploads_several_files_and_params(srv: ServerProcess, tmp_path: Path) -> None:
    paths = []
    for name in ("main.txt", "a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
        paths.append(tmp_path / name)
    out = ok_json(
        cli(
            srv,
            "submit",
            "read_upload",
            "--file",
            f"document={paths[0]}",
            "--file",
            f"extra={paths[1]}",
            "--file",
            f"extra={paths[2]}",
            "--wait",
        )
    )
    assert out["status"] == "succeeded", out
    assert out["result"]["text"] == "main.txt"
    assert out["result"]["extra"] == ["a.txt", "b.txt"]


def test_submit_values_are_parsed_as_json(srv: ServerProcess, http: httpx.Client) -> None:
    out = ok_json(
        cli(
            srv,
            "submit",
            "echo_types",
            'names=["x", "y"]',
            "flag=true",
            "count=7",
            "ratio=0.25",
            'window={"start": 3, "end": 4}',
            "text=hello world",
            "--wait",
        )
    )
    assert out["status"] == "succeeded", out
    types = out["result"]
    assert types["names"] == "list" and types["flag"] == "bool" and types["count"] == "int"
    assert types["window"] == "Window" and types["text"] == "str"
    params = http.get(f"/api/jobs/{out['id']}").json()["params"]
    assert params["names"] == ["x", "y"]
    assert params["flag"] is True
    assert params["count"] == 7
    assert params["ratio"] == 0.25
    assert params["window"] == {"start": 3, "end": 4}
    assert params["text"] == "hello world"


def test_submit_unknown_task(srv: ServerProcess) -> None:
    assert_error(cli(srv, "submit", "no_such_task", "--wait"), "no task named 'no_such_task'")


@pytest.mark.parametrize("name", ["..", ".", "../jobs", "add/../../jobs", "add?x=1", "add#x"])
def test_a_name_is_one_part_of_the_path_never_another_route(srv: ServerProcess, name: str) -> None:
    """A task, step or source name with "/", ".." or "?" in it reaches the server as one name: it
    is not found, and no job is made by another route (`../jobs` once posted to /api/jobs)."""
    before = httpx.get(f"{srv.url}/api/jobs", params={"limit": 1}, timeout=30).json()
    assert_error(cli(srv, "submit", name), code=1)  # "no task named ..." (with a "/": no such path)
    assert_error(cli(srv, "sources", "refresh", name), code=1)
    assert httpx.get(f"{srv.url}/api/jobs", params={"limit": 1}, timeout=30).json() == before


def test_submit_bad_parameter_names_the_field(srv: ServerProcess) -> None:
    line = assert_error(cli(srv, "submit", "echo_types", "count=lots", "--wait"), "count")
    assert "integer" in line
    assert_error(cli(srv, "submit", "add", "b=1"), "a")  # the required `a` is missing
    assert_error(cli(srv, "submit", "add", "a=1", "bogus=2"), "bogus")


# -- jobs ----------------------------------------------------------------------------------------


def test_jobs_ls_lists_filters_and_limits(srv: ServerProcess) -> None:
    good = [ok_json(cli(srv, "submit", "add", f"a={i}", "--wait"))["id"] for i in range(2)]
    bad = ok_json(cli(srv, "submit", "fail"))["id"]
    rows = table(cli(srv, "jobs", "ls", "--limit", "500"))
    by_id = {row["id"]: row for row in rows}
    for job_id in good:
        assert by_id[str(job_id)]["task"] == "add"
        assert by_id[str(job_id)]["status"] == "succeeded"
    ids = [int(row["id"]) for row in rows]
    assert ids == sorted(ids, reverse=True), "newest first"

    deadline = time.monotonic() + 20
    while True:
        failed = table(cli(srv, "jobs", "ls", "--status", "failed", "--limit", "500"))
        if str(bad) in {row["id"] for row in failed} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert str(bad) in {row["id"] for row in failed}
    assert all(row["status"] == "failed" for row in failed)
    assert not {str(i) for i in good} & {row["id"] for row in failed}
    failed_row = next(
        r for r in cli(srv, "jobs", "ls", "--status", "failed").stdout.splitlines() if r.split()[0] == str(bad)
    )
    assert "ValueError: boom" in failed_row  # the message column shows the error

    only_add = table(cli(srv, "jobs", "ls", "--task", "add", "--limit", "500"))
    assert {str(i) for i in good} <= {row["id"] for row in only_add}
    assert {row["task"] for row in only_add} == {"add"}

    both = table(cli(srv, "jobs", "ls", "--status", "failed,succeeded", "--task", "fail", "--limit", "500"))
    assert str(bad) in {row["id"] for row in both}
    assert {row["task"] for row in both} == {"fail"}

    assert len(table(cli(srv, "jobs", "ls", "--limit", "1"))) == 1
    assert table(cli(srv, "jobs", "ls", "--task", "no_such_task")) == []


def test_jobs_ls_unknown_status(srv: ServerProcess) -> None:
    assert_error(cli(srv, "jobs", "ls", "--status", "bogus"), "bogus")


def test_jobs_show(srv: ServerProcess) -> None:
    job_id = ok_json(cli(srv, "submit", "add", "a=1", "b=1", "--wait"))["id"]
    job = ok_json(cli(srv, "jobs", "show", str(job_id)))
    assert job["id"] == job_id
    assert job["task"] == "add"
    assert job["status"] == "succeeded"
    assert job["result"] == 2
    assert job["params"] == {"a": 1, "b": 1}
    assert "traceback" in job and "artifacts" in job


@pytest.mark.parametrize("action", ["show", "logs", "cancel", "retry", "rm"])
def test_jobs_unknown_id(srv: ServerProcess, action: str) -> None:
    assert_error(cli(srv, "jobs", action, "987654"), "no job with id 987654")


def test_jobs_logs(srv: ServerProcess) -> None:
    job_id = ok_json(cli(srv, "submit", "noisy", "lines=3", "--wait"))["id"]
    result = cli(srv, "jobs", "logs", str(job_id))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:3] == ["line 0", "line 1", "line 2"]
    assert "from job.log" in out
    assert "from a child process" in out
    assert "to stderr" in result.stderr.splitlines()  # stderr lines go to stderr
    assert "to stderr" not in out


def test_jobs_logs_follow_streams_until_the_job_ends(srv: ServerProcess, http: httpx.Client) -> None:
    lines = 100_000
    job_id = http.post("/api/tasks/many_lines/jobs", json={"lines": lines}).json()["id"]
    with subprocess.Popen(
        [sys.executable, "-m", "mieruka.cli", "jobs", "logs", str(job_id), "--follow", "--url", srv.url],
        cwd=TESTS.parent,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            first_at = time.time()
            stdout = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
            stderr = proc.stderr.read()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    job = http.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    out = [first.rstrip("\n"), *stdout.splitlines()]
    assert len(out) == lines, "every line, none twice"
    assert out[0].startswith("line 0 ")
    assert out[-1].startswith(f"line {lines - 1} ")
    finished_at = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()
    assert first_at < finished_at, "the first lines are printed while the job still runs"


def test_jobs_logs_follow_waits_for_a_quiet_job(srv: ServerProcess, http: httpx.Client) -> None:
    job_id = http.post("/api/tasks/sleep/jobs", json={"seconds": 1.5}).json()["id"]
    started = time.monotonic()
    result = cli(srv, "jobs", "logs", str(job_id), "--follow", timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1.0
    assert http.get(f"/api/jobs/{job_id}").json()["status"] == "succeeded"


def test_jobs_cancel_a_running_job(srv: ServerProcess, http: httpx.Client) -> None:
    job_id = submit_running(http)
    try:
        # Without --follow, logs of a running job print what there is and return.
        started = time.monotonic()
        assert cli(srv, "jobs", "logs", str(job_id)).returncode == 0
        assert time.monotonic() - started < 60  # returned while the job still runs (it would follow for minutes)
        out = ok_json(cli(srv, "jobs", "cancel", str(job_id)))
        assert out["id"] == job_id
        assert out["status"] in ("running", "cancelled")
        deadline = time.monotonic() + 30
        while (job := ok_json(cli(srv, "jobs", "show", str(job_id))))["status"] != "cancelled":
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["finished_at"] is not None
    finally:
        http.post(f"/api/jobs/{job_id}/cancel")


def test_jobs_cancel_finished_job_is_an_error(srv: ServerProcess) -> None:
    job_id = ok_json(cli(srv, "submit", "add", "a=1", "--wait"))["id"]
    assert_error(cli(srv, "jobs", "cancel", str(job_id)), str(job_id))


def test_jobs_retry(srv: ServerProcess, http: httpx.Client, tmp_path: Path) -> None:
    # Fails three times (its two retries included), then succeeds on the first attempt of a retry.
    marker = tmp_path / "marker"
    result = cli(srv, "submit", "fail_then_succeed", f"marker={marker}", "failures=3", "--wait")
    assert result.returncode == 1, result.stderr
    first = json.loads(result.stdout)
    assert first["status"] == "failed"
    assert "failure 3" in first["error"]
    out = ok_json(cli(srv, "jobs", "retry", str(first["id"])))
    assert out["id"] == first["id"]
    assert out["status"] in ("queued", "running", "succeeded")
    job = wait_status(http, first["id"], "succeeded", "failed")
    assert job["status"] == "succeeded", job
    # Attempts keep counting across the retry, which brings a fresh set of 1 + 2 retries.
    assert job["result"] == 4 == job["attempts"]
    assert job["max_attempts"] == 6


def test_jobs_retry_a_succeeded_job_is_an_error(srv: ServerProcess) -> None:
    job_id = ok_json(cli(srv, "submit", "add", "a=1", "--wait"))["id"]
    assert_error(cli(srv, "jobs", "retry", str(job_id)), "retried")


def test_jobs_rm(srv: ServerProcess) -> None:
    job_id = ok_json(cli(srv, "submit", "add", "a=1", "--wait"))["id"]
    result = cli(srv, "jobs", "rm", str(job_id))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deleted job {job_id}"
    assert_error(cli(srv, "jobs", "show", str(job_id)), f"no job with id {job_id}")
    assert str(job_id) not in {row["id"] for row in table(cli(srv, "jobs", "ls", "--limit", "500"))}


def test_jobs_rm_a_running_job_is_refused(srv: ServerProcess, http: httpx.Client) -> None:
    job_id = submit_running(http)
    try:
        assert_error(cli(srv, "jobs", "rm", str(job_id)), "cancel it")
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "running"
    finally:
        http.post(f"/api/jobs/{job_id}/cancel")
        wait_status(http, job_id, "cancelled")


def test_text_parameters_keep_what_was_typed(srv: ServerProcess) -> None:
    """name=42 for a str parameter stays "42" (JSON parsing is only for non-text parameters)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mieruka.cli",
            "submit",
            "echo_types",
            "text=123",
            "count=4",
            "--wait",
            "--url",
            srv.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["text"] == "str"


def test_run_of_a_broken_app_is_one_line_with_the_line_number(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import mieruka\napp = mieruka.App('x')\nundefined_name + 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", "run", str(broken), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"mieruka: cannot load {broken}: line 3: NameError: name 'undefined_name' is not defined"
    ]


def test_jobs_steps_and_a_steps_log(srv: ServerProcess) -> None:
    job_id = ok_json(cli(srv, "submit", "pipe_values", "text=b a", "--wait"))["id"]
    result = cli(srv, "jobs", "steps", str(job_id))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0][:3] == ["STEP", "KIND", "STATUS"]
    assert [row[:3] for row in rows[1:]] == [
        ["count", "python", "succeeded"],
        ["sort", "shell", "succeeded"],
        ["read", "python", "succeeded"],
    ]
    step_log = cli(srv, "jobs", "logs", str(job_id), "--step", "sort")
    assert step_log.stdout.splitlines() == ["first word: b"]
    assert "[sort] first word: b" in cli(srv, "jobs", "logs", str(job_id)).stdout.splitlines()
    missing = cli(srv, "jobs", "logs", str(job_id), "--step", "nope")
    assert missing.returncode != 0 and "no step named 'nope'" in missing.stderr


# -- issue 16: the newcomer's first hour -------------------------------------------------------------


def test_submit_takes_parameters_before_between_and_after_options(srv: ServerProcess) -> None:
    """As the README's `submit align --file reads=reads.fa reference=mm10 --wait` (run as it is by
    tests/servers/test_docs_commands.py)."""
    assert ok_json(cli(srv, "submit", "add", "a=2", "--wait", "b=3"))["result"] == 5
    assert ok_json(cli(srv, "submit", "add", "--wait", "a=4", "b=5"))["result"] == 9
    assert ok_json(cli(srv, "submit", "add", "--timeout", "60", "a=6", "--wait", "b=7"))["result"] == 13


def test_submit_still_refuses_unknown_options() -> None:
    result = mieruka_cmd("submit", "add", "a=1", "--bogus", "--url", UNREACHABLE)
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr
    other = mieruka_cmd("jobs", "ls", "stray", "--url", UNREACHABLE)
    assert other.returncode == 2 and "unrecognized arguments: stray" in other.stderr


@pytest.mark.parametrize("command", [["run", str(TESTS / "jobs.py")], ["demo"]])
def test_a_busy_port_is_one_line_before_anything_is_printed(tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as holder:  # whatever holds the port: no login link may point at it
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = mieruka_cmd(*command, "--port", str(port), "--home", str(tmp_path / "home"), cwd=tmp_path)
        assert_error(result, f"port {port} on 127.0.0.1 is already in use", "--port")
    assert not (tmp_path / "home").exists(), "nothing made before the port was known to be free"


def test_account_commands_without_a_database_say_where_they_looked(tmp_path: Path) -> None:
    expected = tmp_path / ".mieruka" / "mieruka.db"
    line = assert_error(
        mieruka_cmd("tokens", "create", "--user", "demo", cwd=tmp_path),
        "no user named 'demo'",
        f"no database at {expected}",
        "the default home",
        "MIERUKA_HOME",
    )
    assert "--home" in line
    elsewhere = tmp_path / "elsewhere"
    assert_error(
        mieruka_cmd("users", "ls", cwd=tmp_path, env={"MIERUKA_HOME": str(elsewhere)}),
        f"no database at {elsewhere / 'mieruka.db'}",
        "from MIERUKA_HOME or the config file",
    )
    assert_error(
        mieruka_cmd("tokens", "revoke", "3", "--home", str(elsewhere), cwd=tmp_path),
        "no token with id 3",
        "from --home",
    )
    assert list(tmp_path.iterdir()) == [], "nothing created"
    # A failed `users add` leaves no database behind; a good one says it made one, and where.
    assert_error(
        mieruka_cmd("users", "add", "ada", "--role", "boss", "--no-password", cwd=tmp_path), "unknown role 'boss'"
    )
    assert not expected.exists()
    added = mieruka_cmd("users", "add", "ada", "--role", "admin", "--no-password", cwd=tmp_path)
    assert added.returncode == 0 and added.stdout == "added ada (admin)\n", added.stderr
    assert (
        added.stderr == f"mieruka: created a new database at {expected} (data in {expected.parent} "
        "(the default home; --home or MIERUKA_HOME to change))\n"
    )
    again = mieruka_cmd("users", "add", "bob", "--no-password", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""


def test_the_home_comes_from_the_flag_then_the_environment_then_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "mieruka.toml").write_text('home = "from-config"\n')
    for where in ("from-config", "from-env", "from-flag"):
        (tmp_path / where).mkdir()
    assert mieruka_cmd("users", "add", "c", "--no-password", cwd=tmp_path).returncode == 0
    assert (
        mieruka_cmd(
            "users", "add", "e", "--no-password", cwd=tmp_path, env={"MIERUKA_HOME": str(tmp_path / "from-env")}
        ).returncode
        == 0
    )
    assert (
        mieruka_cmd(
            "users",
            "add",
            "f",
            "--no-password",
            "--home",
            str(tmp_path / "from-flag"),
            cwd=tmp_path,
            env={"MIERUKA_HOME": str(tmp_path / "from-env")},
        ).returncode
        == 0
    )
    for where, user in (("from-config", "c"), ("from-env", "e"), ("from-flag", "f")):
        listed = mieruka_cmd("users", "ls", "--home", str(tmp_path / where), cwd=tmp_path)
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [user], (where, listed)


def test_login_links_use_the_served_address_and_root_path_or_public_url(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert mieruka_cmd("users", "add", "ada", "--role", "admin", "--no-password", "--home", home).returncode == 0

    def link(*extra: str, env: dict[str, str] | None = None) -> str:
        result = mieruka_cmd("users", "link", "ada", "--home", home, *extra, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert re.fullmatch(r"http://127\.0\.0\.1:8000/login/link/mrk_\S+", link())
    assert re.fullmatch(
        r"http://127\.0\.0\.1:8123/lab/login/link/mrk_\S+",
        link(env={"MIERUKA_PORT": "8123", "MIERUKA_ROOT_PATH": "/lab"}),
    )
    assert re.fullmatch(
        r"http://127\.0\.0\.1:8124/login/link/mrk_\S+", link(env={"MIERUKA_PORT": "8124", "MIERUKA_HOST": "0.0.0.0"})
    )
    assert re.fullmatch(
        r"https://lab\.example\.org/mieruka/login/link/mrk_\S+",
        link(env={"MIERUKA_PUBLIC_URL": "https://lab.example.org/mieruka/", "MIERUKA_PORT": "1"}),
    )
    assert re.fullmatch(r"https://x\.example/login/link/mrk_\S+", link("--url", "https://x.example/"))
    # An address that is not the web's: one line, and no link made (the audit log shows none).
    for bad in ("javascript:alert(1)", "lab.example.org", "https://"):
        result = mieruka_cmd("users", "link", "ada", "--home", home, "--url", bad)
        assert result.returncode == 1 and result.stdout == "", result.stdout
        assert result.stderr.strip() == f"mieruka: --url must be an http:// or https:// address, got {bad!r}"
    made = (
        sqlite3.connect(Path(home) / "mieruka.db")
        .execute("SELECT count(*) FROM audit_log WHERE action = 'user.link'")
        .fetchone()[0]
    )
    assert made == 5, made


def test_a_login_link_names_the_port_a_running_server_was_given(tmp_path: Path) -> None:
    """`mieruka run --port N` with nothing in the settings: the link the CLI prints is that server's."""
    home = tmp_path / "home"
    assert mieruka_cmd("users", "add", "ada", "--role", "admin", "--no-password", "--home", str(home)).returncode == 0
    with running_server(home, "--workers", "1", "--root-path", "/lab") as server:
        result = mieruka_cmd("users", "link", "ada", "--home", str(home))
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert url.startswith(f"{server.url}/lab/login/link/"), url
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and 'name="csrf_token"' in page.text, page.text
    after = mieruka_cmd("users", "link", "ada", "--home", str(home)).stdout.strip()
    assert after.startswith("http://127.0.0.1:8000/login/link/"), after  # it stopped: the settings' address


def test_a_login_link_works_on_a_server_under_a_path_prefix(tmp_path: Path) -> None:
    """The server and the CLI read one config file: the link is the server's, prefix included."""
    port = free_port()
    (tmp_path / "mieruka.toml").write_text(f'port = {port}\nroot_path = "/lab"\nhome = "data"\n')
    assert mieruka_cmd("users", "add", "ada", "--role", "admin", "--no-password", cwd=tmp_path).returncode == 0
    with (
        (tmp_path / "server.log").open("w") as log,
        subprocess.Popen(
            [sys.executable, "-m", "mieruka.cli", "run", str(TESTS / "jobs.py"), "--workers", "1"],
            cwd=tmp_path,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as server,
    ):
        try:
            wait_healthy(f"http://127.0.0.1:{port}", server, (tmp_path / "server.log").read_text, timeout=60)
            output = (tmp_path / "server.log").read_text()
            assert f"data in {tmp_path / 'data'} (from MIERUKA_HOME or the config file)" in output
            result = mieruka_cmd("users", "link", "ada", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            url = result.stdout.strip()
            assert url.startswith(f"http://127.0.0.1:{port}/lab/login/link/"), url
            page = httpx.get(url, timeout=30)
            assert page.status_code == 200 and 'name="csrf_token"' in page.text, page.text
        finally:
            server.terminate()
            server.wait(timeout=30)
