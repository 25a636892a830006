"""docker-compose.yml, the Dockerfile and docs/scaling.md stay true to the code. No Docker engine
runs here: the compose file is parsed, and every command and setting it uses must exist in the CLI
and the settings table; the systemd and Python examples of the docs are checked the same way."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

import mieruka
from mieruka.cli import build_parser
from mieruka.settings import Settings

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS = {spec["env"] for spec in Settings.describe()}


def first_group(pattern: str, text: str, flags: int = 0) -> str:
    """Group 1 of the first match of `pattern` in `text`, which must match."""
    match = re.search(pattern, text, flags)
    assert match is not None, f"{pattern!r} not found"
    return match.group(1)


def expand(value: str) -> str:
    """${NAME:-default} as compose reads it when NAME is not set."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_four_services_wait_for_their_dependencies() -> None:
    assert set(SERVICES) == {"web", "worker", "postgres", "redis"}
    for name in ("web", "worker"):
        depends = SERVICES[name]["depends_on"]
        assert depends == {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}}
    for name in ("postgres", "redis", "web"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD"
    assert set(COMPOSE["volumes"]) == {"mieruka-data", "postgres-data", "redis-data"}


@pytest.mark.parametrize("service", ["web", "worker"])
def test_commands_are_real_mieruka_commands(service: str) -> None:
    command = [expand(part) for part in SERVICES[service]["command"]]
    assert command[0] == "mieruka"
    args = build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown flag
    assert args.command == {"web": "run", "worker": "worker"}[service]
    assert (ROOT / args.app).is_file(), f"{args.app} is not in the repository (the image copies it)"
    if service == "worker":
        assert args.queues == "default" and args.concurrency == 2
    else:
        assert args.host == "0.0.0.0" and str(args.port) == SERVICES["web"]["ports"][0].split(":")[1]


@pytest.mark.parametrize("service", ["web", "worker"])
def test_settings_are_known_and_valid(service: str) -> None:
    env = {k: str(v) for k, v in SERVICES[service]["environment"].items()}
    assert set(env) <= SETTINGS, f"unknown settings: {set(env) - SETTINGS}"
    settings = Settings.load(environ=env, config_file=None)
    assert settings.executor == "celery"
    hosts = {
        first_group(r"^[a-z+]+://(?:[^@/]*@)?([^:/]+)", url)
        for url in (settings.broker_url, settings.event_bus, settings.database_url)
    }
    assert hosts <= set(SERVICES), f"URLs name hosts that are no service: {hosts - set(SERVICES)}"
    postgres = SERVICES["postgres"]["environment"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@" in settings.database_url
    assert settings.database_url.endswith(f"/{postgres['POSTGRES_DB']}")
    assert settings.home in [v.split(":")[1] for v in SERVICES[service]["volumes"]]


def test_the_dockerfile_installs_extras_that_exist() -> None:
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    extras = first_group(r'pip install "\.\[([a-z0-9,]+)\]"', dockerfile).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) <= set(declared) and {"celery", "postgres"} <= set(extras)
    for copied in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"
    cmd = yaml.safe_load(first_group(r"^CMD (.*)$", dockerfile, re.M))
    assert build_parser().parse_args(cmd[1:]).command == "run"


def test_scaling_docs_use_real_settings_commands_and_pool_hooks() -> None:
    text = (ROOT / "docs" / "scaling.md").read_text()
    for name in set(re.findall(r"\bMIERUKA_[A-Z0-9_]+", text)) - {"MIERUKA_POOL", "MIERUKA_POOL_QUEUES", "MIERUKA_APP"}:
        assert name in SETTINGS, f"docs/scaling.md names {name}, which is no setting"
    commands = re.findall(r"(?:ExecStart=\S*/|`)(mieruka (?:run|worker) [^`\n]+)", text)
    assert len(commands) >= 4, commands
    for line in commands:
        args = shlex.split(line.rstrip("`"))
        assert build_parser().parse_args(args[1:]).command in ("run", "worker"), line
    # The Python example declares its pools with the real classes.
    code = first_group(r"```python\n(.*?)```", text, re.S)
    namespace: dict[str, object] = {}
    exec(
        compile(
            code.replace(
                "def train(epochs: int = 10) -> dict: ...", "def train(epochs: int = 10) -> dict:\n    return {}"
            ),
            "scaling.md",
            "exec",
        ),
        namespace,
    )
    app = namespace["app"]
    assert isinstance(app, mieruka.App)
    assert sorted(app.pools) == ["batch", "default", "gpu"]
    assert app.pools["gpu"].idle_stop == 900
    assert app.tasks.get("train").queue == "gpu"
