"""`Auth`: accounts, the audit log, presence, login throttling and display links, built from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MissingExtraError
from ..i18n import N_
from ..settings import Settings
from ..store.database import Database
from .accounts import Accounts, Throttle
from .audit import AuditLog
from .displays import Displays
from .languages import UserLanguages
from .presence import Presence

if TYPE_CHECKING:
    from .directory import Directory


class Auth:
    """On `db`, the process's Database (its owner closes it), or one of its own (`from_settings`)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self._owns_db = False
        self.settings = settings
        self.audit = AuditLog(db, settings.audit_retention)
        self.accounts = Accounts(db, settings.session_max_age, self.audit, settings.password_hash_memory)
        self.presence = Presence(db, settings.presence_expiry)
        self.displays = Displays(db)
        self.languages = UserLanguages(db)
        self.throttle = Throttle(self.accounts, self.audit, settings.login_max_failures, settings.login_lockout)
        self.directory = directory_of(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Auth:
        settings.home_path.mkdir(parents=True, exist_ok=True)
        auth = cls(Database(settings.effective_database_url, settings.database_busy_timeout), settings)
        auth._owns_db = True
        return auth

    def close(self) -> None:
        if self._owns_db:
            self.db.close()


def directory_of(settings: Settings) -> Directory | None:
    """The directory of the setting ldap_url (None when it is empty); a bad directory setting is a
    ConfigError, a missing `ldap` extra a MissingExtraError."""
    if not settings.ldap_url.strip():
        return None
    try:
        from .directory import Directory  # ldap3 is the `ldap` extra: imported only when configured
    except ImportError:
        raise MissingExtraError(N_("directory login (setting ldap_url)"), "ldap") from None
    return Directory.from_settings(settings)
