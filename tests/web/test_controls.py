"""Pressing a dashboard's control (POST /api/dashboards/{name}/controls/{control}, web/controls.py)
in-process on tests/controls_app.py: who may press (roles, the task's and the dashboard's allow
lists), bad values, unknown names, CSRF for browser sessions, a failing task's error, the audit
entry, and the device's state on the page and after a press."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mieruka.web.csrf import CSRF_FIELD

PASSWORD = "a long password"
USERS = {"vic": "viewer", "otto": "operator", "olga": "operator", "ada": "admin"}
PANEL = "/api/dashboards/panel/controls"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("controls")
    monkeypatch = pytest.MonkeyPatch()
    import tests.controls_app as module

    monkeypatch.setattr(module, "DIR", folder / "device")
    app = module.app
    app._settings = None
    app.configure(home=str(folder / "home"), executor="threads", workers=2, poll_interval=0.2)
    try:
        with TestClient(app.asgi()) as client:
            tokens = {}
            for name, role in USERS.items():
                app.auth.accounts.add_user(name, role, PASSWORD)
                tokens[name] = app.auth.accounts.create_token(name, "tests")[1]
            yield {"app": app, "client": client, "tokens": tokens, "device": folder / "device" / "device.json"}
    finally:
        app._settings = None
        monkeypatch.undo()


def as_(served: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served['tokens'][who]}"} if who in served["tokens"] else {}


def press(served: dict[str, Any], who: str, control: str, body: Any = None, board: str = "panel") -> Any:
    client: TestClient = served["client"]
    return client.post(f"/api/dashboards/{board}/controls/{control}", json=body, headers=as_(served, who))


def test_every_role(served: dict[str, Any]) -> None:
    refused = press(served, "anonymous", "relay-1", {"value": True})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"
    viewer = press(served, "vic", "relay-1", {"value": True})
    assert viewer.status_code == 403 and "operator" in viewer.json()["error"]["message"]
    for who, value in (("otto", True), ("ada", False)):
        answer = press(served, who, "relay-1", {"value": value})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["state"] == "succeeded" and body["result"] == {"relay": 1, "on": value}
        assert body["error"] is None and body["url"] == f"/jobs/{body['job']}"
        assert answer.headers["location"] == f"/api/jobs/{body['job']}"
        job = served["app"].get_job(body["job"])
        assert job.params == {"relay": 1, "on": value} and job.owner == who


def test_the_tasks_allow_list(served: dict[str, Any]) -> None:
    refused = press(served, "otto", "unlock-door-1", {})
    assert refused.status_code == 403
    # The hidden task is not named: the message speaks of the control.
    assert refused.json()["error"]["message"] == "otto may not use control 'unlock-door-1'"
    for who in ("olga", "ada"):
        answer = press(served, who, "unlock-door-1", {})
        assert answer.status_code == 200 and answer.json()["result"] == "door 1 open", answer.text


def test_the_dashboards_allow_list(served: dict[str, Any]) -> None:
    assert press(served, "otto", "reset", {}, board="locked").status_code == 403
    assert press(served, "olga", "reset", {}, board="locked").json()["state"] == "succeeded"


@pytest.mark.parametrize(
    ("control", "body", "message"),
    [
        ("relay-1", {"value": "on"}, "a toggle takes true or false"),
        ("relay-1", {}, "a toggle needs a value"),
        ("fan", {"value": 120}, "above the maximum 100"),
        ("fan", {"value": 33}, "not a multiple of the step 5"),
        ("set-target", {"value": 9.5}, "below the minimum 10"),
        ("set-mode", {"value": "turbo"}, "'turbo' is not one of 'auto', 'manual', 'off'"),
        ("reset-board", {"value": 1}, "a button takes no value"),
        ("blink-led-2", {"params": {"led": 5}}, "fixed by the control"),
        ("blink-led-2", {"params": {"times": "many"}}, "times"),
        ("relay-1", {"value": True, "relay": 2}, "unknown key 'relay'"),
        ("relay-1", [True], "must be a JSON object"),
        ("relay-1", {"params": [1]}, "params must be a JSON object"),
    ],
)
def test_bad_values_are_422(served: dict[str, Any], control: str, body: Any, message: str) -> None:
    answer = press(served, "otto", control, body)
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]["message"]


def test_a_body_that_is_no_json_is_422(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    headers = {**as_(served, "otto"), "Content-Type": "application/json"}
    answer = client.post(f"{PANEL}/relay-1", content=b"{nope", headers=headers)
    assert answer.status_code == 422 and "not valid JSON" in answer.json()["error"]["message"]
    form = client.post(f"{PANEL}/relay-1", data={"value": "true"}, headers=as_(served, "otto"))
    assert form.status_code == 422 and "a toggle takes JSON" in form.json()["error"]["message"]


def test_a_form_control_takes_no_files(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    files = {"times": (None, "2"), "note": ("note.txt", b"a file", "text/plain")}
    answer = client.post(f"{PANEL}/blink-led-2", files=files, headers=as_(served, "otto"))
    assert answer.status_code == 422 and "it sends no files" in answer.json()["error"]["message"]
    broken = {**as_(served, "otto"), "Content-Type": "multipart/form-data; boundary=x"}
    answer = client.post(f"{PANEL}/blink-led-2", content=b"--x\r\nbroken", headers=broken)
    assert answer.status_code == 422  # never a run with the defaults


def test_unknown_dashboard_or_control_is_404(served: dict[str, Any]) -> None:
    assert press(served, "otto", "relay-1", {"value": True}, board="nowhere").status_code == 404
    missing = press(served, "otto", "self-destruct", {})
    assert missing.status_code == 404 and "no control 'self-destruct'" in missing.json()["error"]["message"]


def test_a_failing_task_answers_with_its_error(served: dict[str, Any]) -> None:
    answer = press(served, "otto", "overheat", {})
    assert answer.status_code == 200
    body = answer.json()
    assert body["state"] == "failed" and body["result"] is None
    assert body["error"] == "RuntimeError: the board is too hot to switch"


def test_a_form_posts_its_fields_as_json_or_as_a_form(served: dict[str, Any]) -> None:
    answer = press(served, "otto", "blink-led-2", {"params": {"times": 2}})
    assert answer.json()["result"] == "LED 2 blinked 2 times"
    client: TestClient = served["client"]
    posted = client.post(f"{PANEL}/blink-led-2", data={"times": "4", "note": "hi"}, headers=as_(served, "otto"))
    assert posted.status_code == 200 and posted.json()["result"] == "LED 2 blinked 4 times", posted.text
    job = served["app"].get_job(posted.json()["job"])
    assert job.params == {"led": 2, "times": 4, "note": "hi"}


def test_a_browser_session_needs_the_csrf_token(served: dict[str, Any]) -> None:
    app = served["app"]
    with TestClient(app.asgi()) as browser:
        page = browser.get("/login")
        login = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert login, page.text
        form = {CSRF_FIELD: login.group(1), "name": "olga", "password": PASSWORD}
        assert browser.post("/login", data=form, follow_redirects=False).status_code == 303
        token = browser.get("/api/me").json()["csrf_token"]
        without = browser.post(f"{PANEL}/relay-2", json={"value": True})
        assert without.status_code == 403 and without.json()["error"]["code"] == "csrf_failed"
        wrong = browser.post(f"{PANEL}/relay-2", json={"value": True}, headers={"X-CSRF-Token": token + "x"})
        assert wrong.status_code == 403
        right = browser.post(f"{PANEL}/relay-2", json={"value": True}, headers={"X-CSRF-Token": token})
        assert right.status_code == 200 and right.json()["state"] == "succeeded"


def test_a_press_is_audited(served: dict[str, Any]) -> None:
    job = press(served, "olga", "set-mode", {"value": "manual"}).json()["job"]
    client: TestClient = served["client"]
    entries = client.get("/api/audit", params={"limit": 50}, headers=as_(served, "ada")).json()["entries"]
    mine = [e for e in entries if e["action"] == "control.press" and e["target"] == f"job:{job}"]
    assert len(mine) == 1 and mine[0]["actor"] == "olga", entries[:3]
    detail = mine[0]["detail"]
    assert {k: detail[k] for k in ("dashboard", "control", "task", "params", "job", "outcome")} == {
        "dashboard": "panel",
        "control": "set-mode",
        "task": "set_mode",
        "params": {"mode": "manual"},
        "job": job,
        "outcome": "succeeded",
    }
    assert isinstance(detail["duration"], float) and detail["duration"] >= 0
    failed = press(served, "olga", "overheat", {}).json()["job"]
    entries = client.get("/api/audit", params={"limit": 50}, headers=as_(served, "ada")).json()["entries"]
    assert [e["detail"]["outcome"] for e in entries if e["target"] == f"job:{failed}"] == ["failed"]
    # A refused press changes nothing and records nothing.
    before = len(client.get("/api/audit", params={"limit": 500}, headers=as_(served, "ada")).json()["entries"])
    assert press(served, "vic", "set-mode", {"value": "off"}).status_code == 403
    after = len(client.get("/api/audit", params={"limit": 500}, headers=as_(served, "ada")).json()["entries"])
    assert after == before


def state_of(served: dict[str, Any], control: str) -> Any:
    client: TestClient = served["client"]
    tiles = client.get("/api/dashboards/panel", headers=as_(served, "vic")).json()["tiles"]
    return next(t for t in tiles if t["kind"] == "state" and t["control"] == control)


def wait_state(served: dict[str, Any], control: str, value: Any, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        tile = state_of(served, control)
        if tile["value"] == value:
            return tile
        assert time.monotonic() < deadline, f"{control} stayed {tile['value']!r}, expected {value!r}"
        time.sleep(0.05)


def test_the_state_follows_a_press_and_shows_on_the_page(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    assert press(served, "otto", "set-target", {"value": 25.5}).json()["state"] == "succeeded"
    wait_state(served, "set-target", 25.5)
    assert press(served, "otto", "set-mode", {"value": "off"}).json()["result"] == "off"
    wait_state(served, "set-mode", "off")
    page = client.get("/dashboards/panel", headers=as_(served, "otto")).text
    target = section(page, "set-target")
    assert 'value="25.5"' in target and 'now: <span class="control-value">25.5</span>' in target
    assert re.search(r'<option value="2" selected>off</option>', section(page, "set-mode"))
    assert 'data-state-source="relays" data-state-column="target"' in target
    fan = section(page, "fan")  # its state is a stream's series
    assert 'data-state-stream="true"' in fan and 'type="range"' in fan


def test_a_press_refreshes_the_state_source_at_once(served: dict[str, Any]) -> None:
    """`levels` refreshes on demand only: the new level shows because the press asked for a read."""
    first = wait_state(served, "level", 0)
    for level in (7, 3):
        assert press(served, "otto", "level", {"value": level}).json()["state"] == "succeeded"
        tile = wait_state(served, "level", level)
        assert tile["attempts"] > first["attempts"]


def test_a_press_samples_the_state_stream_at_once(served: dict[str, Any]) -> None:
    """`dial` samples every 120 s: the new position shows because the press asked for a value."""
    client: TestClient = served["client"]
    for position in (42, 17):
        assert press(served, "otto", "dial", {"value": position}).json()["state"] == "succeeded"
        deadline = time.monotonic() + 10
        while True:
            points = client.get("/api/streams/dial/points", headers=as_(served, "vic")).json()
            if points["series"].get("position", [None])[-1] == position:
                break
            assert time.monotonic() < deadline, f"the dial stream never showed {position}: {points}"
            time.sleep(0.05)


def section(page: str, control: str) -> str:
    start = page.index(f'id="control-{control}"')
    return page[start : page.index("</article>", start)]


def test_what_each_reader_may_do_on_the_page(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    viewer = client.get("/dashboards/panel", headers=as_(served, "vic")).text
    for control in ("relay-1", "fan", "set-target", "set-mode", "reset-board", "blink-led-2", "unlock-door-1"):
        part = section(viewer, control)
        assert '<fieldset class="control-body" disabled' in part, control
        assert "Operators can use this control" in part, control
    otto = client.get("/dashboards/panel", headers=as_(served, "otto")).text
    assert "disabled" not in section(otto, "relay-1")
    unlock = section(otto, "unlock-door-1")
    assert "disabled" in unlock and "Your account may not run what this control does" in unlock
    olga = client.get("/dashboards/panel", headers=as_(served, "olga")).text
    assert "disabled" not in section(olga, "unlock-door-1")
    reset = section(olga, "reset-board")
    assert 'data-confirm="Reset the board now?"' in reset and "dangerous" in reset
    form = section(olga, "blink-led-2")
    assert 'name="times"' in form and 'name="led"' not in form  # led is fixed
    assert '<dialog id="control-confirm"' in olga


def test_why_a_control_is_disabled_names_the_role_it_needs() -> None:
    """A viewer is told who may press: operators, or admins where the task admits admins only (the
    device panel's reset said "Operators can use this control", which an operator could not)."""
    from mieruka.core.access import Principal, Role
    from mieruka.core.task import make_task
    from mieruka.web.controls import why_not

    def press() -> None:
        return None

    allows = {"anyone": None, "admins": ["admin"], "olga": ["olga", "admin"], "ops": ["operator"]}
    tasks = {name: make_task(press, name=name, allow=allow) for name, allow in allows.items()}
    said = {
        (name, role.value): why_not(Principal(role.value, role, "token"), tasks[name])
        for name in tasks
        for role in Role
    }
    ops, admins = "Operators can use this control", "Admins can use this control"
    assert said == {
        ("anyone", "viewer"): ops,
        ("anyone", "operator"): None,
        ("anyone", "admin"): None,
        ("admins", "viewer"): admins,
        ("admins", "operator"): admins,
        ("admins", "admin"): None,
        ("olga", "viewer"): ops,
        ("olga", "operator"): "Your account may not run what this control does",
        ("olga", "admin"): None,
        ("ops", "viewer"): ops,
        ("ops", "operator"): None,
        ("ops", "admin"): None,
    }
    assert why_not(None, tasks["admins"]) == "Log in as an operator to use this control"


def test_the_dashboards_page_counts_the_controls(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    page = client.get("/dashboards", headers=as_(served, "olga")).text
    board = served["app"].dashboards.get("panel")
    counts = (
        f'<span class="tag">{len(board.charts)} charts</span> <span class="tag">{len(board.controls)} controls</span>'
    )
    assert counts in page and len(board.controls) > 10
    assert '<span class="tag">1 chart</span> <span class="tag">1 control</span>' in page


def test_the_kiosk_layout_shows_no_controls(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    page = client.get("/dashboards/panel", params={"kiosk": "1"}, headers=as_(served, "olga")).text
    assert 'id="tile-relay-1"' in page and 'id="tile-sensors"' in page  # the charts stay
    assert 'class="tile control' not in page and "control-confirm" not in page


def test_without_its_controls_a_dashboard_leaves_no_holes() -> None:
    """A chart that ends a row short because the next no longer fits runs to the row's end where
    the controls are left out (the device panel's temperature chart sat beside its reset button);
    the last row stays as declared."""
    from mieruka.core.controls import Control
    from mieruka.core.dashboards import Chart, Dashboard
    from mieruka.web.ui.dashboards import spans_without_controls

    items = (
        Control("button", "reset", title="Reset"),
        Chart("stream", "temperature", span=3),
        Chart("stream", "relays", span=2),
        Chart("stream", "levels", span=2),
        Chart("kpi", "rooms", value="people"),
        Chart("kpi", "doors", value="open", span=2),
    )
    board = Dashboard("panel", "Panel", items, columns=4)
    assert spans_without_controls(board) == {
        "stream-temperature": 4,
        "stream-relays": 2,
        "stream-levels": 2,
        "kpi-rooms": 1,
        "kpi-doors": 2,
    }


def test_the_pages_without_controls_use_those_spans(tmp_path: Path) -> None:
    import mieruka
    from mieruka import charts, controls

    app = mieruka.App("wall")

    @app.task(quick=True)
    def ping() -> str:
        return "pong"

    @app.stream(every=60)
    def temperature() -> dict[str, float]:
        return {"celsius": 20.0}

    app.dashboard(
        "panel",
        [controls.button(ping), charts.stream(temperature, span=2), charts.stream(temperature, span=2)],
        columns=3,
        public=True,
    )
    app.configure(home=str(tmp_path / "home"), executor="threads")
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("otto", "operator", PASSWORD)
        otto = {"Authorization": f"Bearer {app.auth.accounts.create_token('otto', 'tests')[1]}"}
        spans = re.findall(r'span-(\d)" id="tile-', client.get("/dashboards/panel", headers=otto).text)
        assert spans == ["2", "2"]  # beside the button, as declared
        # In the kiosk layout, or without a login (the public page): the first runs the row.
        for headers, kiosk in ((otto, {"kiosk": "1"}), ({}, {})):
            page = client.get("/dashboards/panel", params=kiosk, headers=headers).text
            assert re.findall(r'span-(\d)" id="tile-', page) == ["3", "2"], page


def test_the_dashboards_json_lists_its_controls(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    board = client.get("/api/dashboards/panel", headers=as_(served, "vic")).json()
    controls = {c["name"]: c for c in board["controls"]}
    assert controls["relay-1"]["kind"] == "toggle" and controls["relay-1"]["params"] == {"relay": 1}
    assert controls["reset-board"]["confirm"] == "Reset the board now?"
    assert controls["set-mode"]["options"] == ["auto", "manual", "off"]
    assert "sensors" in board["streams"] and "relays" in board["sources"]
    schema = client.get("/openapi.json", headers=as_(served, "vic")).json()
    body = schema["paths"]["/api/dashboards/{name}/controls/{control}"]["post"]["requestBody"]
    assert set(body["content"]["application/json"]["schema"]["properties"]) == {"value", "params"}


def test_a_dashboard_of_controls_alone_is_served(tmp_path: Path) -> None:
    import mieruka
    from mieruka import controls

    app = mieruka.App("bare")

    @app.task(quick=True)
    def ping() -> str:
        return "pong"

    app.dashboard("buttons", [controls.button(ping)])
    app.configure(home=str(tmp_path / "home"), executor="threads")
    with TestClient(app.asgi()) as client:
        assert client.get("/dashboards/buttons").status_code == 200
        assert client.post("/api/dashboards/buttons/controls/ping").json()["result"] == "pong"
        assert client.get("/api/dashboards/buttons").json()["tiles"] == []


def test_the_docs_describe_every_control_and_their_example_runs() -> None:
    from mieruka import controls

    doc = (Path(__file__).parents[2] / "docs" / "dashboards.md").read_text()
    section = doc[doc.index("## Controls") : doc.index("## Who may see what")]
    assert set(re.findall(r"`controls\.(\w+)\(", section)) == set(controls.__all__)
    assert "`POST /api/dashboards/{name}/controls/{control}`" in doc
    namespace: dict[str, Any] = {"__name__": "docs_controls"}
    exec(compile(re.findall(r"```python\n(.*?)```", section, re.S)[0], "docs/dashboards.md", "exec"), namespace)
    board = namespace["app"].dashboards.get("panel")
    assert [c.kind for c in board.controls] == ["toggle", "slider", "select", "button", "form"]
    assert board.controls[2].options == ("auto", "manual", "off") and board.controls[4].fields == ("times",)
    assert board.streams == ["readings"] and board.sources == ["board"]
