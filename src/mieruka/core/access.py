"""Roles, who is asking, and allow lists: the access rules, free of HTTP and SQL.

    viewer < operator < admin

A viewer reads; an operator also submits jobs, runs tasks and cancels its own jobs; an admin may
do everything, including managing users. Allow lists (per task, per dashboard) name roles, users
or directory groups (`group:lab-admins`): a listed role admits that role and every higher one, a
listed group its members, and admins are always admitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}
ROLE_NAMES = tuple(r.value for r in Role)
GROUP_PREFIX = "group:"


@dataclass(frozen=True)
class Principal:
    """Who is making a request. `via` says how they proved it: "session", "token" or "local"
    (the open single-user mode: nobody configured, loopback only)."""

    name: str
    role: Role
    via: str
    user_id: int | None = None
    session_csrf: str | None = None
    groups: frozenset[str] = frozenset()  # directory groups (LDAP, OpenID, proxy) at the last login

    def can(self, role: Role) -> bool:
        return self.role.at_least(role)

    def may_change_job(self, owner: str | None) -> bool:
        """Operators cancel, retry and delete only their own jobs; admins any."""
        return self.role is Role.ADMIN or (self.role is Role.OPERATOR and owner == self.name)


def allowed(principal: Principal, allow: Iterable[str] | None) -> bool:
    """Is the principal admitted by an allow list of role names, user names and `group:<name>`
    entries (None: everyone)?"""
    if allow is None:
        return True
    entries = list(allow)
    if principal.role is Role.ADMIN or principal.name in entries:
        return True
    return any(
        (entry in ROLE_NAMES and principal.role.at_least(Role(entry)))
        or (entry.startswith(GROUP_PREFIX) and entry[len(GROUP_PREFIX) :] in principal.groups)
        for entry in entries
    )


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise ValueError(f"unknown role {value!r}: use {', '.join(ROLE_NAMES)}") from None
