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
from ..deferred import deferred
from ..errors import ConflictError, NotFoundError, TooManyAttempts, ValidationError
from ..i18n import _, ngettext
from ..store.codec import MAX_INT, json_out, time_out
from ..store.database import Database
from .audit import AuditLog

if TYPE_CHECKING:
    import sqlalchemy as sa
    from argon2 import PasswordHasher

    from ..store import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")


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
        with self.db.write() as conn:
            if conn.execute(sa.select(t.users.c.id).where(t.users.c.name == name)).first():
                raise ConflictError(_("a user named %(name)s exists already", name=repr(name)))
            conn.execute(t.users.insert().values(name=name, role=role.value, password_hash=hashed, created_at=utcnow()))
        return self.get_user(name)

    def is_local(self, name: str) -> bool:
        """Whether `name` is a local user's (whose password is checked here, never elsewhere)."""
        with self.db.read() as conn:
            found = conn.execute(
                sa.select(t.users.c.id).where(t.users.c.name == name, t.users.c.source == "local")
            ).first()
        return found is not None

    def get_user(self, name: str) -> User:
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).first()
        if row is None:
            raise NotFoundError(_("no user named %(name)s", name=repr(name)))
        return _user(row)

    def list_users(self) -> list[User]:
        with self.db.read() as conn:
            return [_user(r) for r in conn.execute(sa.select(t.users).order_by(t.users.c.name))]

    def remove_user(self, name: str) -> None:
        user = self.get_user(name)
        with self.db.write() as conn:
            self._keep_an_admin(conn, user, None)
            conn.execute(t.sessions.delete().where(t.sessions.c.user_id == user.id))
            conn.execute(t.tokens.delete().where(t.tokens.c.user_id == user.id))
            conn.execute(t.presence.delete().where(t.presence.c.user_name == user.name))
            conn.execute(t.users.delete().where(t.users.c.id == user.id))

    def set_role(self, name: str, role: Role | str) -> User:
        user = self.get_user(name)
        role = role if isinstance(role, Role) else role_of(role)
        with self.db.write() as conn:
            self._keep_an_admin(conn, user, role)
            conn.execute(t.users.update().where(t.users.c.id == user.id).values(role=role.value))
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
        with self.db.write() as conn:
            conn.execute(t.users.update().where(t.users.c.id == user.id).values(password_hash=hashed))
            conn.execute(t.sessions.delete().where(t.sessions.c.user_id == user.id))

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
        with self.db.write() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).first()
            if row is None:
                conn.execute(
                    t.users.insert().values(
                        name=name,
                        role=role.value,
                        password_hash=None,
                        created_at=now,
                        source=source,
                        groups=kept,
                        synced_at=now,
                        display_name=shown,
                    )
                )
                self.audit.record(
                    source, "user.add", f"user:{name}", address, {"role": role.value, "source": source}, conn=conn
                )
            else:
                if row.source != source:
                    raise ValidationError(
                        _(
                            "the user name %(name)s belongs to a %(source)s user; "
                            "an admin may remove or rename that user first",
                            name=repr(name),
                            source=row.source,
                        ),
                        [{"field": "name", "message": f"held by a {row.source} user"}],
                    )
                conn.execute(
                    t.users.update()
                    .where(t.users.c.id == row.id)
                    .values(role=role.value, groups=kept, synced_at=now, display_name=shown)
                )
                if row.role != role.value:
                    self.audit.record(
                        source,
                        "user.role",
                        f"user:{name}",
                        address,
                        {"role": role.value, "was": row.role, "source": source},
                        conn=conn,
                    )
        return self.get_user(name)

    def mark_synced(self, name: str) -> None:
        """The source confirmed the user again (a re-check without a login)."""
        with self.db.write() as conn:
            conn.execute(t.users.update().where(t.users.c.name == name).values(synced_at=utcnow()))

    def cut_off(self, name: str) -> int:
        """The source no longer knows the user (removed or disabled): end their sessions and revoke
        their tokens; the row stays (its jobs and audit entries name it) with no synced_at until the
        source vouches for it again, so its subscriptions fall silent too. The sessions ended."""
        user = self.get_user(name)
        now = utcnow()
        with self.db.write() as conn:
            ended = conn.execute(t.sessions.delete().where(t.sessions.c.user_id == user.id)).rowcount
            conn.execute(t.users.update().where(t.users.c.id == user.id).values(synced_at=None))
            conn.execute(
                t.tokens.update()
                .where(t.tokens.c.user_id == user.id, t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return int(ended or 0)

    def _keep_an_admin(self, conn: sa.Connection, user: User, new_role: Role | None) -> None:
        if user.role is not Role.ADMIN or new_role is Role.ADMIN:
            return
        admins = conn.execute(
            sa.select(sa.func.count()).select_from(t.users).where(t.users.c.role == Role.ADMIN.value)
        ).scalar_one()
        if admins <= 1:
            raise ConflictError(_("%(name)s is the last admin; make another user admin first", name=repr(user.name)))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (same work either way)."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).first() if name else None
        if self._dummy is None:  # the first login is the slower one, known name or not
            self._dummy = self.hasher.hash(DUMMY_PASSWORD)
        dummy = self._dummy
        stored = row.password_hash if row is not None and row.password_hash else dummy
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            self.hasher.verify(stored, password[:1024])
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row.password_hash:
            return None
        if self.hasher.check_needs_rehash(stored):
            with self.db.write() as conn:
                conn.execute(
                    t.users.update().where(t.users.c.id == row.id).values(password_hash=self.hasher.hash(password))
                )
        return _user(row)

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
        with self.db.write() as conn:
            token_id = conn.execute(
                t.tokens.insert().values(
                    user_id=owner.id,
                    kind=kind,
                    name=name[:200],
                    secret_hash=digest(secret),
                    hint=secret[:8],
                    created_at=utcnow(),
                    expires_at=expires_at,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return self.get_token(int(token_id)), secret

    def get_token(self, token_id: int) -> Token:
        if not 0 < token_id <= MAX_INT:
            raise NotFoundError(f"no token with id {token_id}")
        with self.db.read() as conn:
            row = conn.execute(_token_select().where(t.tokens.c.id == token_id)).first()
        if row is None:
            raise NotFoundError(f"no token with id {token_id}")
        return _token(row)

    def list_tokens(self, user: str | None = None) -> list[Token]:
        query = _token_select().where(t.tokens.c.kind == "api").order_by(t.tokens.c.id.desc())
        if user is not None:
            query = query.where(t.users.c.name == user)
        with self.db.read() as conn:
            return [_token(r) for r in conn.execute(query)]

    def revoke_token_as(self, who: Principal, token_id: int) -> Token:
        """Revoke an API token on someone's behalf: their own, or anyone's for an admin; to anybody
        else it does not exist."""
        token = self.get_token(token_id)
        if token.kind != "api" or (token.user != who.name and who.role is not Role.ADMIN):
            raise NotFoundError(f"no token with id {token_id}")
        return self.revoke_token(token_id)

    def revoke_token(self, token_id: int) -> Token:
        with self.db.write() as conn:
            conn.execute(
                t.tokens.update()
                .where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
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
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(t.tokens.c.revoked_at, t.tokens.c.expires_at).where(
                    t.tokens.c.secret_hash == digest(secret), t.tokens.c.kind == "link"
                )
            ).first()
        return row is not None and row.revoked_at is None and (row.expires_at is None or row.expires_at > utcnow())

    def consume_login_link(self, secret: str) -> User | None:
        """The link's user, once: the link is void from then on."""
        now = utcnow()
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(t.tokens).where(t.tokens.c.secret_hash == digest(secret), t.tokens.c.kind == "link")
            ).first()
            if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
                return None
            used = conn.execute(
                t.tokens.update()
                .where(t.tokens.c.id == row.id, t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=now, last_used_at=now)
            )
            if used.rowcount != 1:
                return None
            user_row = conn.execute(sa.select(t.users).where(t.users.c.id == row.user_id)).first()
        return _user(user_row) if user_row is not None else None

    # -- sessions ----------------------------------------------------------------------------------
    def create_session(self, user: User, address: str) -> tuple[str, str]:
        """A fresh session id (for the cookie) and its CSRF token."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(t.sessions.delete().where(t.sessions.c.expires_at <= now))
            conn.execute(
                t.sessions.insert().values(
                    id_hash=digest(secret),
                    user_id=user.id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.session_max_age),
                    address=address[:64],
                )
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
        expires_at = time_out(row[1])
        assert expires_at is not None  # the column is NOT NULL
        if expires_at <= utcnow():
            return None
        return _user_of(row[2:]).principal("session", row[0])

    def end_session(self, secret: str) -> None:
        with self.db.write() as conn:
            conn.execute(t.sessions.delete().where(t.sessions.c.id_hash == digest(secret)))


class Throttle:
    """Password checks, throttled: at most `max_failures` failed ones per user name within `window`
    seconds (the count starts again after the user's last success) and ADDRESS_FACTOR times as
    many per address, however many requests arrive at once and however many server processes
    share the database. While locked, TooManyAttempts, and the password is not checked at all.

    Each check first reserves its place: alone among reservations (Database.write_alone), count the
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
        a, p = t.audit_log.c, t.login_attempts.c
        last_success = sa.select(sa.func.max(a.at)).where(a.action.in_(SUCCESSES), a.actor == name).scalar_subquery()
        with self.accounts.db.write_alone(t.login_attempts.name) as conn:
            conn.execute(t.login_attempts.delete().where(p.started_at < since))  # left by a crash
            by_name = _newest(
                conn,
                self.max_failures,
                since,
                sa.and_(a.actor == name, sa.or_(last_success.is_(None), a.at > last_success)),
                p.name == name,
            )
            by_address = _newest(
                conn, self.max_failures * ADDRESS_FACTOR, since, a.address == address[:64], p.address == address[:64]
            )
            ends = [times[-1] + timedelta(seconds=self.window) for times in (by_name, by_address) if times]
            if not ends:
                inserted = conn.execute(
                    t.login_attempts.insert().values(name=name[:100], address=address[:64], started_at=now)
                ).inserted_primary_key
                return int(inserted[0])  # type: ignore[index]
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
        with self.accounts.db.write() as conn:
            if attempt is not None:
                conn.execute(t.login_attempts.delete().where(t.login_attempts.c.id == attempt))
            self.audit.record(actor, action, target, address, at=utcnow(), conn=conn)


def _newest(
    conn: sa.Connection, limit: int, since: datetime, failed: sa.ColumnElement[bool], pending: sa.ColumnElement[bool]
) -> list[datetime]:
    """When the limit is reached: the times of the `limit` newest failures and checks under way
    (the oldest of them, last, says when the lock ends); else []. One statement, so one snapshot."""
    a, p = t.audit_log.c, t.login_attempts.c
    times = sa.union_all(
        sa.select(a.at.label("at")).where(a.action.in_(FAILURES), a.at >= since, failed),
        sa.select(p.started_at.label("at")).where(p.started_at >= since, pending),
    )
    rows = list(conn.execute(times.order_by(sa.literal_column("at").desc()).limit(limit)).scalars())
    return rows if len(rows) >= limit else []


def _user(row: sa.Row) -> User:  # type: ignore[type-arg]
    """The user of a users row read through SQLAlchemy (_user_of reads plain SQL's)."""
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        has_password=bool(row.password_hash),
        source=row.source,
        groups=tuple(row.groups or ()),
        synced_at=row.synced_at,
        display_name=row.display_name,
    )


def _user_of(row: Sequence[Any]) -> User:
    """The user of plain SQL's values of _USER_COLUMNS, as either backend hands them back (SQLite:
    times and JSON as text)."""
    user_id, name, role, created_at, password_hash, source, groups, synced_at, display_name = row
    created = time_out(created_at)
    assert created is not None  # the column is NOT NULL
    return User(
        id=user_id,
        name=name,
        role=Role(role),
        created_at=created,
        has_password=bool(password_hash),
        source=source,
        groups=tuple(json_out(groups) or ()),
        synced_at=time_out(synced_at),
        display_name=display_name,
    )


def _token_select() -> sa.Select:  # type: ignore[type-arg]
    return sa.select(t.tokens, t.users.c.name.label("user_name")).join(t.users, t.users.c.id == t.tokens.c.user_id)


def _token(row: sa.Row) -> Token:  # type: ignore[type-arg]
    return Token(
        id=row.id,
        user=row.user_name,
        kind=row.kind,
        name=row.name,
        hint=row.hint,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
