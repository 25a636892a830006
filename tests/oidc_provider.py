"""A real OpenID provider for the tests: node-oidc-provider (npm), run with the machine's Node.js.

The package is installed once into a cache folder (like tests/servers/test_quickstart.py's venv) and
reused; each test module writes the provider's JavaScript and JSON configuration (clients, users with
groups, the signing key) and starts it on a free port. The test owns the signing key, so it can also
sign ID tokens the provider would never issue (expired ones) with the provider's real key.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, need_service

VERSION = "9.13.3"
NODE_AT_LEAST = (20, 19)  # oidc-provider 9's engines
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mieruka-tests" / f"oidc-provider-{VERSION}"

# The provider, configured from the JSON file named on its command line: clients, users (any
# password works: devInteractions' login form takes the name), the signing key, PKCE required.
PROVIDER_JS = """\
import fs from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  cookies: { keys: ['mieruka-test-cookie-key'] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  conformIdTokenClaims: config.conformIdTokenClaims,
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  async findAccount(ctx, id) {
    const user = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).users[id];  // the test may change them
    if (!user) return undefined;
    return { accountId: id, async claims() { return { sub: id, preferred_username: id, ...user }; } };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(config.port, '127.0.0.1', () => console.log('oidc-provider listening on', config.port));
"""


def node_modules() -> Path:
    """The cache folder holding node_modules/oidc-provider (installed by npm the first time) and the
    provider's script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        need_service("Node.js and npm are needed to run an OpenID provider (apt-get install nodejs npm)")
    assert npm is not None and node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    found = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if found < NODE_AT_LEAST:
        need_service(
            f"oidc-provider {VERSION} needs Node.js {'.'.join(map(str, NODE_AT_LEAST))} or later, found {version}"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes install once
        if not (CACHE / ".installed").exists():
            (CACHE / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", f"oidc-provider@{VERSION}"],
                cwd=CACHE,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                need_service(f"npm install oidc-provider@{VERSION} failed:\n{done.stdout}\n{done.stderr}")
            (CACHE / ".installed").write_text(VERSION)
        script = CACHE / "provider.mjs"  # beside node_modules, so that its import finds the package
        if not script.exists() or script.read_text() != PROVIDER_JS:
            script.write_text(PROVIDER_JS)
    return CACHE


class OidcProvider:
    """node-oidc-provider on 127.0.0.1:`port` (chosen before the relying party starts, so that its
    redirect URIs can name it and it can name the issuer)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        from joserfc.jwk import RSAKey

        self.folder = folder
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, private=True, auto_kid=True)  # the provider signs with this one
        self.extra_keys: list[RSAKey] = []  # published too (a rotation's old keys)
        self.clients: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.conform_id_token_claims = True  # the ID token carries sub only; the rest is in userinfo
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / f"oidc-provider-{self.port}.log"

    def add_client(
        self,
        client_id: str,
        secret: str,
        redirect_uris: list[str],
        logout_uris: list[str] | None = None,
        auth: str = "client_secret_basic",
    ) -> None:
        """A client; `auth` is how it proves itself at the token endpoint (none: a public client)."""
        self.clients.append(
            {
                "client_id": client_id,
                **({"client_secret": secret} if auth != "none" else {}),
                "client_name": client_id,
                "redirect_uris": redirect_uris,
                "post_logout_redirect_uris": logout_uris or [],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": auth,
            }
        )

    def add_user(self, name: str, groups: list[str], **claims: Any) -> None:
        self.users[name] = {"groups": groups, "name": name.title(), "email": f"{name}@example.org", **claims}

    def start(self, timeout: float = 60) -> None:
        modules = node_modules()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.save()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["node", str(modules / "provider.mjs"), str(self.config_path)],
            cwd=modules,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"oidc-provider exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"oidc-provider not ready after {timeout}s:\n{self.output()}")

    @property
    def config_path(self) -> Path:
        return self.folder / f"oidc-provider-{self.port}.json"

    def save(self) -> None:
        """Write the configuration; a running provider reads its users from it at each sign-in."""
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {
                "issuer": self.issuer,
                "port": self.port,
                "clients": self.clients,
                "users": self.users,
                "jwks": {"keys": [k.as_dict(private=True) for k in (self.key, *self.extra_keys)]},
                "conformIdTokenClaims": self.conform_id_token_claims,
            }
        )
        partial = self.config_path.with_suffix(".part")
        partial.write_text(text)
        partial.replace(self.config_path)  # never read half-written

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sign(self, claims: dict[str, Any]) -> str:
        """An ID token signed with the provider's own key (as it would sign it)."""
        from joserfc import jwt

        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
