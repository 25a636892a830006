#!/usr/bin/env python3
"""The one dev loop: `python3 scripts/dev.py demo|test|lint|bench|i18n [args...]`.

Creates ./.venv on first use and installs mieruka into it (again only when pyproject.toml changes),
so a fresh machine needs nothing but Python 3.11+: `demo` with the extra `demo` (what the demo's
dashboard needs), the others with `dev`. MIERUKA_DEV_VENV names another folder for the venv (the
quick-start test keeps one in a cache folder). The demo runs in the current directory, so its data
is ./.mieruka there, where the other `mieruka` commands run from the same folder look.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("MIERUKA_DEV_VENV") or ROOT / ".venv").absolute()
BIN = VENV / "bin"
PYTHON = BIN / "python"


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be run by an older python3
        sys.exit(f"mieruka needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    print(f"installing mieruka{f'[{extras}]' if extras else ''} into {VENV}", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    # Bytecode is written at first import for what is imported, not at install for every module of
    # every dependency (a third of the demo's install), unless this environment never writes any.
    lazy = [] if os.environ.get("PYTHONDONTWRITEBYTECODE") else ["--no-compile"]
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", *lazy, "-e", target], check=True)
    stamp.write_text(digest)


def compile_sources(*folders: str) -> None:
    """Write the bytecode of our own code now, once: with PYTHONDONTWRITEBYTECODE set (as some CI
    images do) every process would compile the package again, 0.1-0.2 s of CPU at each start of a
    server, worker or command. compileall writes it anyway and skips what is up to date."""
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", *folders], cwd=ROOT, stdout=subprocess.DEVNULL, check=False)


def alone_modules(args: list[str]) -> list[str]:
    """The test modules holding a test marked `alone`, unless the command line names what to run:
    collecting only them spares that phase, which has the machine to itself, the whole suite's."""
    if any(not arg.startswith("-") for arg in args):
        return []
    tests = ROOT / "tests"
    return sorted(str(path.relative_to(ROOT)) for path in tests.rglob("test_*.py") if "mark.alone" in path.read_text())


def run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT).returncode


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command == "demo":
        ensure_venv("demo")
        compile_sources("src")
        venv_dir = os.path.relpath(VENV) if VENV.is_relative_to(Path.cwd()) else str(VENV)
        print(
            f"mieruka: the `mieruka` command is {venv_dir}/bin/mieruka (`. {venv_dir}/bin/activate` puts it on PATH)",
            flush=True,
        )
        os.execv(BIN / "mieruka", [str(BIN / "mieruka"), "demo", *args])  # the server itself: Ctrl-C, signals
    if command == "test":
        ensure_venv("dev")
        # The suite starts hundreds of Python processes: each reads the bytecode written here (and
        # writes what it compiles) instead of compiling the package and the tests' apps again.
        compile_sources("src", "tests", "examples", "bench")
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        # Tests that measure the browser's main thread first, alone on the machine (code 5: none chosen).
        alone = run([str(PYTHON), "-m", "pytest", "-m", "alone", *args, *alone_modules(args)])
        # The rest wait on servers, workers and browsers rather than compute: two test processes more
        # than there are cores keep them busy. A module's tests stay together (they share servers).
        workers = os.environ.get("MIERUKA_TEST_WORKERS", str((os.cpu_count() or 1) + 2))
        # The slowest tests are listed at the end: the suite's time is kept under 8 minutes.
        code = run(
            [
                str(PYTHON),
                "-m",
                "pytest",
                "-m",
                "not alone",
                "-n",
                workers,
                "--dist",
                "loadfile",
                "--durations",
                "15",
                *args,
            ]
        )
        if code == 5 and alone == 0:
            code = 0
        if code == 5 and os.environ.get("MIERUKA_ALLOW_NO_TESTS"):
            code = 0
        return code or (alone if alone != 5 else 0)
    if command == "lint":
        ensure_venv("dev")
        paths = ["src", "tests", "bench", "scripts", "examples"]
        return (
            run([str(BIN / "ruff"), "check", *paths])
            or run([str(BIN / "ruff"), "format", "--check", *paths])
            or run([str(BIN / "mypy"), "--config-file", "pyproject.toml"])
        )
    if command == "i18n":  # extract the UI's messages, bring every language's catalog up to date
        ensure_venv("dev")
        return run([str(PYTHON), "scripts/catalogs.py", *args])
    if command == "bench":
        ensure_venv("dev")
        compile_sources("src", "bench", "examples")  # start-up is measured as an installed package starts
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        if args[:1] == ["live"]:  # dashboards and streams under load: bench/live.py
            return run([str(PYTHON), "bench/live.py", *args[1:]])
        if args[:1] == ["footprint"]:  # memory, start-up and idle CPU beside the peers' apps: bench/footprint.py
            return run([str(PYTHON), "bench/footprint.py", *args[1:]])
        return run([str(PYTHON), "bench/run.py", *args])
    print(__doc__.strip())
    return 0 if command == "help" else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C also stopped the demo or the tests: no traceback of ours
        sys.exit(130)
