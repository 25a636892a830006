"""`mieruka users ...` and `mieruka tokens ...`: accounts managed on the database directly, so the
first admin can be added before any server runs. Each change is written to the audit log."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.clock import utcnow
from .errors import MierukaError
from .i18n import BY_TAG, _
from .settings import Settings, web_address

if TYPE_CHECKING:
    from .runtime import Runtime

ACTOR = "cli"


def add_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="add, list, remove users or change their password or role")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = users_sub.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", default="viewer", help="admin, operator or viewer (default viewer)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument(
        "--no-password",
        action="store_true",
        help="no password: log in with a one-time link (`mieruka users link NAME`) or use API tokens",
    )
    users_sub.add_parser("ls", help="list users")
    rm = users_sub.add_parser("rm", help="remove a user with their sessions and tokens")
    rm.add_argument("name")
    passwd = users_sub.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = users_sub.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", help="admin, operator or viewer")
    language = users_sub.add_parser("language", help="set the language of a user's pages")
    language.add_argument("name")
    language.add_argument("language", help="en, ja, zh-Hans or ru; auto: the browser's")
    link = users_sub.add_parser("link", help="print a one-time login link for a user (valid 24 hours)")
    link.add_argument("name")
    link.add_argument(
        "--url",
        help="the server's address as users reach it, with any path prefix (default: "
        "the public_url setting, else the address and root path it serves)",
    )

    tokens = sub.add_parser("tokens", help="create, list or revoke API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens_sub.add_parser("create", help="create an API token; prints it once")
    create.add_argument("--user", required=True)
    create.add_argument("--name", default="", help="what the token is for")
    create.add_argument("--expires-in-days", type=float, help="expire after this many days (default never)")
    ls = tokens_sub.add_parser("ls", help="list API tokens")
    ls.add_argument("--user")
    revoke = tokens_sub.add_parser("revoke", help="revoke an API token by id")
    revoke.add_argument("id", type=int)
    from .cli_home import HOME_HELP

    for parser in (*users_sub.choices.values(), *tokens_sub.choices.values()):
        parser.add_argument("--home", help=HOME_HELP)
        parser.add_argument("--database-url", help="SQLAlchemy URL of the store (default SQLite in the home)")


def _auth(args: argparse.Namespace, wanted: str | None) -> tuple[Any, Path | None]:
    """The accounts of the database the settings name, and the SQLite file if this made it. Only
    `users add` (wanted None) may create one: any other command finding none says where it looked."""
    from .auth.service import Auth
    from .cli_home import home_origin

    settings = Settings.load({"home": args.home, "database_url": args.database_url})
    database = sqlite_file(settings.effective_database_url)
    created = database is not None and not database.exists()
    if created and wanted is not None:
        raise MierukaError(
            _(
                "%(wanted)s: no database at %(path)s (%(origin)s): run this where the server runs, or "
                "pass --home or set MIERUKA_HOME to the server's data directory",
                wanted=wanted,
                path=database,
                origin=home_origin(settings, args.home),
            )
        )
    from .store.check import check_database

    check_database(settings.effective_database_url, settings.database_busy_timeout)
    auth = Auth.from_settings(settings)
    auth.db.migrate()
    return auth, database if created else None


def _forget(database: Path) -> None:
    """Remove the database a failed `users add` created: a mistake leaves nothing behind."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases and in-memory SQLite."""
    from .store.database import sqlite_path

    if not url.startswith("sqlite"):
        return None
    path = sqlite_path(url)
    return None if path == ":memory:" else Path(path).expanduser()


def _wanted(args: argparse.Namespace) -> str | None:
    """What a command looks for, to say it is missing when there is no database at all."""
    if args.command == "users":
        action = args.users_command
        if action == "add":
            return None
        return _("no users") if action == "ls" else _("no user named %(name)s", name=repr(args.name))
    action = args.tokens_command
    if action == "create":
        return _("no user named %(name)s", name=repr(args.user))
    return _("no tokens") if action == "ls" else _("no token with id %(id)s", id=args.id)


def public_url(settings: Settings) -> str:
    """The server's address as its users reach it: the public_url setting, else that of a server
    running on this database now (it records where it serves), else what the settings say."""
    if not settings.public_url:
        from .store.sql import SqlJobStore

        store = SqlJobStore(settings.effective_database_url)
        try:
            stale = timedelta(seconds=settings.engine_stale_after)
            for engine in store.engines():  # the most recent heartbeat first
                url = engine.info.get("url")
                if engine.info.get("kind") == "server" and url and utcnow() - engine.heartbeat_at <= stale:
                    return str(url)
        except Exception:
            pass
        finally:
            store.close()
    return settings.served_url


def _password(args: argparse.Namespace, name: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise MierukaError(_("no terminal to ask for the password: pipe it in with --password-stdin"))
    first = getpass.getpass(_("password for %(name)s: ", name=name))
    if getpass.getpass(_("again: ")) != first:
        raise MierukaError(_("the two passwords differ"))
    return first


def _actor() -> str:
    try:
        return f"{ACTOR}:{getpass.getuser()}"
    except (KeyError, OSError):
        return ACTOR


def users(args: argparse.Namespace) -> int:
    auth, created = _auth(args, _wanted(args))
    done = False
    try:
        accounts, action = auth.accounts, args.users_command
        if action == "ls":
            zone = auth.settings.zone
            print(f"{'NAME':<24} {'ROLE':<9} {'PASSWORD':<8}  {'FROM':<6} CREATED ({auth.settings.timezone})")
            for user in accounts.list_users():
                print(
                    f"{user.name:<24} {user.role.value:<9} {'yes' if user.has_password else 'no':<8}  "
                    f"{user.source:<6} {user.created_at.astimezone(zone):%Y-%m-%d %H:%M}"
                )
            return 0
        if action == "add":
            password = None if args.no_password else _password(args, args.name)
            user = accounts.add_user(args.name, args.role, password)
            auth.audit.record(_actor(), "user.add", f"user:{user.name}", "local", {"role": user.role.value})
            print(_("added %(name)s (%(role)s)", name=user.name, role=user.role.value))
            if created:
                from .cli_home import where_data_lives

                where = where_data_lives(auth.settings, args.home)
                print(
                    "mieruka: " + _("created a new database at %(path)s (%(where)s)", path=created, where=where),
                    file=sys.stderr,
                )
        elif action == "rm":
            accounts.remove_user(args.name)
            auth.audit.record(_actor(), "user.remove", f"user:{args.name}", "local")
            print(_("removed %(name)s", name=args.name))
        elif action == "passwd":
            accounts.set_password(args.name, _password(args, args.name))
            auth.audit.record(_actor(), "user.password", f"user:{args.name}", "local")
            print(_("password of %(name)s changed; their sessions ended", name=args.name))
        elif action == "role":
            user = accounts.set_role(args.name, args.role)
            auth.audit.record(_actor(), "user.role", f"user:{args.name}", "local", {"role": user.role.value})
            print(_("%(name)s is now %(role)s", name=user.name, role=user.role.value))
        elif action == "language":
            tag = auth.languages.set(args.name, args.language)
            auth.audit.record(_actor(), "user.language", f"user:{args.name}", "local", {"language": tag})
            if tag:
                language = f"{BY_TAG[tag].name} ({tag})"
                print(_("%(name)s's pages are now in %(language)s", name=args.name, language=language))
            else:
                print(_("%(name)s's pages are now in the language of their browser", name=args.name))
        elif action == "link":
            if args.url:
                web_address(args.url, "--url")
            secret = accounts.create_login_link(args.name)
            auth.audit.record(_actor(), "user.link", f"user:{args.name}", "local")
            base = args.url.rstrip("/") if args.url else public_url(auth.settings)
            print(f"{base}/login/link/{secret}")
        done = True
        return 0
    finally:
        auth.close()
        if created and not done:
            _forget(created)


def tokens(args: argparse.Namespace) -> int:
    auth, _created = _auth(args, _wanted(args))
    try:
        accounts, action = auth.accounts, args.tokens_command
        if action == "create":
            days = args.expires_in_days
            if days is not None and not 0 < days <= 3650:
                raise MierukaError(_("%(option)s must be between 0 and 3650", option="--expires-in-days"))
            expires = utcnow() + timedelta(days=days) if days else None
            token, secret = accounts.create_token(args.user, args.name, expires)
            auth.audit.record(
                _actor(), "token.create", f"token:{token.id}", "local", {"user": args.user, "name": args.name}
            )
            print(secret)
            print(
                _(
                    "token %(id)s for %(user)s: shown this once, send it as 'Authorization: Bearer ...'",
                    id=token.id,
                    user=args.user,
                ),
                file=sys.stderr,
            )
        elif action == "ls":
            now, zone = utcnow(), auth.settings.zone
            print(
                f"{'ID':>4}  {'USER':<16} {'NAME':<24} {'TOKEN':<12} {'STATE':<8} LAST USED ({auth.settings.timezone})"
            )
            for t in accounts.list_tokens(args.user):
                state = "revoked" if t.revoked_at else "active" if t.active(now) else "expired"
                used = f"{t.last_used_at.astimezone(zone):%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                print(f"{t.id:>4}  {t.user:<16} {t.name[:24]:<24} {t.hint + '...':<12} {state:<8} {used}")
        else:
            token = accounts.get_token(args.id)
            if token.kind != "api":
                raise MierukaError(_("no API token with id %(id)s", id=args.id))
            accounts.revoke_token(args.id)
            auth.audit.record(_actor(), "token.revoke", f"token:{args.id}", "local", {"user": token.user})
            print(_("revoked token %(id)s of %(user)s", id=args.id, user=token.user))
        return 0
    finally:
        auth.close()


def demo_login_link(runtime: Runtime) -> str:
    """`mieruka demo`: a demo admin (made once) and a fresh one-time login link at every start."""
    auth = runtime.auth
    auth.db.migrate()
    if not any(u.name == "demo" for u in auth.accounts.list_users()):
        auth.accounts.add_user("demo", "admin", None)
        auth.audit.record(_actor(), "user.add", "user:demo", "local", {"role": "admin"})
    secret = auth.accounts.create_login_link("demo")
    return f"{runtime.settings.served_url}/login/link/{secret}"
