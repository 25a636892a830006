#!/usr/bin/env python3
"""Screenshots of each page of the demo for the README: `python3 scripts/screenshots.py [NAME...]`
(only the named ones, e.g. `job-pipeline`, when names are given).

Starts `mieruka demo` on a free port with a throw-away data directory, runs a few jobs, and
writes docs/screenshots/*.png with Debian's Chromium (Playwright; no browser download).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        log = Path(home) / "server.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "mieruka.cli", "demo", "--port", str(port), "--home", home],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # The demo prints a one-time login link for its admin; the API calls use a token.
            link = re.search(r"one-time link: (\S+)", log.read_text())
            token = subprocess.run(
                [sys.executable, "-m", "mieruka.cli", "tokens", "create", "--user", "demo", "--home", home],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            client = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
            report = client.post("/api/tasks/make_report/jobs", json={}).json()
            client.post("/api/tasks/fail_on_purpose/jobs", json={})
            client.post("/api/tasks/hello/jobs", json={"name": "mieruka"})
            slow = client.post("/api/tasks/count_slowly/jobs", json={"steps": 40, "delay": 0.25}).json()
            pipeline = client.post("/api/tasks/text_pipeline/jobs", json={"delay": 1.5}).json()
            client.get(f"/api/jobs/{report['id']}", params={"wait": 30})
            OUT.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                if link:
                    page.goto(link.group(1))
                    page.get_by_role("button", name="Log in").click()
                    page.wait_for_url(url + "/")
                shots = {
                    "home": "/",
                    "task-form": "/tasks/all_the_types",
                    "job-running": f"/jobs/{slow['id']}",
                    "job-report": f"/jobs/{report['id']}",
                    "jobs-monitor": "/jobs",
                    "api-docs": "/docs",
                    "job-pipeline": f"/jobs/{pipeline['id']}",
                    "dashboard": "/dashboards/demo",
                }
                # Shown in Japanese (issue 22): the reader's own language, set with the header's switcher.
                japanese = {"jobs-monitor-ja": "/jobs", "dashboard-ja": "/dashboards/demo"}
                wanted = sys.argv[1:] or [*shots, *japanese]
                for name, path in shots.items():
                    if name not in wanted:
                        continue
                    page.goto(url + path)
                    if name == "job-pipeline":  # some steps done, two running, one waiting
                        page.locator('#steps details[data-step="count"][data-status="running"]').wait_for()
                        page.locator('#steps details[data-step="letters"] summary').click()
                    page.wait_for_timeout(2500 if name in ("job-running", "job-pipeline", "dashboard") else 800)
                    page.screenshot(path=str(OUT / f"{name}.png"), full_page=name != "api-docs")
                    print(OUT / f"{name}.png")
                if any(name in wanted for name in japanese):
                    page.goto(url + "/jobs")
                    with page.expect_navigation():
                        page.select_option("form.language-switch select", "ja")
                    for name, path in japanese.items():
                        if name in wanted:
                            page.goto(url + path)
                            page.wait_for_timeout(2500)
                            page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                            print(OUT / f"{name}.png")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
