"""OpenID Connect single sign-on: the relying party's side of the authorization code flow with PKCE.

    browser -> /login/oidc/{provider}            begin(): state, nonce, PKCE verifier from one secret
            -> provider's authorization_endpoint (the user signs in there)
            -> /login/oidc/{provider}/callback   finish(): state checked, code exchanged, ID token verified

Nothing is kept on the server between the two requests: the browser holds one random secret in a
short-lived HttpOnly cookie (`Pending`), and the state, the nonce and the PKCE verifier are derived
from it, so a callback is accepted only in the browser that began the login, once, within
PENDING_TTL. The provider's discovery document and keys (JWKS) are cached; a key id not in the cache
fetches the keys again (the provider rotated them), at most once per JWKS_REFETCH.

Claims become a user: the user name is the first present of `username_claim` (default
preferred_username, then email), groups come from `groups_claim` (a dotted path such as
`realm_access.roles` reaches into Keycloak's nested claims), and `roles` maps groups to a role
({"lab-admins": "admin", "lab": "operator"}; the highest wins); someone in no listed group gets
`default_role`, or is refused when there is none. The providers as configured: oidc_providers.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ..core.access import Role
from ..errors import MierukaError
from ..i18n import _
from .oidc_providers import Provider

if TYPE_CHECKING:
    import httpx

PENDING_TTL = 600  # seconds from leaving for the provider to coming back
LEEWAY = 120  # seconds of clock difference allowed for exp, iat and nbf
DISCOVERY_TTL = 3600.0
FAILURE_TTL = 10.0  # a provider's discovery that failed is not tried again sooner
JWKS_REFETCH = 10.0  # at most one unplanned JWKS fetch per provider this often
HTTP_TIMEOUT = 10.0
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class SignInFailed(MierukaError):
    """A single sign-on that did not end in a session; `message` says why in words for the page."""

    status_code = 400
    code = "sso_failed"

    def __init__(self, message: str, code: str = "sso_failed", status: int = 400, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status_code = status
        self.name = name  # who the provider vouched for, when it did (refused for want of a role)


# -- the browser's pending login -----------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Pending:
    """A login on its way through the provider, as the browser keeps it (cookie value):
    `provider.began.target.secret`. The state, nonce and PKCE verifier are derived from the secret
    together with the rest, so a changed cookie no longer matches the state the provider returns."""

    provider: str
    began: int
    target: str
    secret: str

    @classmethod
    def new(cls, provider: str, target: str, now: float | None = None) -> Pending:
        return cls(provider, int(time.time() if now is None else now), target, secrets.token_urlsafe(32))

    def _derive(self, purpose: str) -> str:
        message = f"{purpose}\n{self.provider}\n{self.began}\n{self.target}".encode()
        return _b64(hmac.new(self.secret.encode(), message, hashlib.sha256).digest())

    @property
    def state(self) -> str:
        return self._derive("state")

    @property
    def nonce(self) -> str:
        return self._derive("nonce")

    @property
    def verifier(self) -> str:
        return self._derive("pkce") + self._derive("pkce2")  # 86 characters: RFC 7636 allows 43 to 128

    @property
    def challenge(self) -> str:
        return _b64(hashlib.sha256(self.verifier.encode("ascii")).digest())

    def cookie(self) -> str:
        return ".".join((self.provider, str(self.began), _b64(self.target.encode()), self.secret))

    @classmethod
    def read(cls, value: str) -> Pending | None:
        parts = value.split(".")
        if len(parts) != 4 or not parts[1].isdigit() or len(value) > 4096:
            return None
        try:
            target = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return cls(parts[0], int(parts[1]), target, parts[3])

    def expired(self, now: float | None = None) -> bool:
        age = (time.time() if now is None else now) - self.began
        return not -LEEWAY <= age <= PENDING_TTL


# -- the provider's documents --------------------------------------------------------------------
@dataclass
class _Cached:
    value: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Identity:
    """Who the provider vouched for, as mieruka names them."""

    provider: str
    subject: str
    name: str
    display_name: str | None
    groups: tuple[str, ...]
    role: Role
    id_token: str = field(repr=False)


class Client:
    """Talks to the configured providers for one server: discovery, keys, code exchange. Thread-safe
    (routes run on a thread pool)."""

    def __init__(self, providers: Sequence[Provider], http: httpx.Client | None = None) -> None:
        import httpx  # on first use: a server without single sign-on never loads it (nor the 90 modules it brings)

        self.providers = {p.id: p for p in providers}
        self._http = http or httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self._lock = threading.Lock()
        self._discovery: dict[str, _Cached] = {}
        self._jwks: dict[str, _Cached] = {}
        self._failed: dict[str, tuple[float, SignInFailed]] = {}  # the last discovery failure, and when
        self._refetched: dict[str, float] = {}  # when an unknown key id last made us fetch the keys

    def close(self) -> None:
        self._http.close()

    def provider(self, ident: str) -> Provider:
        found = self.providers.get(ident)
        if found is None:
            raise SignInFailed(
                _("There is no sign-in provider named %(name)s here.", name=repr(ident[:40])),
                "sso_unknown_provider",
                404,
            )
        return found

    # documents ------------------------------------------------------------------------------------
    def _get_json(self, provider: Provider, url: str, what: str) -> dict[str, Any]:
        import httpx

        try:
            answer = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _down(provider, f"its {what} could not be fetched ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise _down(provider, f"its {what} answered HTTP {answer.status_code}")
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _down(provider, f"its {what} is not a JSON object")
        return data

    def metadata(self, provider: Provider) -> dict[str, Any]:
        """The provider's /.well-known/openid-configuration, cached DISCOVERY_TTL. A failure is kept
        FAILURE_TTL: while a provider is down, each click on its button does not hold a thread for
        the whole connection timeout again."""
        now = time.monotonic()
        with self._lock:
            cached = self._discovery.get(provider.id)
            failed = self._failed.get(provider.id)
        if cached is not None and now - cached.at < DISCOVERY_TTL:
            return cached.value
        if failed is not None and now - failed[0] < FAILURE_TTL:
            raise failed[1]
        try:
            data = self._discovery_document(provider)
        except SignInFailed as exc:
            with self._lock:
                self._failed[provider.id] = (time.monotonic(), exc)
            raise
        with self._lock:
            self._discovery[provider.id] = _Cached(data, time.monotonic())
            self._failed.pop(provider.id, None)
        return data

    def _discovery_document(self, provider: Provider) -> dict[str, Any]:
        data = self._get_json(provider, provider.issuer + "/.well-known/openid-configuration", "discovery document")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer"):
            if not isinstance(data.get(key), str):
                raise _down(provider, f"its discovery document has no {key}")
        if not _same_issuer(data["issuer"], provider.issuer):
            raise SignInFailed(
                _(
                    "%(provider)s calls itself %(issuer)s, not the configured issuer %(configured)s.",
                    provider=provider.name,
                    issuer=repr(data["issuer"][:200]),
                    configured=repr(provider.issuer),
                ),
                "sso_misconfigured",
                502,
            )
        return data

    def keys(self, provider: Provider, refresh: bool = False) -> dict[str, Any]:
        """The provider's JWKS, cached DISCOVERY_TTL (a key the provider withdrew stops counting);
        `refresh` (a key id not in it) fetches again, at most once per JWKS_REFETCH."""
        now = time.monotonic()
        with self._lock:
            cached = self._jwks.get(provider.id)
            if refresh and now - self._refetched.get(provider.id, -JWKS_REFETCH) >= JWKS_REFETCH:
                self._refetched[provider.id] = now
            else:
                refresh = False
        if cached is not None and not refresh and now - cached.at < DISCOVERY_TTL:
            return cached.value
        data = self._get_json(provider, str(self.metadata(provider)["jwks_uri"]), "key set (JWKS)")
        if not isinstance(data.get("keys"), list):
            raise _down(provider, "its key set has no keys")
        with self._lock:
            self._jwks[provider.id] = _Cached(data, time.monotonic())
        return data

    # the flow -------------------------------------------------------------------------------------
    def authorization_url(
        self, provider: Provider, pending: Pending, redirect_uri: str, prompt: str | None = None
    ) -> str:
        """`prompt="login"`: the provider asks who signs in even when it has a session (someone it
        signed in whom this server refused may then sign in as someone else)."""
        meta = self.metadata(provider)
        query = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pending.challenge,
            "code_challenge_method": "S256",
        }
        if prompt is not None:
            query["prompt"] = prompt
        endpoint = str(meta["authorization_endpoint"])
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)

    def finish(self, provider: Provider, pending: Pending, params: Mapping[str, str], redirect_uri: str) -> Identity:
        """The identity of a callback's `params` (code, state, or error), for the browser's pending login."""
        state = params.get("state", "")
        if pending.provider != provider.id or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise SignInFailed(
                _(
                    "This sign-in answer does not belong to the sign-in this browser started "
                    "(another tab may have started a newer one). Please sign in again."
                ),
                "sso_wrong_state",
            )
        if pending.expired():
            raise SignInFailed(
                _("The sign-in took longer than %(minutes)s minutes. Please sign in again.", minutes=PENDING_TTL // 60),
                "sso_expired",
            )
        answered_by = params.get("iss")  # RFC 9207: which provider answers (a mix-up attack names another)
        if answered_by is not None and not _same_issuer(str(self.metadata(provider)["issuer"]), answered_by):
            raise SignInFailed(
                _(
                    "This sign-in answer comes from %(issuer)s, not from %(provider)s.",
                    issuer=repr(answered_by[:200]),
                    provider=provider.name,
                ),
                "sso_wrong_issuer",
            )
        error = params.get("error")
        if error:
            raise _refused(provider, error, params.get("error_description", ""))
        code = params.get("code", "")
        if not code:
            raise SignInFailed(
                _("%(provider)s sent no authorization code back.", provider=provider.name), "sso_no_code"
            )
        tokens = self._exchange(provider, code, pending.verifier, redirect_uri)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed(
                _("%(provider)s answered without an ID token.", provider=provider.name), "sso_bad_token", 502
            )
        claims = self.verify(provider, id_token, pending.nonce)
        claims = self._with_userinfo(provider, claims, tokens.get("access_token"))
        return self.identity(provider, claims, id_token)

    def _exchange(self, provider: Provider, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        import httpx

        meta = self.metadata(provider)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": provider.client_id,
        }
        headers = {"Accept": "application/json"}
        if provider.token_auth == "client_secret_basic":
            # RFC 6749 2.3.1: each part form-encoded before Base64
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif provider.token_auth == "client_secret_post":
            form["client_secret"] = provider.client_secret
        try:
            answer = self._http.post(str(meta["token_endpoint"]), data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise _down(provider, f"its token endpoint could not be reached ({type(exc).__name__})") from None
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _down(provider, f"its token endpoint answered HTTP {answer.status_code} without JSON")
        if answer.status_code != 200 or "error" in data:
            error = str(data.get("error") or f"HTTP {answer.status_code}")
            raise SignInFailed(
                _(
                    "%(provider)s refused to complete the sign-in (%(error)s: %(description)s). "
                    "A sign-in link works once: please sign in again.",
                    provider=provider.name,
                    error=error,
                    description=str(data.get("error_description") or "")[:200],
                ),
                "sso_code_refused",
            )
        return data

    def verify(self, provider: Provider, id_token: str, nonce: str, now: float | None = None) -> dict[str, Any]:
        """The ID token's claims once its signature (the provider's JWKS), issuer, audience,
        authorized party, times and nonce are right; SignInFailed otherwise."""
        from joserfc import jwt
        from joserfc.errors import (
            BadSignatureError,
            ExpiredTokenError,
            InvalidClaimError,
            InvalidKeyIdError,
            JoseError,
            MissingClaimError,
        )

        meta = self.metadata(provider)
        offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in SIGNING_ALGORITHMS if a in offered] or ["RS256"]

        def bad(why: str) -> SignInFailed:
            return SignInFailed(
                _("The ID token from %(provider)s was refused: %(reason)s.", provider=provider.name, reason=why),
                "sso_bad_token",
            )

        token = None
        for refresh in (False, True):
            try:
                token = jwt.decode(id_token, _signing_keys(self.keys(provider, refresh)), algorithms=algorithms)
                break
            except InvalidKeyIdError:
                if refresh:
                    raise bad("it is signed with a key the provider does not publish") from None
            except BadSignatureError:
                raise bad("its signature is wrong") from None
            except JoseError as exc:
                raise bad(f"it cannot be read ({exc.error})") from None
            except (ValueError, TypeError, KeyError):
                raise bad("it cannot be read") from None
        assert token is not None
        claims = dict(token.claims)
        issuer = str(meta["issuer"])
        if "{tenantid}" in issuer and isinstance(claims.get("tid"), str):
            issuer = issuer.replace("{tenantid}", claims["tid"])  # Entra ID's multi-tenant endpoints
        # Google's ID tokens may name their issuer without the scheme
        issuers = list(GOOGLE_ISSUERS) if issuer in GOOGLE_ISSUERS else [issuer]
        registry = jwt.JWTClaimsRegistry(
            now=int(time.time() if now is None else now),
            leeway=LEEWAY,
            iss={"essential": True, "values": issuers},
            aud={"essential": True, "value": provider.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise bad("it has expired (is the server's clock right?)") from None
        except MissingClaimError as exc:
            raise bad(f"it lacks the claim {exc.claim}") from None
        except InvalidClaimError as exc:
            raise bad(_claim_words(exc.claim)) from None
        iat = claims["iat"]
        moment = time.time() if now is None else now
        if not isinstance(iat, (int, float)) or iat > moment + LEEWAY:
            raise bad("it was issued in the future (is the server's clock right?)")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
            raise bad("it was issued to another application (azp)")
        sub = claims["sub"]
        # OpenID Connect Core 2: at most 255 ASCII characters; a control character would name
        # another account in a database that cuts text at a NUL.
        if not isinstance(sub, str) or not sub or len(sub) > 255 or not (sub.isascii() and sub.isprintable()):
            raise bad(_claim_words("sub"))
        return claims

    def _with_userinfo(self, provider: Provider, claims: dict[str, Any], access_token: Any) -> dict[str, Any]:
        """Some providers (Okta, and any with thin ID tokens) put the profile in userinfo only."""
        import httpx

        wanted = [*provider.username_claims, *([provider.groups_claim] if provider.groups_claim else [])]
        if all(_claim(claims, name) is not None for name in wanted) or not isinstance(access_token, str):
            return claims
        endpoint = self.metadata(provider).get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return claims
        try:
            answer = self._http.get(
                endpoint, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
            )
            info = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            raise _down(provider, "its userinfo endpoint did not answer") from None
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            return claims  # a userinfo of someone else is no source of claims
        return {**info, **claims}

    def identity(self, provider: Provider, claims: Mapping[str, Any], id_token: str = "") -> Identity:
        """Who the claims name, with their groups and role; SignInFailed when the claims name nobody,
        lack a required claim, or give no role."""
        found = next(((c, v) for c in provider.username_claims if (v := _claim(claims, c)) not in (None, "")), None)
        if found is None:
            raise SignInFailed(
                _(
                    "%(provider)s did not say who you are: none of the claims %(claims)s is in its answer "
                    "(setting oidc_username_claim).",
                    provider=provider.name,
                    claims=", ".join(provider.username_claims),
                ),
                "sso_no_username",
            )
        claim, value = found
        name = str(value)
        if claim == "email" and claims.get("email_verified") is False:
            raise SignInFailed(
                _(
                    "%(provider)s has not verified the address %(address)s, so it cannot name you here.",
                    provider=provider.name,
                    address=name,
                ),
                "sso_unverified_email",
                403,
            )
        for required, values in provider.required:
            if str(_claim(claims, required)) not in values:
                raise SignInFailed(
                    _(
                        "%(provider)s signed you in as %(name)s, but this server admits only its accounts with "
                        "%(claim)s %(values)s.",
                        provider=provider.name,
                        name=name,
                        claim=required,
                        values=" or ".join(values),
                    ),
                    "sso_not_admitted",
                    403,
                )
        groups = _groups(_claim(claims, provider.groups_claim)) if provider.groups_claim else ()
        role = provider.role_for(groups)
        if role is None:
            raise SignInFailed(
                _(
                    "%(provider)s signed you in as %(name)s, but you are in none of the groups this server "
                    "admits. Ask an administrator to add you to one (settings oidc_roles, oidc_default_role).",
                    provider=provider.name,
                    name=name,
                ),
                "sso_no_role",
                403,
                name,
            )
        display = claims.get("name")
        return Identity(
            provider.id,
            str(claims.get("sub", "")),
            name,
            str(display)[:200] if isinstance(display, str) else None,
            groups,
            role,
            id_token,
        )

    def logout_url(self, provider: Provider, id_token: str, after: str) -> str | None:
        """Where to send the browser to end the provider's session too (RP-initiated logout), or None."""
        if not provider.end_session:
            return None
        try:
            endpoint = self.metadata(provider).get("end_session_endpoint")
        except SignInFailed:
            return None  # the provider is down: the local session ends all the same
        if not isinstance(endpoint, str):
            return None
        query = {"client_id": provider.client_id, "post_logout_redirect_uri": after}
        if id_token:
            query["id_token_hint"] = id_token
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)


def _signing_keys(jwks: Mapping[str, Any]) -> Any:
    """The JWKS's signature keys as joserfc reads them; encryption keys and keys of a kind it does
    not know are left out rather than making the whole set unreadable."""
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    usable = []
    for key in jwks.get("keys", []):
        if not isinstance(key, dict) or key.get("use") == "enc":
            continue
        try:
            KeySet.import_key_set({"keys": [key]})
        except (JoseError, ValueError, TypeError, KeyError):
            continue
        usable.append(key)
    return KeySet.import_key_set({"keys": usable})


def _same_issuer(found: str, configured: str) -> bool:
    found = found.rstrip("/")
    if "{tenantid}" in found:  # Entra ID's "common" and "organizations" endpoints
        pattern = re.escape(found).replace(re.escape("{tenantid}"), "[^/]+")
        return re.fullmatch(pattern, configured) is not None or found == configured
    return found == configured


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects (`realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(str(g)[:200] for g in value if isinstance(g, (str, int))))[:500]


_CLAIM_WORDS = {
    "iss": "it comes from another issuer",
    "aud": "it was issued to another application (aud)",
    "nonce": "it belongs to another sign-in (nonce)",
    "nbf": "it is not valid yet",
    "iat": "its issue time is not a time",
    "exp": "its expiry is not a time",
    "sub": "it names nobody (sub)",
}


def _claim_words(claim: str) -> str:
    return _CLAIM_WORDS.get(claim, f"the claim {claim[:40]} is wrong")


def _down(provider: Provider, why: str) -> SignInFailed:
    return SignInFailed(
        _(
            "%(provider)s cannot be reached right now: %(reason)s. Try again in a moment, or sign in another way.",
            provider=provider.name,
            reason=why,
        ),
        "sso_provider_down",
        502,
    )


def _refused(provider: Provider, error: str, description: str) -> SignInFailed:
    if error == "access_denied":
        return SignInFailed(
            _(
                "The sign-in with %(provider)s was cancelled or consent was refused, so you are not signed in.",
                provider=provider.name,
            ),
            "sso_refused",
            403,
        )
    detail = f": {description[:200]}" if description else ""
    return SignInFailed(
        _("%(provider)s could not sign you in (%(error)s).", provider=provider.name, error=error[:60] + detail),
        "sso_provider_error",
    )
