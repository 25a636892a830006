"""Docs that cannot drift: every shell command in README.md and docs/*.md (```bash, ```sh, ```shell,
```console blocks) is run here, in the order a reader meets them, in a folder of its own per page.

- `mieruka run ...` serves until the end of its block, on a free port given as MIERUKA_PORT (and to
  the client commands as MIERUKA_URL); the commands after it in the block talk to it.
- Lines that only set MIERUKA_* variables (`MIERUKA_X=...`, `export MIERUKA_X=... \\`) are read as
  settings: an unknown name or a value that cannot be read fails.
- A command asking for input is answered on a terminal (PROMPTS); a line listing several commands as
  alternatives (`mieruka users ls | rm NAME | ...`) runs the commands it stands for (SYNOPSES).
- A command that cannot run in a test is listed in EXEMPT with the reason. Anything else in a shell
  block must run and succeed, so a new command in the docs cannot slip past, and an entry of these
  tables that no page shows any more fails too.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mieruka.settings import Settings
from tests.conftest import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
PASSWORD = "a long password"

EXEMPT = {
    "python3 scripts/dev.py demo": (
        "builds ./.venv and serves port 8000 until stopped: tests/servers/test_quickstart.py runs it on a free port "
        "with a venv of its own"
    ),
    "python3 scripts/dev.py test": "the whole test suite, this test among it",
    "mieruka run app.py --host 0.0.0.0": (
        "a Celery server for hosts named redis and db; tests/servers/test_celery.py serves on Celery"
    ),
    "mieruka worker app.py --queues default,gpu --concurrency 4": (
        "a Celery worker for hosts named redis and db; tests/servers/test_celery.py runs `mieruka worker`"
    ),
    "sudo -u mieruka env MIERUKA_HOME=/var/lib/mieruka mieruka users add ada --role admin": (
        "needs sudo and a mieruka system account; `mieruka users add` runs from README.md"
    ),
    "docker compose build": "needs Docker; tests/unit/test_deploy.py checks docker-compose.yml and the Dockerfile",
    "docker compose run --rm web mieruka users add admin --role admin": "needs Docker",
    "docker compose up --scale worker=2": "needs Docker",
    "MIERUKA_PORT=9000 MIERUKA_TIMEZONE=Asia/Tokyo mieruka run app.py": (
        "serves the fixed port 9000, which another process of this machine may hold; tests/unit/test_settings.py "
        "checks that environment variables set these settings"
    ),
}

# Interactive commands: what they print, and what a person types.
PROMPTS = {
    "mieruka users add ada --role admin": [("password for ada: ", PASSWORD), ("again: ", PASSWORD)],
    "mieruka users passwd ada": [("password for ada: ", PASSWORD), ("again: ", PASSWORD)],
}

# Lines that list alternatives: the commands each stands for, in an order that can run.
SYNOPSES = {
    "mieruka users ls | rm NAME | passwd NAME | role NAME operator | link NAME": [
        "mieruka users ls",
        "mieruka users passwd ada",
        "mieruka users link ada",
        "mieruka users add grace --no-password",
        "mieruka users role grace operator",
        "mieruka users rm grace",
    ],
    "mieruka tokens ls | revoke ID": [
        "mieruka tokens ls",
        "mieruka tokens revoke $(mieruka tokens ls --user ada | awk '$3 == \"ci\" {print $1}')",
    ],
}

# Files the commands name, as the reader would have them.
FILES = {"reads.fa": ">read1\nACGTACGTAC\n>read2\nTTGACCA\n"}


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    block: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def shell_commands(path: Path) -> list[Command]:
    """The commands of a page's shell blocks: continuation lines joined, comments dropped."""
    commands: list[Command] = []
    fence: str | None = None
    block = 0
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if fence is None:
            if line.startswith("```"):
                fence = line[3:].strip()
                block += 1
            continue
        if line.startswith("```"):
            fence = None
            continue
        if fence not in SHELL_FENCES:
            continue
        if not pending:
            start = number
        code = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        text = (pending + code.strip()).strip()
        pending = ""
        if text:
            commands.append(Command(path.name, start, block, re.sub(r"\s+", " ", text)))
    return commands


ALL = [c for page in PAGES for c in shell_commands(page)]


def settings_only(text: str) -> dict[str, str] | None:
    """{NAME: value} when the line only sets variables (`A=1 B=2`, `export A=1`), else None."""
    words = shlex.split(text)
    if words[:1] == ["export"]:
        words = words[1:]
    if not words or not all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w) for w in words):
        return None
    return dict(w.split("=", 1) for w in words)


class Sandbox:
    """A reader's folder: the repository's examples, the files the commands name, a shell whose
    `mieruka` is this checkout's, and the servers started so far."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "examples").symlink_to(ROOT / "examples")
        for name, text in FILES.items():
            (folder / name).write_text(text)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["MIERUKA_PORT"] = str(self.port)
        env["MIERUKA_URL"] = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.servers: list[tuple[Command, subprocess.Popen[bytes], Path]] = []

    def run(self, command: Command, text: str) -> None:
        if text in PROMPTS:
            return self._answer(command, text, PROMPTS[text])
        words = shlex.split(text)
        if words[:2] == ["mieruka", "run"] or words[:2] == ["mieruka", "demo"]:
            return self._serve(command, text)
        result = subprocess.run(
            ["bash", "-c", text], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, (
            f"{command}\n(ran {text!r}) exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )

    def _serve(self, command: Command, text: str) -> None:
        log = self.folder.parent / f"server-{len(self.servers)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {text}"], cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.servers.append((command, process, log))
        wait_healthy(self.env["MIERUKA_URL"], process, lambda: f"{command}\n{log.read_text()}", timeout=60)

    def _answer(self, command: Command, text: str, prompts: list[tuple[str, str]]) -> None:
        """Run on a terminal of its own (no controlling terminal: getpass reads this one)."""
        main, child = pty.openpty()
        process = subprocess.Popen(
            ["bash", "-c", text],
            cwd=self.folder,
            env=self.env,
            stdin=child,
            stdout=child,
            stderr=child,
            start_new_session=True,
        )
        os.close(child)
        seen = b""
        try:
            for prompt, answer in prompts:
                seen = _read_until(main, prompt.encode(), seen, command)
                os.write(main, answer.encode() + b"\n")
            code = process.wait(timeout=60)
            seen += _drain(main)
        finally:
            os.close(main)
            if process.poll() is None:
                process.kill()
                process.wait()
        output = seen.decode(errors="replace")
        assert code == 0 and "Traceback" not in output, f"{command}\nexit {code}\n{output}"

    def stop_servers(self) -> None:
        for _, process, _ in self.servers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.servers.clear()

    def outputs(self) -> str:
        return "\n".join(f"--- {command}\n{log.read_text(errors='replace')}" for command, _, log in self.servers)


def _read_until(fd: int, wanted: bytes, seen: bytes, command: Command, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{command}: never asked {wanted!r}; printed {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the command ended and closed its terminal
                chunk = b""
            assert chunk, f"{command}: ended without asking {wanted!r}; printed {seen!r}"
            seen += chunk
    return seen.split(wanted, 1)[1]


def _drain(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.fixture
def sandbox(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    folder = tmp_path / "reader"
    folder.mkdir()
    box = Sandbox(folder)
    failed_before = request.session.testsfailed
    try:
        yield box
    finally:
        box.stop_servers()
        if request.session.testsfailed > failed_before:
            print(box.outputs())


def check_settings(command: Command, values: dict[str, str]) -> None:
    known = {entry["env"] for entry in Settings.describe()}
    unknown = sorted(set(values) - known)
    assert not unknown, f"{command}: no such setting {unknown}"
    Settings.load(environ=values)  # a value that cannot be read raises ConfigError


@pytest.mark.parametrize("page", [p.name for p in PAGES if shell_commands(p)])
def test_every_shell_command_of_the_docs_runs(page: str, sandbox: Sandbox) -> None:
    block = None
    for command in (c for c in ALL if c.page == page):
        if command.block != block:  # a block's servers serve only its own commands
            sandbox.stop_servers()
            block = command.block
        if command.text in EXEMPT:
            continue
        values = settings_only(command.text)
        if values is not None:
            check_settings(command, values)
            continue
        for text in SYNOPSES.get(command.text, [command.text]):
            sandbox.run(command, text)


def test_every_listed_command_is_still_in_the_docs() -> None:
    shown = {c.text for c in ALL}
    expanded = {text for texts in SYNOPSES.values() for text in texts}
    stale = sorted({*EXEMPT, *SYNOPSES} - shown) + sorted(set(PROMPTS) - shown - expanded)
    assert stale == [], f"listed here but no longer in the docs: {stale}"


def test_the_commands_are_found() -> None:
    texts = [c.text for c in ALL]
    assert "mieruka submit align --file reads=reads.fa reference=mm10 --wait" in texts
    assert "sudo -u mieruka env MIERUKA_HOME=/var/lib/mieruka mieruka users add ada --role admin" in texts
    assert (
        "export MIERUKA_EXECUTOR=celery MIERUKA_BROKER_URL=redis://redis:6379/0 "
        "MIERUKA_DATABASE_URL=postgresql+psycopg://mieruka@db/mieruka" in texts
    )
    assert not any(t.startswith("#") or "\\" in t for t in texts)
