"""The OpenID providers a server is configured with (setting oidc_providers), and how each maps
its groups to roles. Read once at start-up: a bad entry stops the start with its reason."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.access import Role, parse_role
from ..errors import ConfigError, MissingExtraError
from ..i18n import N_, _

if TYPE_CHECKING:
    from ..settings import Settings

DEFAULT_SCOPES = ("openid", "profile", "email")
DEFAULT_USERNAME_CLAIMS = ("preferred_username", "email")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
TOKEN_AUTH = ("client_secret_basic", "client_secret_post", "none")


@dataclass(frozen=True)
class Provider:
    """One OpenID provider as configured (an entry of the setting oidc_providers)."""

    id: str  # in the URLs: /login/oidc/{id}
    name: str  # on the login page's button: "Sign in with {name}"
    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    token_auth: str = "client_secret_basic"
    username_claims: tuple[str, ...] = DEFAULT_USERNAME_CLAIMS
    groups_claim: str = "groups"
    roles: tuple[tuple[str, Role], ...] = ()
    default_role: Role | None = None  # of anyone in no group of `roles`; None: refused
    end_session: bool = True  # log out at the provider too, when it offers end_session_endpoint
    # claim -> the values admitted: {"hd": ("example.org",)} lets in only one Google Workspace's accounts
    required: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def role_for(self, groups: Sequence[str]) -> Role | None:
        """The highest role any of `groups` maps to, else the default role, else None (refused)."""
        found = [role for group, role in self.roles if group in groups]
        if found:
            return max(found, key=lambda role: role.rank)
        return self.default_role


def parse_roles(value: Any, default: Any, where: str) -> tuple[tuple[tuple[str, Role], ...], Role | None]:
    """Groups to roles, a JSON object (text, or a dict from TOML) {"lab-admins": "admin", ...}, and
    the role of someone in none of them ("" or None: refused)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ConfigError(_("%(where)s: not a JSON object (%(error)s)", where=where, error=exc)) from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(
            _(
                "%(where)s: an object of group names to roles, e.g. %(example)s",
                where=where,
                example='{"lab-admins": "admin"}',
            )
        )
    try:
        pairs = tuple((str(group), parse_role(role)) for group, role in value.items())
        fallback = parse_role(default) if isinstance(default, str) and default.strip() else None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return pairs, fallback


def _words(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(w for w in re.split(r"[\s,]+", value) if w)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(_("%(where)s: a list of names or one string of names", where=where))


def _required(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """{"hd": "example.org"} or {"tid": ["id-1", "id-2"]}: claims an ID token must carry, with one of the values."""
    if not isinstance(value, dict):
        raise ConfigError(
            _(
                "%(where)s: an object of claims to values, e.g. %(example)s",
                where=where,
                example='{"hd": "example.org"}',
            )
        )
    out = []
    for claim, wanted in value.items():
        values = (wanted,) if isinstance(wanted, str) else wanted
        if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
            field = f"{where}.{claim}"
            raise ConfigError(_("%(where)s: a value or a list of values", where=field))
        out.append((str(claim), tuple(values)))
    return tuple(out)


def configured(settings: Settings) -> list[Provider]:
    """The providers of `settings`; MissingExtraError when there are some and the extra that
    verifies their ID tokens is not installed."""
    providers = parse_providers(
        settings.oidc_providers,
        settings.oidc_username_claim,
        settings.oidc_groups_claim,
        settings.oidc_roles,
        settings.oidc_default_role,
    )
    if providers:
        try:
            import joserfc  # noqa: F401
        except ImportError:
            raise MissingExtraError(N_("single sign-on (setting oidc_providers)"), "oidc") from None
    return providers


def parse_providers(
    text: str, username_claim: str = "", groups_claim: str = "groups", roles: str = "", default_role: str = ""
) -> list[Provider]:
    """The providers of the setting oidc_providers (a JSON list of objects); the other settings are
    the defaults of every provider, which an entry may override (username_claim, groups_claim, roles,
    default_role)."""
    if not text.strip():
        return []
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ConfigError(_("setting %(name)s is not JSON: %(error)s", name="oidc_providers", error=exc)) from None
    if not isinstance(entries, list):
        raise ConfigError(
            _(
                "setting %(name)s: a list of providers, e.g. %(example)s",
                name="oidc_providers",
                example='[{"id": "entra", ...}]',
            )
        )
    known = {
        "id",
        "name",
        "issuer",
        "client_id",
        "client_secret",
        "scopes",
        "token_auth",
        "username_claim",
        "groups_claim",
        "roles",
        "default_role",
        "end_session",
        "required_claims",
    }
    providers: list[Provider] = []
    for index, entry in enumerate(entries):
        where = f"oidc_providers[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(
                _("%(where)s: an object with %(keys)s", where=where, keys="id, name, issuer, client_id, client_secret")
            )
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(
                _(
                    "%(where)s: unknown keys %(keys)s (known: %(known)s)",
                    where=where,
                    keys=", ".join(unknown),
                    known=", ".join(sorted(known)),
                )
            )
        for key in ("id", "issuer", "client_id"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ConfigError(_("%(where)s: %(key)s is required (a string)", where=where, key=key))
        ident = entry["id"].strip()
        if not SLUG.match(ident):
            raise ConfigError(
                _(
                    "%(where)s: id %(id)s: lower-case letters, digits, '-' and '_' (it is part of URLs)",
                    where=where,
                    id=repr(ident),
                )
            )
        issuer = entry["issuer"].strip().rstrip("/")
        if not issuer.startswith(("https://", "http://")):
            raise ConfigError(
                _(
                    "%(where)s: issuer must be an https:// URL (http:// only for a provider on a trusted network)",
                    where=where,
                )
            )
        secret = str(entry.get("client_secret") or "")
        token_auth = str(entry.get("token_auth") or ("client_secret_basic" if secret else "none"))
        if token_auth not in TOKEN_AUTH:
            raise ConfigError(
                _("%(where)s: token_auth is one of %(choices)s", where=where, choices=", ".join(TOKEN_AUTH))
            )
        if token_auth != "none" and not secret:
            raise ConfigError(
                _("%(where)s: token_auth %(token_auth)s needs a client_secret", where=where, token_auth=token_auth)
            )
        scopes = _words(entry.get("scopes", list(DEFAULT_SCOPES)), f"{where}.scopes")
        if "openid" not in scopes:
            scopes = ("openid", *scopes)
        claim = entry.get("username_claim", username_claim)
        mapping, default = parse_roles(
            entry.get("roles", roles),
            entry.get("default_role", default_role),
            f"{where}.roles" if "roles" in entry or "default_role" in entry else "oidc_roles",
        )
        required = _required(entry.get("required_claims", {}), f"{where}.required_claims")
        providers.append(
            Provider(
                id=ident,
                name=str(entry.get("name") or ident).strip()[:80],
                issuer=issuer,
                client_id=entry["client_id"].strip(),
                client_secret=secret,
                scopes=scopes,
                token_auth=token_auth,
                username_claims=_words(claim, f"{where}.username_claim") or DEFAULT_USERNAME_CLAIMS,
                groups_claim=str(entry.get("groups_claim", groups_claim) or "").strip(),
                roles=mapping,
                default_role=default,
                end_session=bool(entry.get("end_session", True)),
                required=required,
            )
        )
    ids = [p.id for p in providers]
    if len(set(ids)) != len(ids):
        raise ConfigError(_("%(setting)s: two providers with the same id", setting="oidc_providers"))
    return providers
