"""Users (argon2 password hashes), API tokens, one-time login links, server-side sessions, and
the throttle every password check from a request goes through.

Secrets (tokens, links, session ids) are random and long; only their SHA-256 is stored, so a copy
of the database lets nobody in. They are shown once, when created.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ..core.access import Principal, Role, parse_role
from ..core.clock import utcnow
from ..errors import ConflictError, NotFoundError, TooManyAttempts, ValidationError
from ..i18n import _, ngettext
from ..store.codec import MAX_INT, json_out, json_text, time_of, time_out
from ..store.database import Database
from .audit import AuditLog

if TYPE_CHECKING:
    from argon2 import PasswordHasher


def new_hasher(memory_cost: int) -> PasswordHasher:
    """argon2id with `memory_cost` KiB, 3 passes (argon2-cffi's defaults otherwise)."""
    from argon2 import PasswordHasher

    return PasswordHasher(memory_cost=memory_cost)


class Vouching(Protocol):
    """Who checks a password that is no local user's (auth/directory.py's Directory)."""

    def sign_in(self, accounts: Accounts, name: str, password: str, address: str) -> User | None: ...


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "mrk_"
# Writing last_used_at on every API call would turn each read into a write: once a minute is enough.
LAST_USED_EVERY = timedelta(minutes=1)

# Where a user comes from: a local account (password, links) or an outside source that vouches for it.
SOURCES = ("local", "ldap", "oidc", "proxy")
MAX_GROUPS = 500  # of one user, as kept; a directory may list thousands

# Audit actions of password checks: failures count towards a lock, a success ends the user's.
LOGIN, LOGIN_FAILED = "login", "login.failed"
LOGIN_DIRECTORY, LOGIN_UNAVAILABLE = "login.directory", "login.unavailable"
PASSWORD_CHANGED, PASSWORD_CHANGE_FAILED = "user.password", "password.change_failed"
FAILURES = (LOGIN_FAILED, PASSWORD_CHANGE_FAILED)
SUCCESSES = (LOGIN, LOGIN_DIRECTORY, PASSWORD_CHANGED)
ADDRESS_FACTOR = 4  # an address may fail this many times the failures allowed for one name

# The users columns of a User, in _user_of's order, for plain SQL's statements.
_USER_COLUMNS = (
    "users.id, users.name, users.role, users.created_at, users.password_hash, "
    "users.source, users.groups, users.synced_at, users.display_name"
)
# The columns of a Token, in _token_of's order (tokens joined with their users).
_TOKEN_SELECT = (
    "SELECT tokens.id, users.name, tokens.kind, tokens.name, tokens.hint, tokens.created_at, tokens.expires_at, "
    "tokens.last_used_at, tokens.revoked_at FROM tokens JOIN users ON users.id = tokens.user_id"
)

DEFAULT_HASH_MEMORY = 65536  # KiB: RFC 9106's second recommendation (argon2id, t=3, 64 MiB, p=4)
DUMMY_PASSWORD = "not a password of anyone"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    created_at: datetime
    has_password: bool
    source: str = "local"
    groups: tuple[str, ...] = ()
    synced_at: datetime | None = None
    display_name: str | None = None

    def principal(self, via: str, csrf: str | None = None) -> Principal:
        return Principal(self.name, self.role, via, self.id, csrf, frozenset(self.groups))


@dataclass(frozen=True)
class Token:
    id: int
    user: str
    kind: str
    name: str
    hint: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ValidationError(
            _("name: 1 to 100 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"),
            [{"field": "name", "message": "invalid user name"}],
        )
    return name


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise ValidationError(
            _("password: at least %(num)s characters", num=MIN_PASSWORD),
            [{"field": "password", "message": f"at least {MIN_PASSWORD} characters"}],
        )
    if len(password) > 1024:
        raise ValidationError(_("password: at most 1024 characters"), [{"field": "password", "message": "too long"}])
    return password


def role_of(value: str) -> Role:
    try:
        return parse_role(value)
    except ValueError as exc:
        raise ValidationError(str(exc), [{"field": "role", "message": "unknown role"}]) from None


class Accounts:
    def __init__(
        self,
        db: Database,
        session_max_age: float = 7 * 86400.0,
        audit: AuditLog | None = None,
        hash_memory: int = DEFAULT_HASH_MEMORY,
    ) -> None:
        self.db = db
        self.session_max_age = session_max_age
        self.audit = audit or AuditLog(db)
        self.hash_memory = hash_memory
        self._hasher: PasswordHasher | None = None
        # Verifying against this keeps a login for an unknown name as slow as one for a known name.
        # Made at the first login: a hash costs a quarter of a second of CPU by default, which every
        # process making Accounts (CLI commands, servers) would pay at start-up.
        self._dummy: str | None = None

    @property
    def hasher(self) -> PasswordHasher:
        """argon2's hasher, imported at the first password (its C bindings: 2 MB, which a server
        that sees no password, on tokens or the loopback's open mode, never needs)."""
        if self._hasher is None:
            self._hasher = new_hasher(memory_cost=self.hash_memory)
        return self._hasher

    # -- users -----------------------------------------------------------------------------------
    def has_users(self) -> bool:
        with self.db.cursor() as cur:
            cur.execute("SELECT id FROM users LIMIT 1")
            return cur.fetchone() is not None

    def add_user(self, name: str, role: Role | str, password: str | None) -> User:
        check_name(name)
        role = role if isinstance(role, Role) else role_of(role)
        hashed = self.hasher.hash(check_password(password)) if password is not None else None
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(db.sql("SELECT id FROM users WHERE name = ?"), (name,))
            taken = cur.fetchone() is not None
            if not taken:
                cur.execute(
                    db.sql("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)"),
                    (name, role.value, hashed, db.codec.time(utcnow())),
                )
        if taken:
            raise ConflictError(_("a user named %(name)s exists already", name=repr(name)))
        return self.get_user(name)

    def is_local(self, name: str) -> bool:
        """Whether `name` is a local user's (whose password is checked here, never elsewhere)."""
        return self.db.row("SELECT id FROM users WHERE name = ? AND source = 'local'", (name,)) is not None

    def get_user(self, name: str) -> User:
        row = self.db.row(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(_("no user named %(name)s", name=repr(name)))
        return _user_of(row)

    def list_users(self) -> list[User]:
        return [_user_of(r) for r in self.db.rows(f"SELECT {_USER_COLUMNS} FROM users ORDER BY users.name")]

    def remove_user(self, name: str) -> None:
        user = self.get_user(name)
        db = self.db
        with db.write_cursor() as cur:
            self._keep_an_admin(cur, user, None)
            cur.execute(db.sql("DELETE FROM sessions WHERE user_id = ?"), (user.id,))
            cur.execute(db.sql("DELETE FROM tokens WHERE user_id = ?"), (user.id,))
            cur.execute(db.sql("DELETE FROM presence WHERE user_name = ?"), (user.name,))
            cur.execute(db.sql("DELETE FROM users WHERE id = ?"), (user.id,))

    def set_role(self, name: str, role: Role | str) -> User:
        user = self.get_user(name)
        role = role if isinstance(role, Role) else role_of(role)
        db = self.db
        with db.write_cursor() as cur:
            self._keep_an_admin(cur, user, role)
            cur.execute(db.sql("UPDATE users SET role = ? WHERE id = ?"), (role.value, user.id))
        return self.get_user(name)

    def set_password(self, name: str, password: str) -> None:
        """A new password also ends the user's sessions: whoever knew the old one is logged out."""
        user = self.get_user(name)
        if user.source != "local":
            raise ValidationError(
                f"{name!r} signs in through {user.source}: its password is kept there",
                [{"field": "password", "message": f"a {user.source} user"}],
            )
        hashed = self.hasher.hash(check_password(password))
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(db.sql("UPDATE users SET password_hash = ? WHERE id = ?"), (hashed, user.id))
            cur.execute(db.sql("DELETE FROM sessions WHERE user_id = ?"), (user.id,))

    def sign_in_external(
        self,
        name: str,
        source: str,
        role: Role | str,
        groups: Iterable[str],
        *,
        display_name: str | None = None,
        address: str = "",
    ) -> User:
        """The user an outside source (directory, OpenID provider, authenticating proxy) vouches for:
        created at its first login (without a password), else given the source's role and groups
        now; synced_at is now either way. A role change is audited (user.role, actor the source).
        A name held by a user of another source is refused: a directory's "admin" is not the local
        one."""
        check_name(name)
        if source not in SOURCES or source == "local":
            raise ValueError(f"not an outside source: {source!r}")
        role = role if isinstance(role, Role) else role_of(role)
        kept = sorted({g[:200] for g in groups if g})[:MAX_GROUPS]
        shown = display_name[:200] if display_name else None
        now = utcnow()
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(db.sql("SELECT id, role, source FROM users WHERE name = ?"), (name,))
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    db.sql(
                        "INSERT INTO users (name, role, password_hash, created_at, source, groups, synced_at, "
                        "display_name) VALUES (?, ?, NULL, ?, ?, ?, ?, ?)"
                    ),
                    (name, role.value, db.codec.time(now), source, json_text(kept), db.codec.time(now), shown),
                )
                self.audit.record(
                    source, "user.add", f"user:{name}", address, {"role": role.value, "source": source}, cur=cur
                )
            else:
                user_id, was, held_by = row
                if held_by != source:
                    raise ValidationError(
                        _(
                            "the user name %(name)s belongs to a %(source)s user; "
                            "an admin may remove or rename that user first",
                            name=repr(name),
                            source=held_by,
                        ),
                        [{"field": "name", "message": f"held by a {held_by} user"}],
                    )
                cur.execute(
                    db.sql("UPDATE users SET role = ?, groups = ?, synced_at = ?, display_name = ? WHERE id = ?"),
                    (role.value, json_text(kept), db.codec.time(now), shown, user_id),
                )
                if was != role.value:
                    self.audit.record(
                        source,
                        "user.role",
                        f"user:{name}",
                        address,
                        {"role": role.value, "was": was, "source": source},
                        cur=cur,
                    )
        return self.get_user(name)

    def mark_synced(self, name: str) -> None:
        """The source confirmed the user again (a re-check without a login)."""
        db = self.db
        db.run("UPDATE users SET synced_at = ? WHERE name = ?", (db.codec.time(utcnow()), name))

    def cut_off(self, name: str) -> int:
        """The source no longer knows the user (removed or disabled): end their sessions and revoke
        their tokens; the row stays (its jobs and audit entries name it) with no synced_at until the
        source vouches for it again, so its subscriptions fall silent too. The sessions ended."""
        user = self.get_user(name)
        now = utcnow()
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(db.sql("DELETE FROM sessions WHERE user_id = ?"), (user.id,))
            ended = cur.rowcount
            cur.execute(db.sql("UPDATE users SET synced_at = NULL WHERE id = ?"), (user.id,))
            cur.execute(
                db.sql("UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"),
                (db.codec.time(now), user.id),
            )
        return int(ended or 0)

    def _keep_an_admin(self, cur: Any, user: User, new_role: Role | None) -> None:
        """ConflictError if the change would leave no admin (`cur`: the change's write transaction)."""
        if user.role is not Role.ADMIN or new_role is Role.ADMIN:
            return
        cur.execute(self.db.sql("SELECT count(*) FROM users WHERE role = ?"), (Role.ADMIN.value,))
        admins = cur.fetchone()[0]
        if admins <= 1:
            raise ConflictError(_("%(name)s is the last admin; make another user admin first", name=repr(user.name)))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (same work either way)."""
        db = self.db
        row = db.row(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)) if name else None
        if self._dummy is None:  # the first login is the slower one, known name or not
            self._dummy = self.hasher.hash(DUMMY_PASSWORD)
        dummy = self._dummy
        password_hash = row[4] if row is not None else None  # _USER_COLUMNS' users.password_hash
        stored = password_hash or dummy
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            self.hasher.verify(stored, password[:1024])
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not password_hash:
            return None
        if self.hasher.check_needs_rehash(stored):
            db.run("UPDATE users SET password_hash = ? WHERE id = ?", (self.hasher.hash(password), row[0]))
        return _user_of(row)

    # -- tokens and one-time links ------------------------------------------------------------------
    def create_token(
        self, user: str, name: str = "", expires_at: datetime | None = None, kind: str = "api"
    ) -> tuple[Token, str]:
        """A new secret for the user; the secret is returned here and never again."""
        owner = self.get_user(user)
        if expires_at is not None and expires_at <= utcnow():
            raise ValidationError(
                "expires_at: must be in the future", [{"field": "expires_at", "message": "in the past"}]
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        db = self.db
        created_at, expires = db.codec.time(utcnow()), db.codec.time(expires_at)
        token_id = db.run_returning(
            "INSERT INTO tokens (user_id, kind, name, secret_hash, hint, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (owner.id, kind, name[:200], digest(secret), secret[:8], created_at, expires),
        )[0][0]
        return self.get_token(int(token_id)), secret

    def get_token(self, token_id: int) -> Token:
        if not 0 < token_id <= MAX_INT:
            raise NotFoundError(f"no token with id {token_id}")
        row = self.db.row(f"{_TOKEN_SELECT} WHERE tokens.id = ?", (token_id,))
        if row is None:
            raise NotFoundError(f"no token with id {token_id}")
        return _token_of(row)

    def list_tokens(self, user: str | None = None) -> list[Token]:
        if user is None:
            rows = self.db.rows(f"{_TOKEN_SELECT} WHERE tokens.kind = 'api' ORDER BY tokens.id DESC")
        else:
            rows = self.db.rows(
                f"{_TOKEN_SELECT} WHERE tokens.kind = 'api' AND users.name = ? ORDER BY tokens.id DESC", (user,)
            )
        return [_token_of(r) for r in rows]

    def revoke_token_as(self, who: Principal, token_id: int) -> Token:
        """Revoke an API token on someone's behalf: their own, or anyone's for an admin; to anybody
        else it does not exist."""
        token = self.get_token(token_id)
        if token.kind != "api" or (token.user != who.name and who.role is not Role.ADMIN):
            raise NotFoundError(f"no token with id {token_id}")
        return self.revoke_token(token_id)

    def revoke_token(self, token_id: int) -> Token:
        if not 0 < token_id <= MAX_INT:  # out of PostgreSQL's range: an error there, not "no match"
            raise NotFoundError(f"no token with id {token_id}")
        db = self.db
        db.run(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (db.codec.time(utcnow()), token_id)
        )
        return self.get_token(token_id)

    def check_token(self, secret: str) -> User | None:
        """The owner of an active API token (and note when it was used): one query on the hot path."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        db = self.db
        now = utcnow()
        with db.cursor() as cur:
            cur.execute(
                db.sql(
                    f"SELECT tokens.id, tokens.expires_at, tokens.revoked_at, tokens.last_used_at, {_USER_COLUMNS} "
                    "FROM tokens JOIN users ON users.id = tokens.user_id "
                    "WHERE tokens.secret_hash = ? AND tokens.kind = 'api'"
                ),
                (digest(secret),),
            )
            row = cur.fetchone()
        if row is None:
            return None
        token_id, expires_at, revoked_at, last_used_at = row[0], time_out(row[1]), row[2], time_out(row[3])
        if revoked_at is not None or (expires_at is not None and expires_at <= now):
            return None
        if last_used_at is None or now - last_used_at > LAST_USED_EVERY:
            with db.write_cursor(single=True) as cur:
                cur.execute(db.sql("UPDATE tokens SET last_used_at = ? WHERE id = ?"), (db.codec.time(now), token_id))
        return _user_of(row[4:])

    def create_login_link(self, user: str, valid_for: float = 86400.0) -> str:
        source = self.get_user(user).source
        if source != "local":
            raise ValidationError(
                _(
                    "%(name)s signs in through %(source)s: a login link would pass it by",
                    name=repr(user),
                    source=source,
                ),
                [{"field": "user", "message": f"a {source} user"}],
            )
        return self.create_token(user, "one-time login link", utcnow() + timedelta(seconds=valid_for), kind="link")[1]

    def login_link_valid(self, secret: str) -> bool:
        row = self.db.row(
            "SELECT revoked_at, expires_at FROM tokens WHERE secret_hash = ? AND kind = 'link'", (digest(secret),)
        )
        if row is None or row[0] is not None:
            return False
        expires_at = time_out(row[1])
        return expires_at is None or expires_at > utcnow()

    def consume_login_link(self, secret: str) -> User | None:
        """The link's user, once: the link is void from then on."""
        now = utcnow()
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(
                db.sql(
                    "SELECT id, user_id, revoked_at, expires_at FROM tokens WHERE secret_hash = ? AND kind = 'link'"
                ),
                (digest(secret),),
            )
            row = cur.fetchone()
            if row is None:
                return None
            token_id, user_id, revoked_at, expires_at = row[0], row[1], row[2], time_out(row[3])
            if revoked_at is not None or (expires_at and expires_at <= now):
                return None
            cur.execute(
                db.sql("UPDATE tokens SET revoked_at = ?, last_used_at = ? WHERE id = ? AND revoked_at IS NULL"),
                (db.codec.time(now), db.codec.time(now), token_id),
            )
            if cur.rowcount != 1:
                return None
            cur.execute(db.sql(f"SELECT {_USER_COLUMNS} FROM users WHERE users.id = ?"), (user_id,))
            user_row = cur.fetchone()
        return _user_of(user_row) if user_row is not None else None

    # -- sessions ----------------------------------------------------------------------------------
    def create_session(self, user: User, address: str) -> tuple[str, str]:
        """A fresh session id (for the cookie) and its CSRF token."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(db.sql("DELETE FROM sessions WHERE expires_at <= ?"), (db.codec.time(now),))
            cur.execute(
                db.sql(
                    "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at, address) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    digest(secret),
                    user.id,
                    csrf,
                    db.codec.time(now),
                    db.codec.time(now + timedelta(seconds=self.session_max_age)),
                    address[:64],
                ),
            )
        return secret, csrf

    def session_user(self, secret: str) -> Principal | None:
        db = self.db
        with db.cursor() as cur:
            cur.execute(
                db.sql(
                    f"SELECT sessions.csrf, sessions.expires_at, {_USER_COLUMNS} FROM sessions "
                    "JOIN users ON users.id = sessions.user_id WHERE sessions.id_hash = ?"
                ),
                (digest(secret),),
            )
            row = cur.fetchone()
        if row is None:
            return None
        expires_at = time_of(row[1])
        if expires_at <= utcnow():
            return None
        return _user_of(row[2:]).principal("session", row[0])

    def end_session(self, secret: str) -> None:
        self.db.run("DELETE FROM sessions WHERE id_hash = ?", (digest(secret),))


class Throttle:
    """Password checks, throttled: at most `max_failures` failed ones per user name within `window`
    seconds (the count starts again after the user's last success) and ADDRESS_FACTOR times as
    many per address, however many requests arrive at once and however many server processes
    share the database. While locked, TooManyAttempts, and the password is not checked at all.

    Each check first reserves its place: alone among reservations (see _reserve), count the
    failures in the audit log plus the checks under way in login_attempts, and refuse or add one.
    The password is verified after that commit; its outcome then enters the audit log in the same
    transaction that ends the reservation, so no moment counts it twice or not at all.

        throttle = Throttle(accounts, audit, max_failures=5, window=900)
        user = throttle.login("ada", password, "10.0.0.1")  # None: wrong; TooManyAttempts: locked
    """

    def __init__(self, accounts: Accounts, audit: AuditLog, max_failures: int, window: float) -> None:
        self.accounts = accounts
        self.audit = audit
        self.max_failures = max_failures
        self.window = window

    def login(self, name: str, password: str, address: str, directory: Vouching | None = None) -> User | None:
        """The user when the password is right, else None; both are audited (login, login.failed).
        A name that is no local user's is tried with `directory` (login.directory); when it cannot
        be reached, DirectoryUnavailable (audited as login.unavailable, which locks nobody out)."""
        actor = name[:100] or "(empty)"
        attempt = self._reserve(actor, address, "failed logins")
        user, action = None, LOGIN_FAILED
        try:
            user = self.accounts.authenticate(name, password)
            if user is not None:
                action = LOGIN
            elif directory is not None and not self.accounts.is_local(name):
                action = LOGIN_UNAVAILABLE
                user = directory.sign_in(self.accounts, name, password, address)
                action = LOGIN_DIRECTORY if user is not None else LOGIN_FAILED
        finally:
            self._finish(attempt, user.name if user is not None else actor, action, f"user:{name[:100]}", address)
        return user

    def change_password(self, name: str, current: str, new: str, address: str) -> User | None:
        """Set the user's password to `new` when `current` is right (and end their sessions, see
        Accounts.set_password); None when it is wrong. Audited as user.password or
        password.change_failed, and throttled with the user's logins."""
        check_password(new)
        attempt = self._reserve(name, address, "wrong passwords")
        user, action = None, PASSWORD_CHANGE_FAILED
        try:
            user = self.accounts.authenticate(name, current)
            if user is not None:
                self.accounts.set_password(name, new)
                action = PASSWORD_CHANGED
        finally:
            self._finish(attempt, name, action, f"user:{name}", address)
        return user if action == PASSWORD_CHANGED else None

    def _reserve(self, name: str, address: str, what: str) -> int | None:
        if self.max_failures <= 0:
            return None
        now = utcnow()
        since = now - timedelta(seconds=self.window)
        db = self.accounts.db
        with db.write_alone("login_attempts") as cur:  # alone among reservations, in any process
            # Left by a crash:
            cur.execute(db.sql("DELETE FROM login_attempts WHERE started_at < ?"), (db.codec.time(since),))
            by_name = _newest(
                db,
                cur,
                self.max_failures,
                since,
                _after_last_success(name),
                ("login_attempts.name = ?", (name,)),
            )
            by_address = _newest(
                db,
                cur,
                self.max_failures * ADDRESS_FACTOR,
                since,
                ("audit_log.address = ?", (address[:64],)),
                ("login_attempts.address = ?", (address[:64],)),
            )
            ends = [times[-1] + timedelta(seconds=self.window) for times in (by_name, by_address) if times]
            if not ends:
                cur.execute(
                    db.sql("INSERT INTO login_attempts (name, address, started_at) VALUES (?, ?, ?) RETURNING id"),
                    (name[:100], address[:64], db.codec.time(now)),
                )
                return int(cur.fetchone()[0])
        # `now` was read before the lock: failures written meanwhile may be newer than it.
        wait = max(1, min(math.ceil(self.window), math.ceil((max(ends) - now).total_seconds())))
        minutes = math.ceil(wait / 60)
        if what == "failed logins":
            message = ngettext(
                "too many failed logins; try again in %(num)d minute",
                "too many failed logins; try again in %(num)d minutes",
                minutes,
            )
        else:
            message = ngettext(
                "too many wrong passwords; try again in %(num)d minute",
                "too many wrong passwords; try again in %(num)d minutes",
                minutes,
            )
        raise TooManyAttempts(message, wait)

    def _finish(self, attempt: int | None, actor: str, action: str, target: str, address: str) -> None:
        db = self.accounts.db
        with db.write_cursor() as cur:
            if attempt is not None:
                cur.execute(db.sql("DELETE FROM login_attempts WHERE id = ?"), (attempt,))
            self.audit.record(actor, action, target, address, at=utcnow(), cur=cur)


Condition = tuple[str, tuple[Any, ...]]  # a WHERE condition with "?" placeholders, and its parameters


def _in(values: Sequence[str]) -> str:
    return ", ".join("?" for _ in values)


# A name's failures count from its last success on: its audit entries newer than its newest
# success, if any (parameters: `_after_last_success(name)`).
_LAST_SUCCESS = f"(SELECT max(s.at) FROM audit_log s WHERE s.action IN ({_in(SUCCESSES)}) AND s.actor = ?)"
_AFTER_LAST_SUCCESS = f"audit_log.actor = ? AND ({_LAST_SUCCESS} IS NULL OR audit_log.at > {_LAST_SUCCESS})"


def _after_last_success(name: str) -> Condition:
    return _AFTER_LAST_SUCCESS, (name, *SUCCESSES, name, *SUCCESSES, name)


def _newest(
    db: Database,
    cur: Any,
    limit: int,
    since: datetime,
    failed: Condition,
    pending: Condition,
) -> list[datetime]:
    """When the limit is reached: the times of the `limit` newest failures (audit_log entries that
    also meet `failed`, a condition and its parameters) and checks under way (login_attempts rows
    meeting `pending`); the oldest of them, last, says when the lock ends; else []. One statement,
    so one snapshot."""
    cur.execute(
        db.sql(
            "SELECT audit_log.at AS at FROM audit_log "
            f"WHERE audit_log.action IN ({_in(FAILURES)}) AND audit_log.at >= ? AND {failed[0]} "
            "UNION ALL SELECT login_attempts.started_at AS at FROM login_attempts "
            f"WHERE login_attempts.started_at >= ? AND {pending[0]} ORDER BY at DESC LIMIT ?"
        ),
        (*FAILURES, db.codec.time(since), *failed[1], db.codec.time(since), *pending[1], limit),
    )
    times = [time_of(at) for (at,) in cur.fetchall()]
    return times if len(times) >= limit else []


def _user_of(row: Sequence[Any]) -> User:
    """The user of plain SQL's values of _USER_COLUMNS, as either backend hands them back (SQLite:
    times and JSON as text)."""
    user_id, name, role, created_at, password_hash, source, groups, synced_at, display_name = row
    return User(
        id=user_id,
        name=name,
        role=Role(role),
        created_at=time_of(created_at),
        has_password=bool(password_hash),
        source=source,
        groups=tuple(json_out(groups) or ()),
        synced_at=time_out(synced_at),
        display_name=display_name,
    )


def _token_of(row: Sequence[Any]) -> Token:
    """The token of plain SQL's values of _TOKEN_SELECT."""
    token_id, user, kind, name, hint, created_at, expires_at, last_used_at, revoked_at = row
    return Token(
        id=token_id,
        user=user,
        kind=kind,
        name=name,
        hint=hint,
        created_at=time_of(created_at),
        expires_at=time_out(expires_at),
        last_used_at=time_out(last_used_at),
        revoked_at=time_out(revoked_at),
    )
