"""Settings: precedence, parsing, errors, and docs/settings.md kept in step with the code.

docs/settings.md is generated from `Settings.describe()` by this file:

    .venv/bin/python tests/unit/test_settings.py        # rewrites docs/settings.md
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # run as a script: make `mieruka` importable from the source tree
    sys.path.insert(0, str(ROOT / "src"))

from mieruka import ConfigError, Settings  # noqa: E402
from mieruka.settings import _DURATIONS  # noqa: E402

DOC = ROOT / "docs" / "settings.md"
SRC = ROOT / "src" / "mieruka"
SIZES = {"max_upload_size", "max_body_size"}


@pytest.fixture(autouse=True)
def no_config_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, so no stray ./mieruka.toml is picked up."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- defaults and precedence --------------------------------------------------------------------
def test_defaults() -> None:
    s = Settings.load(environ={})
    assert s == Settings()
    assert s.port == 8000 and s.host == "127.0.0.1"
    assert s.max_upload_size == 100 * 1024**2
    assert s.retention_max_age == 30 * 86400.0
    assert s.auto_migrate is True
    assert s.timezone == "UTC"


def test_config_file_top_level_keys(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "conf.toml",
        """
port = 9000
host = "0.0.0.0"
poll_interval = "2s"
retention_max_age = "7d"
max_upload_size = "1GB"
auto_migrate = false
timezone = "Asia/Tokyo"
workers = 3
engine_stale_after = 45
""",
    )
    s = Settings.load(environ={}, config_file=cfg)
    assert (s.port, s.host, s.workers) == (9000, "0.0.0.0", 3)
    assert s.poll_interval == 2.0
    assert s.retention_max_age == 7 * 86400.0
    assert s.max_upload_size == 1024**3
    assert s.auto_migrate is False
    assert s.timezone == "Asia/Tokyo"
    assert s.engine_stale_after == 45.0 and isinstance(s.engine_stale_after, float)
    assert s.log_level == "info"  # untouched settings keep their defaults


def test_config_file_mieruka_table(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "conf.toml",
        """
[mieruka]
port = 9100
heartbeat_interval = "1m"
""",
    )
    s = Settings.load(environ={}, config_file=str(cfg))
    assert s.port == 9100
    assert s.heartbeat_interval == 60.0


def test_mieruka_toml_in_the_working_directory(no_config_in_cwd: Path) -> None:
    write(no_config_in_cwd / "mieruka.toml", "port = 9200\n")
    assert Settings.load(environ={}).port == 9200


def test_mieruka_config_names_the_file(tmp_path: Path, no_config_in_cwd: Path) -> None:
    write(no_config_in_cwd / "mieruka.toml", "port = 9200\n")
    named = write(tmp_path / "other.toml", "port = 9300\n")
    assert Settings.load(environ={"MIERUKA_CONFIG": str(named)}).port == 9300
    explicit = write(tmp_path / "explicit.toml", "port = 9400\n")
    assert Settings.load(environ={"MIERUKA_CONFIG": str(named)}, config_file=explicit).port == 9400


def test_env_beats_file_and_overrides_beat_env(tmp_path: Path) -> None:
    cfg = write(tmp_path / "conf.toml", 'port = 9000\nhost = "10.0.0.1"\nworkers = 2\nlog_level = "debug"\n')
    env = {"MIERUKA_PORT": "9001", "MIERUKA_HOST": "10.0.0.2", "MIERUKA_POLL_INTERVAL": "500ms"}
    s = Settings.load(environ=env, config_file=cfg)
    assert (s.port, s.host, s.workers, s.log_level, s.poll_interval) == (9001, "10.0.0.2", 2, "debug", 0.5)
    s = Settings.load({"port": 9002, "workers": None}, environ=env, config_file=cfg)
    assert s.port == 9002  # override wins
    assert s.host == "10.0.0.2"  # env still beats the file
    assert s.workers == 2  # a None override (an absent CLI flag) changes nothing


def test_empty_env_values_are_ignored(tmp_path: Path) -> None:
    cfg = write(tmp_path / "conf.toml", "port = 9000\n")
    assert Settings.load(environ={"MIERUKA_PORT": ""}, config_file=cfg).port == 9000


def test_env_names_are_prefixed_upper_case() -> None:
    assert Settings.load(environ={"PORT": "1", "mieruka_port": "2", "MIERUKA_port": "3"}).port == 8000
    assert Settings.load(environ={"MIERUKA_DATABASE_URL": "sqlite:///x.db"}).database_url == "sqlite:///x.db"


def test_the_real_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIERUKA_PORT", "9555")
    assert Settings.load().port == 9555


def test_with_overrides_parses_and_validates() -> None:
    s = Settings().with_overrides(port="81", poll_interval="3s", max_upload_size="1MB", home=None)
    assert (s.port, s.poll_interval, s.max_upload_size, s.home) == (81, 3.0, 1024**2, ".mieruka")
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings().with_overrides(prot=80)
    with pytest.raises(ConfigError, match="time zone"):
        Settings().with_overrides(timezone="Nowhere/Town")


def test_derived_values(tmp_path: Path) -> None:
    s = Settings.load({"home": str(tmp_path / "h")}, environ={})
    assert s.home_path == (tmp_path / "h").resolve()
    assert s.effective_database_url == f"sqlite:///{(tmp_path / 'h').resolve() / 'mieruka.db'}"
    assert (
        Settings.load({"database_url": "postgresql://db/x"}, environ={}).effective_database_url == "postgresql://db/x"
    )
    assert Settings.load({"workers": 3}, environ={}).effective_workers == 3
    assert Settings.load(environ={}).effective_workers >= 1
    assert str(Settings.load({"timezone": "Asia/Tokyo"}, environ={}).zone) == "Asia/Tokyo"


# -- parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value",
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        (" On ", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_booleans_from_env(text: str, value: bool) -> None:
    assert Settings.load(environ={"MIERUKA_AUTO_MIGRATE": text}).auto_migrate is value


@pytest.mark.parametrize("text", ["maybe", "flase"])
def test_unreadable_boolean_is_an_error(text: str) -> None:
    """A typo must not silently turn a feature off."""
    with pytest.raises(ConfigError, match="auto_migrate"):
        Settings.load(environ={"MIERUKA_AUTO_MIGRATE": text})


@pytest.mark.parametrize(
    "env, setting, value",
    [
        ({"MIERUKA_RUN_WAIT_MAX": "2m"}, "run_wait_max", 120.0),
        ({"MIERUKA_RETENTION_MAX_AGE": "1w"}, "retention_max_age", 604800.0),
        ({"MIERUKA_PRUNE_INTERVAL": "90"}, "prune_interval", 90.0),
        ({"MIERUKA_ENGINE_STALE_AFTER": "1m30s"}, "engine_stale_after", 90.0),
        ({"MIERUKA_MAX_UPLOAD_SIZE": "100MB"}, "max_upload_size", 100 * 1024**2),
        ({"MIERUKA_MAX_UPLOAD_SIZE": "512k"}, "max_upload_size", 512 * 1024),
        ({"MIERUKA_MAX_UPLOAD_SIZE": "2048"}, "max_upload_size", 2048),
        ({"MIERUKA_RETENTION_MAX_JOBS": "500"}, "retention_max_jobs", 500),
        ({"MIERUKA_WORKERS": "4"}, "workers", 4),
    ],
)
def test_durations_and_sizes_are_parsed(env: dict[str, str], setting: str, value: Any) -> None:
    got = getattr(Settings.load(environ=env), setting)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    "env, words",
    [
        ({"MIERUKA_PORT": "80a"}, ["port", "'80a'"]),
        ({"MIERUKA_WORKERS": "two"}, ["workers", "'two'"]),
        ({"MIERUKA_POLL_INTERVAL": "fast"}, ["'fast'", "10m"]),
        ({"MIERUKA_MAX_UPLOAD_SIZE": "lots"}, ["'lots'", "100MB"]),
        ({"MIERUKA_TIMEZONE": "Mars/Olympus"}, ["time zone", "'Mars/Olympus'"]),
        ({"MIERUKA_PUBLIC_URL": "javascript:alert(1)"}, ["public_url", "https://", "'javascript:alert(1)'"]),
        ({"MIERUKA_PUBLIC_URL": "example.org/mieruka"}, ["public_url", "'example.org/mieruka'"]),
        ({"MIERUKA_PUBLIC_URL": "https://"}, ["public_url", "'https://'"]),
        ({"MIERUKA_PUBLIC_URL": "https://example.org/a b"}, ["public_url"]),
        ({"MIERUKA_ROOT_PATH": "http://x/lab"}, ["root_path", "/mieruka", "'http://x/lab'"]),
        ({"MIERUKA_ROOT_PATH": "/lab?x=1"}, ["root_path", "'/lab?x=1'"]),
        ({"MIERUKA_ROOT_PATH": "/a b"}, ["root_path"]),
        ({"MIERUKA_ROOT_PATH": "/a/../b"}, ["root_path"]),
    ],
)
def test_bad_values_are_readable_config_errors(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(environ=env)
    message = err.value.message
    assert "\n" not in message
    for word in words:
        assert word in message


def test_wrong_toml_type_is_a_config_error(tmp_path: Path) -> None:
    """A TOML array or table where a number belongs is a bad value like any other."""
    cfg = write(tmp_path / "conf.toml", "workers = [1, 2]\n")
    with pytest.raises(ConfigError, match="workers"):
        Settings.load(environ={}, config_file=cfg)


def test_unknown_setting_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'prot'"):
        Settings.load({"prot": 80}, environ={})
    cfg = write(tmp_path / "conf.toml", "port = 1\nworkerz = 2\n")
    with pytest.raises(ConfigError, match="'workerz'"):
        Settings.load(environ={}, config_file=cfg)
    table = write(tmp_path / "table.toml", "[mieruka]\nhomee = 'x'\n")
    with pytest.raises(ConfigError, match="'homee'"):
        Settings.load(environ={}, config_file=table)


def test_unknown_mieruka_env_vars_are_not_settings() -> None:
    # MIERUKA_CONFIG and test-only variables share the prefix; they are not settings.
    assert Settings.load(environ={"MIERUKA_REQUIRE_SERVICES": "1"}) == Settings()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "UTC+25"])
def test_unknown_timezone_is_an_error(zone: str) -> None:
    with pytest.raises(ConfigError, match="time zone"):
        Settings.load({"timezone": zone}, environ={})


def test_good_timezones() -> None:
    for zone in ("UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"):
        assert Settings.load(environ={"MIERUKA_TIMEZONE": zone}).timezone == zone


def test_bad_config_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="missing.toml"):
        Settings.load(environ={}, config_file=missing)
    broken = write(tmp_path / "broken.toml", "port = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        Settings.load(environ={}, config_file=broken)
    with pytest.raises(ConfigError, match="missing.toml"):
        Settings.load(environ={"MIERUKA_CONFIG": str(missing)})


def test_only_settings_reads_the_environment() -> None:
    """ "Code receives a Settings object; nothing else reads the environment" (settings.py)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "settings.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv", "environb")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ("environ", "getenv") for a in node.names)
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


# -- docs/settings.md -----------------------------------------------------------------------------
def human_seconds(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def human_size(size: int) -> str:
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def kind(spec: dict[str, Any]) -> str:
    if spec["name"] in _DURATIONS:
        return "duration"
    if spec["name"] in SIZES:
        return "size"
    return {"str": "text", "int": "integer", "float": "number", "bool": "boolean"}.get(
        str(getattr(spec["type"], "__name__", spec["type"])), str(spec["type"])
    )


def shown_default(spec: dict[str, Any]) -> str:
    value = spec["default"]
    if spec["name"] in _DURATIONS:
        return f"`{human_seconds(float(value))}`"
    if spec["name"] in SIZES:
        return f"`{human_size(int(value))}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def render_doc() -> str:
    rows = "\n".join(
        f"| `{s['name']}` | `{s['env']}` | {kind(s)} | {shown_default(s)} | {s['help'].replace('|', '/')} |"
        for s in Settings.describe()
    )
    return f"""# Settings

<!-- Generated from mieruka.Settings.describe() by `python tests/unit/test_settings.py`; do not edit the
table by hand. tests/unit/test_settings.py fails when a setting is missing here. -->

mieruka has one settings table. Every setting can be given, from lowest to highest precedence:

1. its default (below);
2. a TOML config file: `mieruka.toml` in the working directory, or the file named by the
   `MIERUKA_CONFIG` environment variable. Settings go either at the top level of the file or in a
   `[mieruka]` table (when the file has a `[mieruka]` table, only that table is read);
3. an environment variable `MIERUKA_<NAME>` (empty values are ignored);
4. explicit overrides: command-line flags (`--port`, `--home`, ...) and `App(...)` /
   `app.configure(...)` keywords.

```toml
# mieruka.toml
port = 9000
poll_interval = "2s"
max_upload_size = "1GB"

# or, equivalently:
# [mieruka]
# port = 9000
```

```sh
MIERUKA_PORT=9000 MIERUKA_TIMEZONE=Asia/Tokyo mieruka run app.py
```

Values are checked at start-up: an unknown setting name, a value that cannot be read, or an unknown
time zone stops mieruka with a one-line `ConfigError` message.

- **duration** settings take seconds (`90`, `2.5`) or units `ms`, `s`, `m`, `h`, `d`, `w`, combined
  as in `1h30m`;
- **size** settings take bytes (`1048576`) or `KB`, `MB`, `GB`, `TB` (powers of 1024; `100MB`,
  `2 GiB`, `512k`);
- **boolean** settings take `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.

| Setting | Environment variable | Type | Default | Meaning |
|---|---|---|---|---|
{rows}
"""


def doc_rows() -> dict[str, str]:
    """Table rows of docs/settings.md by setting name."""
    rows = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            rows[line.split("`")[1]] = line
    return rows


def test_docs_list_every_setting_and_env_var() -> None:
    text = DOC.read_text()
    rows = doc_rows()
    for spec in Settings.describe():
        assert spec["name"] in rows, f"setting {spec['name']} is missing from docs/settings.md"
        row = rows[spec["name"]]
        assert f"`{spec['env']}`" in row, f"{spec['env']} is not documented next to {spec['name']}"
        assert spec["env"] in text


def test_docs_show_the_current_defaults() -> None:
    rows = doc_rows()
    for spec in Settings.describe():
        cells = [c.strip() for c in rows[spec["name"]].strip("|").split("|")]
        assert cells[3] == shown_default(spec), (
            f"docs/settings.md shows default {cells[3]} for {spec['name']}, "
            f"the code has {spec['default']!r}; "
            "regenerate with `python tests/unit/test_settings.py`"
        )
        assert cells[4], f"{spec['name']} has no explanation in docs/settings.md"


def test_docs_list_no_removed_setting() -> None:
    known = {s["name"] for s in Settings.describe()}
    assert set(doc_rows()) == known


def test_every_setting_has_help_and_env_name() -> None:
    specs = Settings.describe()
    assert len(specs) == len({s["name"] for s in specs})
    for spec in specs:
        assert spec["help"].strip(), spec["name"]
        assert spec["env"] == "MIERUKA_" + spec["name"].upper()
        # the default must survive the same parsing as a configured value
        loaded = Settings.load({spec["name"]: spec["default"]}, environ={})
        assert getattr(loaded, spec["name"]) == spec["default"]


def test_doc_renderer_formats() -> None:
    assert human_seconds(30 * 86400) == "30d"
    assert human_seconds(300) == "5m"
    assert human_seconds(1.5) == "1.5s"
    assert human_size(100 * 1024**2) == "100MB"
    assert human_size(1000) == "1000"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render_doc())
    print(f"wrote {DOC.relative_to(ROOT)}")


def test_configure_rebuilds_what_was_built_from_the_old_settings(tmp_path: Path) -> None:
    """Accounts opened before configure() follow it to the new database (they used to stay on the old)."""
    import mieruka

    app = mieruka.App("twice")
    app.configure(home=str(tmp_path / "first"))
    app.auth.db.migrate()
    app.auth.accounts.add_user("ada", "admin", None)
    app.configure(home=str(tmp_path / "second"))
    app.auth.db.migrate()
    assert not app.auth.accounts.has_users()
    app.stop()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://example.org/mieruka", "HTTPS://intra.example:8443/"])
def test_a_public_url_is_an_http_address(url: str) -> None:
    assert Settings.load(environ={"MIERUKA_PUBLIC_URL": url}).public_url == url


@pytest.mark.parametrize(
    "given, used",
    [
        ("", ""),
        ("/", ""),
        ("/lab", "/lab"),
        ("/lab/", "/lab"),
        ("lab", "/lab"),
        (" /a//b/ ", "/a/b"),
        ("/%7Eann", "/%7Eann"),
    ],
)
def test_a_root_path_is_one_slash_before_each_segment(given: str, used: str) -> None:
    """As a proxy's configuration may write it ("/mieruka/", "mieruka"): pages' links then have no "//"."""
    assert Settings.load(environ={"MIERUKA_ROOT_PATH": given}).root_path == used
