"""The one settings table. Each setting is declared once here with its type, default and help.

Values come from, lowest to highest: the defaults below, a TOML config file (`mieruka.toml` in the
working directory or the file named by MIERUKA_CONFIG), `MIERUKA_<NAME>` environment variables, and
explicit overrides (CLI flags, `App(...)` keywords). Code receives a `Settings` object; nothing
else reads the environment.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .durations import parse_duration
from .errors import ConfigError
from .i18n import _, of_locale, supported

ENV_PREFIX = "MIERUKA_"


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def parse_size(value: str | int) -> int:
    """Bytes in "100MB", "2 GiB", "512k" or a plain number."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        text = str(value).strip().lower().replace(" ", "").removesuffix("b").removesuffix("i")
        units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
        try:
            number = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else int(text)
            if not math.isfinite(number):
                raise ValueError
            size = int(number)
        except (ValueError, OverflowError):
            raise ConfigError(
                _("cannot read size %(value)s: use forms like '100MB' or '1GB'", value=repr(value))
            ) from None
    if size < 0:
        raise ConfigError(_("a size must not be negative: %(value)s", value=repr(value)))
    return size


@dataclass(frozen=True)
class Settings:
    home: str = _setting(".mieruka", "Data directory: database, artifacts and uploads live here.")
    database_url: str = _setting("", "SQLAlchemy URL of the job store; default SQLite in the home.")
    database_busy_timeout: float = _setting(
        30.0,
        "SQLite: how long a write waits while another process holds the database's write lock, "
        "before it gives up with 503 database_unavailable; a command's start-up check waits as long, up to 5 s.",
    )
    executor: str = _setting(
        "local",
        "Where jobs run: 'local' (worker processes of this server), 'threads' (threads of the "
        "server process: no worker processes, for small machines; a job cannot be killed, see "
        "docs/architecture.md) or 'celery' (Celery workers started with `mieruka worker`, on any machine).",
    )
    broker_url: str = _setting("", "Celery broker URL (redis://... or amqp://...) for executor 'celery'.")
    broker_visibility_timeout: float = _setting(
        3600.0, "Redis broker: an unacknowledged job message is delivered again after this long (its worker died)."
    )
    broker_check_interval: float = _setting(
        5.0,
        "Redis broker: how often servers check that it still holds "
        "the messages of queued jobs (a restart without persistence "
        "loses them) and send them again if not; 0 turns it off.",
    )
    event_bus: str = _setting(
        "memory",
        "How live events travel: 'memory' (one server process) or a "
        "redis:// URL, so that several server processes share them. On Celery, "
        "the broker when it is Redis; with another broker, a redis:// URL is needed.",
    )
    artifact_storage: str = _setting(
        "local",
        "Where job artifacts are kept: 'local' (the home's artifacts "
        "folder) or s3://bucket/prefix, shared by workers on several machines.",
    )
    s3_endpoint_url: str = _setting("", "Endpoint of an S3-compatible service (MinIO, ...); empty for AWS.")
    workers: int = _setting(
        0, "Worker processes of the local executor (threads of the threads executor); 0 means one per CPU core."
    )
    worker_start: str = _setting(
        "fork",
        "How the local executor starts its workers: 'fork' (forked from one process that imported the "
        "app once: they share its memory and start in milliseconds; Linux only, elsewhere 'spawn') or "
        "'spawn' (a fresh interpreter per worker, importing the app each).",
    )
    host: str = _setting("127.0.0.1", "Address the server binds to.")
    port: int = _setting(8000, "Port the server listens on.")
    root_path: str = _setting("", "Path prefix when served behind a reverse proxy, e.g. /mieruka.")
    url: str = _setting("http://127.0.0.1:8000", "Server URL used by the CLI client commands.")
    public_url: str = _setting(
        "",
        "The server's address as its users reach it, path prefix included (e.g. "
        "https://example.org/mieruka), for the links the CLI prints (`mieruka users "
        "link`, the demo's login link). Empty: http://host:port plus root_path.",
    )
    token: str = _setting("", "API token the CLI client commands send (`mieruka tokens create`).")
    timezone: str = _setting("UTC", "Time zone used to show times; stored times are always UTC.")
    language: str = _setting(
        "en",
        "The pages' language when neither the user's own setting nor the browser (Accept-Language) "
        "names one of mieruka's: en, ja, zh-Hans or ru (docs/i18n.md).",
    )
    max_upload_size: int = _setting(100 * 1024**2, "Largest accepted upload in bytes (e.g. 100MB).")
    run_wait_max: float = _setting(60.0, "Longest wait of POST /api/tasks/{task}/run, seconds.")
    poll_interval: float = _setting(1.0, "Backstop poll for jobs queued by other processes, seconds.")
    engine_stale_after: float = _setting(30.0, "A server silent this long has its jobs recovered.")
    retention_max_age: float = _setting(30 * 86400.0, "Finished jobs older than this are pruned.")
    retention_max_jobs: int = _setting(100_000, "Keep at most this many finished jobs per task.")
    prune_interval: float = _setting(300.0, "How often the retention policy runs, seconds.")
    pool_check_interval: float = _setting(
        5.0, "How often compute pools are checked (start when jobs wait, stop when idle), seconds."
    )
    heartbeat_interval: float = _setting(15.0, "SSE heartbeat and server liveness period, seconds.")
    source_timeout: float = _setting(30.0, "Longest a data source refresh may take before it is stopped.")
    source_max_rows: int = _setting(1_000_000, "Most rows a data source refresh reads; more are cut off.")
    auto_migrate: bool = _setting(True, "Upgrade the database schema at start-up.")
    log_level: str = _setting("info", "Server log level.")
    session_max_age: float = _setting(7 * 86400.0, "A login session lasts this long (e.g. 8h, 7d).")
    presence_expiry: float = _setting(300.0, "A user not seen for this long is no longer shown as online.")
    login_max_failures: int = _setting(
        5, "Failed logins for one user name before it is locked for login_lockout (per address: four times as many)."
    )
    login_lockout: float = _setting(900.0, "Window of login_max_failures and how long a lock lasts.")
    password_hash_memory: int = _setting(
        65536,
        "Memory of each password hash (argon2id, 3 passes), KiB: 64 MiB by default (RFC 9106). A small board may "
        "lower it (not below 1024); a password hashed otherwise is hashed again at its next login.",
    )
    audit_retention: float = _setting(400 * 86400.0, "Audit log entries older than this are deleted.")
    trusted_proxies: str = _setting(
        "",
        "Comma-separated addresses (or networks, 10.0.0.0/8) of reverse proxies "
        "whose X-Forwarded-For and X-Forwarded-Proto are believed; empty: none, "
        "the connection's own address counts.",
    )
    allowed_hosts: str = _setting(
        "",
        "Comma-separated host names the server answers to (the Host header; "
        "'*' for any). Empty: while the server has no users, only the bound "
        "address, localhost and 127.0.0.1; once it has users, any.",
    )
    max_body_size: int = _setting(
        4 * 1024**2, "Largest JSON or form body accepted, in bytes (uploads have max_upload_size)."
    )
    max_json_depth: int = _setting(32, "Deepest nesting of arrays and objects accepted in a JSON body.")
    max_json_keys: int = _setting(10_000, "Most object keys accepted in one JSON body, all objects together.")
    header_timeout: float = _setting(
        10.0, "A connection that has not sent a whole request head in this long is closed."
    )
    body_timeout: float = _setting(
        30.0, "A request whose body stalls (no bytes) for this long is answered 408 and its connection closed."
    )
    max_connections_per_address: int = _setting(
        100, "Most open connections from one client address (trusted proxies are not limited); 0: no limit."
    )
    ldap_url: str = _setting(
        "",
        "Directory login (LDAP, Active Directory; docs/directory.md): ldaps://host or ldap://host:389; "
        "several, comma-separated, are tried in order (domain controllers). Empty: no directory.",
    )
    ldap_starttls: bool = _setting(False, "Encrypt an ldap:// connection with StartTLS before binding.")
    ldap_allow_plain: bool = _setting(
        False, "Allow passwords over an unencrypted ldap:// connection (no StartTLS): only on a network you trust."
    )
    ldap_ca_file: str = _setting(
        "", "CA certificates (PEM) the directory's certificate is checked against; empty: the system's."
    )
    ldap_bind_dn: str = _setting("", "DN of the service account that searches users and groups; empty: anonymous.")
    ldap_bind_password: str = _setting("", "Password of ldap_bind_dn.")
    ldap_user_base: str = _setting("", "DN under which users are searched, e.g. ou=people,dc=example,dc=org.")
    ldap_user_attribute: str = _setting("uid", "Attribute holding the login name (Active Directory: sAMAccountName).")
    ldap_user_filter: str = _setting(
        "(objectClass=person)", "LDAP filter every user must match besides the name (e.g. a required group)."
    )
    ldap_group_base: str = _setting("", "DN under which groups are searched; empty: ldap_user_base.")
    ldap_group_filter: str = _setting(
        "", "LDAP filter groups must match too (e.g. (objectClass=groupOfNames)); empty: any entry listing the member."
    )
    ldap_member_attribute: str = _setting("member", "Attribute of a group listing its members' DNs.")
    ldap_nested: str = _setting(
        "auto",
        "Groups within groups: 'in_chain' (Active Directory's LDAP_MATCHING_RULE_IN_CHAIN), 'walk' "
        "(search level by level, up to ldap_nested_depth), 'auto' (in_chain on Active Directory, else walk), 'off'.",
    )
    ldap_nested_depth: int = _setting(5, "Most levels of groups within groups walked.")
    ldap_roles: str = _setting(
        "",
        "Directory groups to roles, a JSON object (or TOML table) by group DN or name: "
        '{"cn=lab-admins,ou=groups,dc=example,dc=org": "admin", "lab": "operator"}; the highest wins.',
    )
    ldap_default_role: str = _setting(
        "", "Role of a directory user in no group of ldap_roles; empty: such a user cannot log in."
    )
    ldap_disabled_filter: str = _setting(
        "",
        "LDAP filter of disabled accounts, besides AD's userAccountControl, ppolicy's pwdAccountLockedTime "
        "and nsAccountLock, e.g. (employeeType=former).",
    )
    ldap_recheck: float = _setting(
        900.0, "A directory user's session or token is checked with the directory again after this long."
    )
    ldap_grace: float = _setting(
        3600.0,
        "While the directory cannot be reached, signed-in directory users keep working this long past ldap_recheck.",
    )
    ldap_timeout: float = _setting(5.0, "Longest wait for the directory to connect or answer, seconds.")
    trusted_user_header: str = _setting(
        "",
        "Header naming the user that an authenticating proxy (IIS Windows authentication, nginx auth_request) "
        "sends, e.g. X-Remote-User; believed only from trusted_proxies. Empty: none.",
    )
    trusted_user_strip_domain: bool = _setting(True, "Take DOMAIN\\user and user@realm in trusted_user_header as user.")
    trusted_user_role: str = _setting(
        "viewer",
        "Role of a user first seen through trusted_user_header (with ldap_url: the directory's groups decide).",
    )
    oidc_providers: str = _setting(
        "",
        "OpenID Connect providers for single sign-on: a JSON list (in mieruka.toml also an array of "
        "tables) of {id, name, issuer, client_id, client_secret, ...}; see docs/sso.md. Empty: none.",
    )
    oidc_username_claim: str = _setting(
        "preferred_username,email", "ID token claims naming the user, the first present is used (docs/sso.md)."
    )
    oidc_groups_claim: str = _setting(
        "groups", "ID token claim listing the user's groups (e.g. groups, roles, realm_access.roles)."
    )
    oidc_roles: str = _setting(
        "",
        "Provider groups to roles, a JSON object (or TOML table): "
        '{"lab-admins": "admin", "lab": "operator"}; the highest wins.',
    )
    oidc_default_role: str = _setting(
        "", "Role of a single sign-on user in no group of oidc_roles; empty: such a user cannot sign in."
    )
    notify_smtp_host: str = _setting(
        "", "Notifications by e-mail (docs/notifications.md): the SMTP server; empty: no e-mail."
    )
    notify_smtp_port: int = _setting(587, "Port of the SMTP server (587 with STARTTLS, 25 inside a trusted network).")
    notify_smtp_starttls: bool = _setting(
        True, "Encrypt the SMTP connection with STARTTLS before logging in or sending."
    )
    notify_smtp_user: str = _setting("", "User name for the SMTP server's login; empty: no login.")
    notify_smtp_password: str = _setting("", "Password of notify_smtp_user.")
    notify_smtp_from: str = _setting("mieruka@localhost", "Sender address of notification e-mails.")
    notify_ca_file: str = _setting(
        "", "CA certificates (PEM) trusted for the SMTP server and webhooks besides the system's (an intranet CA)."
    )
    notify_webhook_secret: str = _setting(
        "", "Key of the generic webhooks' HMAC signature (X-Mieruka-Signature) when their rule has none of its own."
    )
    notify_webhook_timeout: float = _setting(10.0, "Longest wait for an SMTP server or a webhook receiver, seconds.")
    notify_digest_window: float = _setting(
        60.0, "After a rule's message, its next events wait this long and go together as one digest (e.g. 1m)."
    )
    notify_poll_interval: float = _setting(1.0, "How often a server looks for notifications to route and send.")
    notify_retry_after: float = _setting(
        10.0, "First wait before a message that failed is sent again; doubled each time."
    )
    notify_max_attempts: int = _setting(8, "Attempts at one message before it is given up as failed.")
    notify_user_webhook_hosts: str = _setting(
        "",
        "Hosts (comma separated) that users' own subscriptions may send webhooks to; empty: users subscribe by "
        "e-mail only (a webhook makes the server call a URL: admins choose where).",
    )
    notify_retention: float = _setting(
        30 * 86400.0, "Notification messages sent or given up, and their events, are deleted after this long."
    )

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_path / 'mieruka.db'}"

    @property
    def effective_event_bus(self) -> str:
        """Celery workers live in other processes: with a Redis broker, events travel over it too."""
        if (
            self.event_bus in ("", "memory")
            and self.executor == "celery"
            and self.broker_url.startswith(("redis://", "rediss://"))
        ):
            return self.broker_url
        return self.event_bus

    @property
    def served_url(self) -> str:
        """The server's address as its users reach it, path prefix included: public_url, else the
        address and root path it serves (a wildcard address shown as 127.0.0.1)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self.root_path}"

    @property
    def effective_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **_coerce_all({k: v for k, v in values.items() if v is not None}))

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
    ) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = config_file or environ.get(ENV_PREFIX + "CONFIG")
        if path is None and Path("mieruka.toml").is_file():
            path = "mieruka.toml"
        if path:
            import tomllib  # read only where there is a file

            try:
                with open(path, "rb") as fh:
                    data = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(_("cannot read config file %(path)s: %(error)s", path=path, error=exc)) from None
            values.update(data.get("mieruka", data))
        for spec in fields(cls):
            env_value = environ.get(ENV_PREFIX + spec.name.upper())
            if env_value is not None and env_value != "":
                values[spec.name] = env_value
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls(**_coerce_all(values))

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Every setting with its environment variable, default and help: the docs' source."""
        return [
            {
                "name": s.name,
                "env": ENV_PREFIX + s.name.upper(),
                "default": s.default,
                "type": s.type,
                "help": s.metadata["help"],
            }
            for s in fields(cls)
        ]


def environment_language() -> str | None:
    """The language the environment names for the command line's messages: MIERUKA_LANGUAGE when it
    is one of mieruka's, else the locale's (LANG=ja_JP.UTF-8: "ja"; i18n.of_locale), else None."""
    return supported(os.environ.get(ENV_PREFIX + "LANGUAGE")) or of_locale(os.environ)


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process we start (a pool's workers, its hook commands): ours, with
    `extra` (settings as MIERUKA_* variables) on top. The one other place that reads it."""
    return {**os.environ, **extra}


_DURATIONS = {
    "ldap_recheck",
    "ldap_grace",
    "ldap_timeout",
    "notify_webhook_timeout",
    "notify_digest_window",
    "notify_poll_interval",
    "notify_retry_after",
    "notify_retention",
    "database_busy_timeout",
    "broker_visibility_timeout",
    "broker_check_interval",
    "pool_check_interval",
    "run_wait_max",
    "poll_interval",
    "engine_stale_after",
    "retention_max_age",
    "prune_interval",
    "heartbeat_interval",
    "session_max_age",
    "presence_expiry",
    "login_lockout",
    "audit_retention",
    "source_timeout",
    "header_timeout",
    "body_timeout",
}


def _coerce_all(values: Mapping[str, Any]) -> dict[str, Any]:
    known = {s.name: s for s in fields(Settings)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise ConfigError(_("unknown setting %(name)s", name=repr(name)))
        out[name] = _coerce(name, known[name].type, value)
    for name in (
        "database_busy_timeout",
        "source_max_rows",
        "source_timeout",
        "max_body_size",
        "max_json_depth",
        "max_json_keys",
        "header_timeout",
        "body_timeout",
    ):
        if name in out and out[name] <= 0:
            raise ConfigError(_("setting %(name)s must be positive, got %(value)s", name=name, value=out[name]))
    for name in ("notify_webhook_timeout", "notify_poll_interval", "notify_max_attempts"):
        if name in out and out[name] <= 0:
            raise ConfigError(_("setting %(name)s must be positive, got %(value)s", name=name, value=out[name]))
    for name in ("workers", "retention_max_jobs", "login_max_failures", "max_connections_per_address"):
        if name in out and out[name] < 0:
            raise ConfigError(_("setting %(name)s must be >= 0, got %(value)s", name=name, value=out[name]))
    if "password_hash_memory" in out and not 1024 <= out["password_hash_memory"] <= 4 * 1024 * 1024:
        raise ConfigError(
            _(
                "setting %(name)s must be between %(low)s and %(high)s KiB, got %(value)s",
                name="password_hash_memory",
                low=1024,
                high=4194304,
                value=out["password_hash_memory"],
            )
        )
    if "worker_start" in out and out["worker_start"] not in ("fork", "spawn"):
        raise ConfigError(
            _(
                "setting %(name)s must be %(one)s or %(other)s, got %(value)s",
                name="worker_start",
                one="'fork'",
                other="'spawn'",
                value=repr(out["worker_start"]),
            )
        )
    if "port" in out and not 0 < out["port"] < 65536:
        raise ConfigError(
            _(
                "setting %(name)s must be between %(low)s and %(high)s, got %(value)s",
                name="port",
                low=1,
                high=65535,
                value=out["port"],
            )
        )
    if "language" in out:
        tag = supported(out["language"])
        if tag is None:
            raise ConfigError(
                _(
                    "setting %(name)s must be one of %(choices)s, got %(value)s",
                    name="language",
                    choices="en, ja, zh-Hans, ru",
                    value=repr(out["language"]),
                )
            )
        out["language"] = tag
    if out.get("public_url"):
        web_address(out["public_url"], "public_url")
    if "root_path" in out:
        out["root_path"] = path_prefix(out["root_path"], "root_path")
    if "timezone" in out:
        try:
            ZoneInfo(out["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(_("unknown time zone %(zone)s", zone=repr(out["timezone"]))) from None
    return out


def web_address(value: str, name: str) -> str:
    """`value` if it is an http:// or https:// address with a host (what a link printed for users
    starts with), else a ConfigError naming the setting or option `name`."""
    scheme, _sep, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if scheme.lower() not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise ConfigError(
            _("%(option)s must be an http:// or https:// address, got %(value)s", option=name, value=repr(value))
        )
    return value


_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=:@-]+")


def path_prefix(value: str, name: str) -> str:
    """A path prefix as the server uses it: "" or "/a/b" (a proxy's "/mieruka/" or "mieruka" is
    "/mieruka"); an address, a query, a space or "..": a ConfigError naming `name`."""
    segments = [part for part in value.strip().split("/") if part]
    if "://" in value or any(not _PATH_SEGMENT.fullmatch(part) or part in (".", "..") for part in segments):
        raise ConfigError(
            _(
                "%(option)s must be a path such as /mieruka (no address, query or spaces), got %(value)s",
                option=name,
                value=repr(value),
            )
        )
    return "".join(f"/{part}" for part in segments)


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    if name in _DURATIONS:
        return parse_duration(value)
    if (name == "oidc_providers" and isinstance(value, list)) or (name == "oidc_roles" and isinstance(value, dict)):
        return json.dumps(value)  # a TOML array of tables, a TOML table
    if name == "ldap_roles" and isinstance(value, dict):
        return json.dumps(value)  # a TOML table
    if name in ("max_upload_size", "max_body_size"):
        return parse_size(value)
    try:
        if type_name in ("int", int):
            return int(value)
        if type_name in ("float", float):
            return float(value)
        if type_name in ("bool", bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except (ValueError, TypeError):
        raise ConfigError(
            _("setting %(name)s expects a %(type)s, got %(value)s", name=name, type=type_name, value=repr(value))
        ) from None
    return str(value)
