#!/usr/bin/env python3
"""Fuzz the OpenAPI schema with schemathesis against a real server: no 5xx, no response that breaks
the schema. `python3 scripts/fuzz.py [--max-time SECONDS] [--postgres URL]`; CI runs it before the tests,
on SQLite and on PostgreSQL. The seed is fixed
(5) so CI is repeatable; `FUZZ_SEED=N` explores other cases.

The server runs tests/fuzz_app.py (quick tasks of every parameter kind) on a fresh data directory;
schemathesis authenticates with an admin's API token made by `mieruka tokens create`, so every
operation is reached. Endless event streams are left out (they never answer in full), and so is
revoking tokens (it would revoke the fuzzer's own).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mieruka(*args: str, stdin: str | None = None, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"fuzz: mieruka {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, default=150, help="time budget of the fuzzing, seconds")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="fuzz a server whose store is a fresh database on this "
        "PostgreSQL server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env.update(PYTHONPATH=str(ROOT), MIERUKA_RUN_WAIT_MAX="5", MIERUKA_LOG_LEVEL="warning")
    if not args.postgres:
        return fuzz(args.max_time, env)
    import sqlalchemy as sa

    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"mieruka_fuzz_{os.getpid()}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        return fuzz(args.max_time, {**env, "MIERUKA_DATABASE_URL": args.postgres.rsplit("/", 1)[0] + f"/{name}"})
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def fuzz(max_time: int, env: dict[str, str]) -> int:
    import httpx

    store = "PostgreSQL" if env.get("MIERUKA_DATABASE_URL") else "SQLite"
    print(f"fuzz: the OpenAPI schema of a real server on {store}, {max_time}s", flush=True)
    with tempfile.TemporaryDirectory(prefix="mieruka-fuzz-") as tmp:
        home = str(Path(tmp) / "home")
        mieruka(
            "users",
            "add",
            "fuzz",
            "--role",
            "admin",
            "--password-stdin",
            "--home",
            home,
            stdin="fuzz password\n",
            env=env,
        )
        token = mieruka("tokens", "create", "--user", "fuzz", "--name", "schemathesis", "--home", home, env=env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mieruka.cli",
                "run",
                "tests/fuzz_app.py:app",
                "--port",
                str(port),
                "--home",
                home,
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    print((Path(tmp) / "server.log").read_text())
                    sys.exit("fuzz: the server did not start")
                time.sleep(0.1)
            fuzz_env = {**env, "SCHEMATHESIS_HOOKS": "fuzz_hooks", "PYTHONPATH": str(ROOT / "scripts")}
            code = subprocess.run(
                [
                    str(BIN / "schemathesis"),
                    "run",
                    f"{url}/openapi.json",
                    "--header",
                    f"Authorization: Bearer {token}",
                    "--checks",
                    "not_a_server_error,response_schema_conformance",
                    "--max-time",
                    str(max_time),
                    "--workers",
                    "1",
                    "--request-timeout",
                    "20",
                    "--exclude-path-regex",
                    "/events$",
                    "--exclude-path",
                    "/api/tokens/{token_id}",
                    "--suppress-health-check",
                    "all",
                    "--seed",
                    os.environ.get("FUZZ_SEED", "5"),
                ],
                cwd=tmp,
                env=fuzz_env,
                check=False,
            ).returncode
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
        if code != 0:
            print("--- server log ---")
            print((Path(tmp) / "server.log").read_text()[-20000:])
        return code


if __name__ == "__main__":
    sys.exit(main())
