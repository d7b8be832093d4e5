"""Who may call ``agent19 serve --http``: nobody without a credential, once it listens beyond loopback.

An MCP server over HTTP serves every tool — execute mode included — to whoever reaches the port, so:

* **Loopback** (all of ``127.0.0.0/8``, ``::1``, ``localhost``): as before, open to local processes;
  a token, when configured, is required there too.
* **Any other address** (``0.0.0.0``, ``::``, a LAN or public address, a host name): refuses to
  start unless a credential is configured, and says how to set one.

Credentials, checked by the MCP SDK's bearer-token machinery (``TokenVerifier`` + ``AuthSettings``:
an ``Authorization: Bearer …`` header on every request; 401 with ``WWW-Authenticate`` otherwise):

* **A shared bearer token**: ``AGENT19_HTTP_TOKEN`` or ``--token-file PATH`` (first line; the file
  must not be readable by other users). At least 32 characters. Compared in constant time
  (``hmac.compare_digest`` over SHA-256 digests, so the length does not leak either).
* **OAuth 2.1 resource server** (the MCP authorization spec's role for a server): access tokens are
  JWTs from the operator's authorization server, verified against its published keys —
  ``AGENT19_OAUTH_ISSUER`` (``iss``), ``AGENT19_OAUTH_JWKS_URL`` (its signing keys),
  ``AGENT19_OAUTH_RESOURCE`` (this server's URL, the required ``aud``; default
  ``http://HOST:PORT/mcp``), optionally ``AGENT19_OAUTH_SCOPES`` (space-separated, all required).
  The server then publishes OAuth Protected Resource Metadata (RFC 9728) naming the issuer, so
  clients that implement the MCP authorization flow find where to get a token.

Both may be set: a request passes with either.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from agent19.errors import ConfigError

TOKEN_ENV = "AGENT19_HTTP_TOKEN"
MIN_TOKEN_LENGTH = 32
HOW_TO = (f"set {TOKEN_ENV} to a long random secret (e.g. `python -c 'import secrets; "
          "print(secrets.token_urlsafe(32))'`) or pass --token-file PATH (a file only you can read), and give "
          "the client the header `Authorization: Bearer <token>`; or configure an OAuth authorization server "
          "(AGENT19_OAUTH_ISSUER and AGENT19_OAUTH_JWKS_URL); or listen on 127.0.0.1 only")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and every loopback address (``127.0.0.0/8``, ``::1``); False for anything
    else, host names included (they may resolve beyond loopback)."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def transport_security(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection (``Host`` and ``Origin`` checked) for every loopback address, not only the
    ones the SDK protects by default (127.0.0.1, localhost, ::1): a web page the user visits must not
    reach a loopback server through a name that resolves to it. None beyond loopback (the SDK default:
    there a credential is required instead)."""
    if not is_loopback(host):
        return None
    name = host.strip().strip("[]")
    literal = f"[{name}]" if ":" in name else name
    hosts = sorted({f"{literal}:*", "127.0.0.1:*", "localhost:*", "[::1]:*"})
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=[f"http://{h}" for h in hosts])


class StaticTokenVerifier:
    """One shared secret, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._digest):
            return AccessToken(token="(shared bearer token)", client_id="agent19-bearer-token", scopes=[])
        return None


class JwtVerifier:
    """OAuth access tokens as JWTs: signature (the issuer's JWKS), ``iss``, ``aud``, ``exp``, scopes."""

    def __init__(self, issuer: str, jwks_url: str, resource: str, scopes: list[str]) -> None:
        import jwt  # PyJWT, installed with the MCP SDK

        self._jwt = jwt
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True)
        self.issuer, self.resource, self.scopes = issuer, resource, scopes

    def _decode(self, token: str) -> dict[str, Any] | None:
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            return self._jwt.decode(token, key.key, algorithms=["RS256", "RS384", "RS512", "PS256", "ES256", "ES384",
                                                                 "EdDSA"],
                                    audience=self.resource, issuer=self.issuer,
                                    options={"require": ["exp", "iss", "aud"]})
        except self._jwt.PyJWTError:
            return None

    async def verify_token(self, token: str) -> AccessToken | None:
        claims = await anyio.to_thread.run_sync(self._decode, token)
        if claims is None:
            return None
        granted = str(claims.get("scope") or " ".join(claims.get("scp") or [])).split()
        if any(s not in granted for s in self.scopes):
            return None
        return AccessToken(token="(oauth access token)", client_id=str(claims.get("client_id") or claims.get("azp")
                           or claims.get("sub") or "unknown"), scopes=granted, expires_at=int(claims["exp"]),
                           resource=self.resource, subject=claims.get("sub"), claims={"iss": claims.get("iss")})


class AnyOf:
    """Accept a token that any of the verifiers accepts (shared token and OAuth together)."""

    def __init__(self, *verifiers: TokenVerifier) -> None:
        self.verifiers = verifiers

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self.verifiers:
            if (found := await verifier.verify_token(token)) is not None:
                return found
        return None


@dataclass
class HttpAuth:
    verifier: TokenVerifier
    settings: AuthSettings
    summary: str

    def server_kwargs(self) -> dict[str, Any]:
        """Arguments for ``MCPServer``: the SDK then requires a valid bearer token on every request."""
        return {"token_verifier": self.verifier, "auth": self.settings}


def _read_token_file(path: str) -> str:
    file = Path(path).expanduser()
    try:
        mode = file.stat().st_mode
        lines = file.read_text().strip().splitlines()
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"--token-file {path} is readable by other users", f"chmod 600 {path}")
    return lines[0].strip() if lines else ""


def configure(host: str, port: int, *, token_file: str | None = None,
              env: Mapping[str, str] | None = None) -> HttpAuth | None:
    """The authentication ``agent19 serve --http --host HOST`` requires, or None (loopback, none set).

    Raises :class:`ConfigError` when listening beyond loopback without a credential, or when a
    credential is unusable (too short, a file others can read, half an OAuth configuration).
    """
    env = os.environ if env is None else env
    verifiers: list[TokenVerifier] = []
    summary: list[str] = []
    token = _read_token_file(token_file) if token_file else env.get(TOKEN_ENV, "")
    if token_file or token:
        source = f"--token-file {token_file}" if token_file else TOKEN_ENV
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the HTTP token from {source} is shorter than {MIN_TOKEN_LENGTH} characters",
                              "use a long random secret: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        verifiers.append(StaticTokenVerifier(token))
        summary.append(f"bearer token ({source})")
    issuer, jwks = env.get("AGENT19_OAUTH_ISSUER", ""), env.get("AGENT19_OAUTH_JWKS_URL", "")
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    resource = env.get("AGENT19_OAUTH_RESOURCE") or f"{base}/mcp"
    if issuer or jwks:
        if not (issuer and jwks):
            raise ConfigError("OAuth needs both AGENT19_OAUTH_ISSUER and AGENT19_OAUTH_JWKS_URL")
        scopes = env.get("AGENT19_OAUTH_SCOPES", "").split()
        verifiers.append(JwtVerifier(issuer, jwks, resource, scopes))
        summary.append(f"OAuth access tokens from {issuer} for {resource}")
    if not verifiers:
        if is_loopback(host):
            return None
        raise ConfigError(f"refusing to serve MCP over HTTP on {host} without authentication: anyone who reaches "
                          "the port could call every tool", HOW_TO)
    oauth = bool(issuer)
    # scopes and `aud` are checked by the JWT verifier itself (a shared token carries no scopes)
    settings = AuthSettings(issuer_url=issuer or base, resource_server_url=resource if oauth else None,
                            validate_token_resource=False)
    verifier: TokenVerifier = verifiers[0] if len(verifiers) == 1 else AnyOf(*verifiers)
    return HttpAuth(verifier=verifier, settings=settings, summary=" or ".join(summary))
