"""`Auth`: accounts, the audit log, presence and login throttling, built from settings."""

from __future__ import annotations

import math
from datetime import timedelta

from ..core.clock import utcnow
from ..errors import TooManyAttempts
from ..settings import Settings
from .accounts import Accounts, User
from .audit import AuditLog
from .db import AuthDB
from .presence import Presence

LOGIN_FAILED = "login.failed"
LOGIN = "login"
ADDRESS_FACTOR = 4


class Auth:
    def __init__(self, db: AuthDB, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.accounts = Accounts(db, settings.session_max_age)
        self.audit = AuditLog(db, settings.audit_retention)
        self.presence = Presence(db, settings.presence_expiry)

    @classmethod
    def from_settings(cls, settings: Settings) -> Auth:
        settings.home_path.mkdir(parents=True, exist_ok=True)
        return cls(AuthDB(settings.effective_database_url), settings)

    def close(self) -> None:
        self.db.close()

    def login(self, name: str, password: str, address: str) -> User | None:
        """Check a password, throttled per user name and per address; failures are audited.
        Raises TooManyAttempts while locked (without checking the password at all)."""
        self.check_throttle(name, address)
        user = self.accounts.authenticate(name, password)
        if user is None:
            self.audit.record(name[:100] or "(empty)", LOGIN_FAILED, f"user:{name[:100]}", address)
            return None
        self.audit.record(user.name, LOGIN, f"user:{user.name}", address)
        return user

    def check_throttle(self, name: str, address: str) -> None:
        limit, window = self.settings.login_max_failures, self.settings.login_lockout
        if limit <= 0:
            return
        now = utcnow()
        since = now - timedelta(seconds=window)
        last_success = self.audit.last(LOGIN, name) if name else None
        user_since = max(since, last_success) if last_success else since
        by_user = self.audit.count(LOGIN_FAILED, user_since, actor=name or "(empty)")
        by_address = self.audit.count(LOGIN_FAILED, since, address=address)
        if by_user >= limit or by_address >= limit * ADDRESS_FACTOR:
            wait = max(1, math.ceil(window / 60))
            raise TooManyAttempts(f"too many failed logins; try again in {wait} minute{'s' * (wait != 1)}",
                                  retry_after=int(window))
