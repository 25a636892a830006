"""Wall screens on a real server (tests/wall_app.py): the kiosk page in Chromium on a 1920x1080 wall
screen and a 375 px phone, a revoked display link closing its open event streams, and what a reader
without a login receives from the live streams."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import ServerProcess, shared_server
from tests.wall_app import JOB, LOBBY, STAFF, WARDS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Route

PASSWORD = "a long password"


@dataclass
class Wall:
    server: ServerProcess
    admin: dict[str, str]
    shots: Path

    def link(self, dashboard: str, label: str) -> tuple[int, str]:
        made = httpx.post(
            f"{self.server.url}/api/displays", json={"dashboard": dashboard, "label": label}, headers=self.admin
        )
        assert made.status_code == 201, made.text
        return made.json()["id"], made.json()["url"].split("#", 1)[1]

    def revoke(self, link_id: int) -> None:
        assert httpx.delete(f"{self.server.url}/api/displays/{link_id}", headers=self.admin).status_code == 200


def with_an_admin(home: Path) -> str:
    """A home whose database has the admin ada; her API token."""
    from tests.wall_app import app

    app._settings = None
    app.configure(home=str(home))
    app.auth.db.migrate()
    app.auth.accounts.add_user("ada", "admin", PASSWORD)
    token = app.auth.accounts.create_token("ada", "displays")[1]
    app.stop()  # the server process owns the database from here
    app._settings = None
    return token


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Wall]:
    home = tmp_path_factory.mktemp("wall-server") / "home"
    token = with_an_admin(home)
    env = {"MIERUKA_HEARTBEAT_INTERVAL": "1"}
    with shared_server(ServerProcess("tests/wall_app.py:app", home, env=env), request) as server:
        # MIERUKA_TEST_SCREENSHOTS: a folder to keep the screenshots in, to look at them.
        shots = Path(os.environ.get("MIERUKA_TEST_SCREENSHOTS") or home.parent / "shots")
        shots.mkdir(parents=True, exist_ok=True)
        yield Wall(server, {"Authorization": f"Bearer {token}"}, shots)


def guarded(browser: Browser, server: ServerProcess, outside: list[str], width: int, height: int) -> BrowserContext:
    context = browser.new_context(viewport={"width": width, "height": height})

    def guard(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return context


def read_stream(url: str, headers: dict[str, str], seconds: float) -> tuple[str, bool]:
    """What an event stream sends within `seconds`, and whether the server ended it meanwhile."""
    chunks: list[str] = []
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=seconds)) as response:
        if "event-stream" not in response.headers.get("content-type", ""):
            return f"{response.status_code} {response.read().decode()}", True
        try:
            for chunk in response.iter_text():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    return "".join(chunks), False
        except httpx.ReadTimeout:
            return "".join(chunks), False
    return "".join(chunks), True


@pytest.mark.parametrize(("width", "height", "name"), [(1920, 1080, "wall"), (375, 812, "phone")])
def test_the_kiosk_page(browser: Browser, wall: Wall, width: int, height: int, name: str) -> None:
    server = wall.server
    link_id, secret = wall.link("wards", f"Ward 3 {name}")
    outside: list[str] = []
    context = guarded(browser, server, outside, width, height)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/display#{secret}")
        page.wait_for_url(f"{server.url}/dashboards/wards?kiosk=1", timeout=30_000)
        assert secret not in page.url
        # Live: the stream's tile draws points, the tables show their rows, the clock runs.
        page.locator('#tile-stream-vitals[data-points]:not([data-points="0"])').wait_for(timeout=30_000)
        page.get_by_text(WARDS).first.wait_for(timeout=30_000)
        page.locator("#kiosk-updated").filter(has_text="updated").wait_for(timeout=30_000)
        clock = page.locator("#kiosk-clock").text_content() or ""
        assert len(clock) == 5 and clock[2] == ":", clock
        assert page.evaluate("document.body.classList.contains('kiosk')")
        html = page.content()
        for absent in ("topbar", "<form", 'href="/jobs"', 'href="/dashboards"', "Log out", STAFF, JOB):
            assert absent not in html, absent
        assert "polling" not in (page.locator("#live-note").text_content() or "")
        # Fits the screen: nothing wider than the viewport, the KPI in large type.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        kpi = page.locator(".kpi-value").first
        size = float(kpi.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
        assert size >= (60 if width >= 1920 else 40), size
        if width >= 1920:  # three columns side by side on the wall
            tops = page.locator(".tile").evaluate_all("tiles => tiles.map(t => t.getBoundingClientRect().top)")
            assert len(set(round(t) for t in tops[:3])) == 1, tops
            # The pointer hides when it rests; a double click asks for the whole screen.
            page.locator("body.pointer-resting").wait_for(state="attached", timeout=30_000)
            page.dblclick("h1")
            page.wait_for_function("document.fullscreenElement !== null", timeout=30_000)
        shot = wall.shots / f"kiosk-{name}-{width}x{height}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
        assert not outside, f"requests outside the server: {outside}"
    finally:
        context.close()
        wall.revoke(link_id)


def test_revoking_a_link_ends_its_open_streams(browser: Browser, wall: Wall) -> None:
    server = wall.server
    link_id, secret = wall.link("wards", "Revoked soon")
    cookie = {"Cookie": f"mieruka_display={secret}"}
    results: dict[str, tuple[str, bool]] = {}
    urls = {
        "shared": f"{server.url}/api/live/events?topic=dashboard:wards",
        "dashboard": f"{server.url}/api/dashboards/wards/events",
    }

    def read(key: str) -> None:
        results[key] = read_stream(urls[key], cookie, 60)

    readers = [threading.Thread(target=read, args=(key,)) for key in urls]
    outside: list[str] = []
    context = guarded(browser, server, outside, 1280, 800)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/display#{secret}")
        page.locator('#tile-stream-vitals[data-points]:not([data-points="0"])').wait_for(timeout=30_000)
        for reader in readers:
            reader.start()
        time.sleep(1.5)  # the streams are open and sending
        revoked_at = time.monotonic()
        wall.revoke(link_id)
        for reader in readers:
            reader.join(timeout=90)
        waited = time.monotonic() - revoked_at
        for key, (text, ended) in results.items():
            assert ended, f"the {key} stream went on for {waited:.1f} s after the link was revoked"
            assert "event: tile" in text or "event: points" in text, (key, text[:300])
        # The page notices and says why on the display's landing page.
        page.wait_for_url(f"{server.url}/display", timeout=60_000)
        page.get_by_text("no display link at this address").wait_for(timeout=30_000)
        again = httpx.get(urls["dashboard"], headers=cookie)
        assert again.status_code == 401
        assert not outside, outside
    finally:
        context.close()
    print(f"open streams ended {waited:.1f} s after the revoke")


def test_what_the_live_streams_carry_without_a_login(wall: Wall) -> None:
    server = wall.server
    link_id, secret = wall.link("wards", "Streams")
    topics = "&".join(
        f"topic={t}" for t in ("jobs", "dashboard:lobby", "dashboard:wards", "dashboard:staff", "stream:load")
    )
    url = f"{server.url}/api/live/events?{topics}&last_event_id=%40%3D1"
    httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": 2}, headers=wall.admin)
    anonymous, _ = read_stream(url, {}, 4)
    assert LOBBY in anonymous, anonymous[:500]
    # Nor the lobby's controls: their states (a tile of the lobby source, the doors stream).
    for hidden in (WARDS, STAFF, JOB, '"cpu"', "head-count", "control:", '"doors"'):
        assert hidden not in anonymous, hidden
    board_events, _ = read_stream(f"{server.url}/api/dashboards/lobby/events", {}, 3)
    assert LOBBY in board_events and "head-count" not in board_events and '"doors"' not in board_events
    signed_in, _ = read_stream(f"{server.url}/api/dashboards/lobby/events", wall.admin, 3)
    assert "head-count" in signed_in and '"doors"' in signed_in  # the checks above are not vacuous
    assert '"refused":{"jobs":"no such topic' in anonymous
    display, _ = read_stream(url, {"Cookie": f"mieruka_display={secret}"}, 4)
    assert LOBBY in display and WARDS in display and '"pulse"' in display
    for hidden in (STAFF, JOB, '"cpu"'):
        assert hidden not in display, hidden
    # The public page and its live data, without a login; nothing else.
    assert httpx.get(f"{server.url}/dashboards/lobby").status_code == 200
    assert httpx.get(f"{server.url}/dashboards/wards", headers={"Accept": "application/json"}).status_code == 401
    assert httpx.get(f"{server.url}/api/streams/pulse/points").status_code == 200
    assert httpx.get(f"{server.url}/api/streams/vitals/points").status_code == 401
    wall.revoke(link_id)


def test_the_secret_stays_out_of_the_log_and_metrics(wall: Wall) -> None:
    server = wall.server
    link_id, secret = wall.link("lobby", "Logged?")
    httpx.post(f"{server.url}/display", json={"secret": secret})
    httpx.post(f"{server.url}/display", json={"secret": secret + "x"})
    wall.revoke(link_id)
    httpx.post(f"{server.url}/display", json={"secret": secret})
    audit = httpx.get(f"{server.url}/api/audit", params={"limit": 1000}, headers=wall.admin).text
    metrics = httpx.get(f"{server.url}/metrics", headers=wall.admin).text
    for where, text in (("log", server.output()), ("audit", audit), ("metrics", metrics)):
        assert secret[4:24] not in text, where
    assert '"action":"display.create"' in audit.replace(" ", "")


def test_a_display_behind_a_path_prefix(browser: Browser, tmp_path: Path) -> None:
    """Behind a proxy at /wall/: the link, the display's cookie and its live page all follow."""
    from tests.conftest import running_server

    home = tmp_path / "home"
    admin = {"Authorization": f"Bearer {with_an_admin(home)}"}
    with running_server(home, "--root-path", "/wall", app_ref="tests/wall_app.py:app") as server:
        made = httpx.post(f"{server.url}/wall/api/displays", json={"dashboard": "wards", "label": "x"}, headers=admin)
        assert made.status_code == 201, made.text
        url = made.json()["url"]
        assert url.startswith(f"{server.url}/wall/display#mrd_"), url
        outside: list[str] = []
        context = guarded(browser, server, outside, 1280, 800)
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_url(f"{server.url}/wall/dashboards/wards?kiosk=1", timeout=30_000)
            page.locator('#tile-stream-vitals[data-points]:not([data-points="0"])').wait_for(timeout=30_000)
            cookie = [c for c in context.cookies() if c["name"] == "mieruka_display"]
            assert cookie and cookie[0]["path"] == "/wall" and cookie[0]["httpOnly"], cookie
            assert "polling" not in (page.locator("#live-note").text_content() or "")
            assert not outside, outside
        finally:
            context.close()
