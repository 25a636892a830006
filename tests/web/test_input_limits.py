"""Bad input is a 4xx, never a 5xx, a stall or a leak: the limits of web/limits.py, and property-based
tests (hypothesis) of path ids, job filters and JSON bodies against the guarded app in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mieruka.core.params import holds_nul
from mieruka.web.ids import parse_id
from mieruka.web.limits import Limits, Refused, check_json
from tests.guarded_app import JOB_SECRET, SECRET_TASK

LIMITS = Limits(body_size=1024 * 1024, json_depth=8, json_keys=50)
PASSWORD = "a long password"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=40,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(keys(v) for v in value)
    return 0


@given(JSON)
@settings(max_examples=300, deadline=None)
def test_check_json_refuses_exactly_what_is_over_a_limit(value: Any) -> None:
    body = json.dumps(value).encode()
    over = depth(value) > LIMITS.json_depth or keys(value) > LIMITS.json_keys or holds_nul(value)
    try:
        check_json(body, LIMITS)
    except Refused as refused:
        assert refused.status == 422 and over, (value, refused.message)


def test_a_deep_body_is_refused_before_any_parser_recurses() -> None:
    for body in (b"[" * 200_000, b'{"a":' * 100_000, b"[" * 5 + b'"[[[[[[[[[[[["' + b"]" * 5):
        try:
            check_json(body, LIMITS)
        except Refused as refused:
            assert "nested deeper" in refused.message or "keys" in refused.message
        else:
            assert body.startswith(b'[[[[["')  # brackets inside a string do not count


def test_keys_inside_strings_do_not_count() -> None:
    check_json(json.dumps({"a": "x:" * 1000}).encode(), LIMITS)
    with pytest.raises(Refused, match="more than 50 keys"):
        check_json(json.dumps({f"k{i}": 0 for i in range(51)}).encode(), LIMITS)


# -- the app, in process ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.guarded_app import app

    home: Path = tmp_path_factory.mktemp("limits") / "home"
    app._settings = None
    app.configure(home=str(home), workers=1, poll_interval=0.2, max_json_keys=200)
    with TestClient(app.asgi()) as client:
        accounts = app.auth.accounts
        tokens = {}
        for name, role in (("otto", "operator"), ("olga", "operator")):
            accounts.add_user(name, role, PASSWORD)
            tokens[name] = {"Authorization": f"Bearer {accounts.create_token(name, 't')[1]}"}
        secret, _ = app.engine.submit(SECRET_TASK, {}, owner="olga")
        mine, _ = app.engine.submit("add", {"a": 1}, owner="otto")
        for job in (secret, mine):
            assert app.engine.wait(job.id, 60).status.value == "succeeded"
        yield {"client": client, "tokens": tokens, "secret": secret.id, "mine": mine.id}
    app._settings = None


def never_leaks(response: Any) -> None:
    assert response.status_code < 500, response.text[:300]
    assert JOB_SECRET not in response.text and SECRET_TASK not in response.text.replace(f"'{SECRET_TASK}'", "")


# Any text as one path segment ("/" and dot segments would make another path, not another id).
SEGMENTS = st.text(min_size=1, max_size=12).filter(lambda t: "/" not in t and t not in (".", "..")) | st.sampled_from(
    ["+1", " 1", "1 ", "1\n", "01", "١", "1e0", "0x1", "-1", "1%00", "9" * 30]
)


@given(segment=SEGMENTS)
@FUZZ
def test_any_job_id_in_a_path(guarded: dict[str, Any], segment: str) -> None:
    client, otto = guarded["client"], guarded["tokens"]["otto"]
    for suffix in ("", "/logs", "/artifacts", "/steps", "/cancel"):
        method = "POST" if suffix == "/cancel" else "GET"
        response = client.request(method, f"/api/jobs/{quote(segment, safe='')}{suffix}", headers=otto)
        never_leaks(response)
        if response.status_code < 400:
            assert parse_id(segment) == guarded["mine"], (segment, response.status_code)


@given(
    params=st.dictionaries(
        st.sampled_from(["task", "status", "owner", "q", "cursor", "limit", "created_after", "created_before"]),
        st.text(max_size=30),
        max_size=5,
    )
)
@FUZZ
def test_any_job_filter(guarded: dict[str, Any], params: dict[str, str]) -> None:
    client, otto = guarded["client"], guarded["tokens"]["otto"]
    for url in ("/api/jobs", "/jobs"):
        response = client.get(url, params=params, headers=otto)
        never_leaks(response)
        if response.status_code == 200 and url == "/api/jobs":
            assert all(job["task"] != SECRET_TASK for job in response.json()["jobs"])


@given(body=JSON)
@FUZZ
def test_any_json_body(guarded: dict[str, Any], body: Any) -> None:
    client, otto = guarded["client"], guarded["tokens"]["otto"]
    for task in ("add", SECRET_TASK):
        response = client.post(
            f"/api/tasks/{task}/jobs", content=json.dumps(body), headers={**otto, "content-type": "application/json"}
        )
        never_leaks(response)
        if task == SECRET_TASK:
            assert response.status_code == 403
        elif response.status_code == 202:
            client.post(f"/api/jobs/{response.json()['id']}/cancel", headers=otto)


def test_hostile_bodies_answer_fast_and_small(guarded: dict[str, Any]) -> None:
    client, otto = guarded["client"], guarded["tokens"]["otto"]
    json_headers = {**otto, "content-type": "application/json"}
    million_keys = "{" + ",".join(f'"k{i}":0' for i in range(1_000_000)) + "}"  # 12 MB
    cases = [
        ("[" * 100_000 + "]" * 100_000, "/api/tasks/add/jobs", 422, "nested deeper"),
        ("[" * 100_000 + "]" * 100_000, "/api/tokens", 422, "nested deeper"),
        (million_keys, "/api/tasks/add/jobs", 422, "more than 200 keys"),  # files may come as base64 here
        (million_keys, "/api/tasks/add/run", 422, "more than 200 keys"),
        (million_keys, "/api/tokens", 413, "the limit is 4,194,304"),
        (json.dumps({"a": 1, "b": "nul\u0000"}), "/api/tasks/add/jobs", 422, "NUL"),
        (json.dumps({"name": "nul\u0000"}), "/api/tokens", 422, "NUL"),
    ]
    for body, url, status, words in cases:
        response = client.post(url, content=body, headers=json_headers)
        assert response.status_code == status and words in response.text, (url, response.text[:200])
        assert len(response.content) < 5000
    many = json.dumps({f"k{i}": 0 for i in range(150)})  # under the key limit: each named, the list capped
    response = client.post("/api/tasks/add/jobs", content=many, headers=json_headers)
    error = response.json()["error"]
    assert response.status_code == 422 and len(error["fields"]) == 50 and error["more_fields"] > 0
    big = b'{"a": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    assert client.post("/api/tokens", content=big, headers=json_headers).status_code == 413


@pytest.mark.parametrize(
    "url", ["/api/jobs?q=a%00b", "/api/jobs?owner=%00", "/api/audit?actor=x%00", "/jobs?task=%00", "/api/users?x=%00"]
)
def test_nul_in_a_query_is_refused(guarded: dict[str, Any], url: str) -> None:
    response = guarded["client"].get(url, headers=guarded["tokens"]["otto"])
    assert response.status_code == 422 and "NUL" in response.text


def test_nul_in_forms_and_parameters_is_refused(guarded: dict[str, Any]) -> None:
    from tests.guarded_app import app

    client, otto, olga = guarded["client"], guarded["tokens"]["otto"], guarded["tokens"]["olga"]
    urlencoded = client.post("/account/tokens", data={"name": "ci\x00"}, headers=otto)
    assert urlencoded.status_code == 422 and "NUL" in urlencoded.text
    multipart = client.post("/account/tokens", files={"name": (None, "ci\x00")}, headers=otto)
    assert multipart.status_code == 422 and "NUL" in multipart.text
    in_a_job = client.post(f"/api/tasks/{SECRET_TASK}/jobs", files={"secret": (None, "a\x00b")}, headers=olga)
    assert in_a_job.status_code == 422 and "NUL" in in_a_job.text
    a_file = client.post("/api/tasks/add/jobs", files={"a": (None, "1"), "junk": ("x.bin", b"\x00\x01")}, headers=otto)
    assert "NUL" not in a_file.text and "junk" in a_file.text, a_file.text  # files may hold any bytes
    with pytest.raises(Exception, match="NUL"):  # the Python API and the CLI refuse it the same way
        app.engine.submit(SECRET_TASK, {"secret": "a\x00b"})


@pytest.mark.parametrize("path", ["/api/jobs/1%0A", "/api/jobs/1%09", "/api/jobs/%0D1", "/jobs/1%00"])
def test_control_characters_in_a_path_name_nothing(guarded: dict[str, Any], path: str) -> None:
    response = guarded["client"].get(path, headers=guarded["tokens"]["otto"])
    assert response.status_code == 404
