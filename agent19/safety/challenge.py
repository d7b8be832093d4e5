"""Challenge tokens: the server's own, bound to one statement, one database and one impact.

A token is ``a19.<payload>.<mac>``: the payload (base64url JSON) holds the normalized statement's
hash, the database identity (system identifier, name, oid), a hash of the impact figures, the
archive choice, the statement's text (so a human confirming out of band sees what it is for), an
expiry and a random nonce; the MAC is HMAC-SHA256 over the payload with a key from
``AGENT19_CONFIRM_KEY`` or, without one, a key generated once and kept in the data directory
(mode 0600). A token is single use: its nonce is recorded in the target database, in the same
transaction as the statement it confirms (:mod:`agent19.safety.ledger`).

Written here rather than taken from a JWT library: it is fifty lines of the standard library
(``hmac``, ``hashlib``, ``secrets``), with no algorithm negotiation to get wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from agent19.config import Settings
from agent19.errors import ConfigError
from agent19.migrate.parse import Statement

QUALIFIED_SQL = True  # no SQL of its own: any it gets is read like the rest of the confirmation path's

PREFIX = "a19"
TOKEN_TTL_S = 15 * 60
KEY_FILE = "confirm.key"
MIN_KEY_CHARS = 16


class TokenInvalid(Exception):
    """Why a token is refused (a sentence for the user)."""


def normalized_hash(statement: Statement) -> str:
    """SHA-256 of the statement's parse tree without positions: whitespace, case of keywords and
    comments do not change it; any identifier or constant does."""
    return hashlib.sha256(canonical(_strip_locations(statement.tree)).encode()).hexdigest()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _strip_locations(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _strip_locations(v) for k, v in tree.items() if k not in {"location", "stmt_location", "stmt_len"}}
    if isinstance(tree, list):
        return [_strip_locations(v) for v in tree]
    return tree


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_file(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 (never readable by others, even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)


def load_key(settings: Settings) -> bytes:
    """The HMAC key: ``AGENT19_CONFIRM_KEY``, else ``<data_dir>/confirm.key`` (generated once, 0600)."""
    if settings.confirm_key is not None:
        key = settings.confirm_key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"AGENT19_CONFIRM_KEY is too short (at least {MIN_KEY_CHARS} characters)",
                              "use e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`")
        return key.encode()
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        try:
            private_file(path, secrets.token_hex(32).encode())
        except FileExistsError:
            pass  # another process made it first
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by other users", f"run chmod 600 {path}")
    return path.read_bytes().strip()


def issue(key: bytes, claims: dict[str, Any], ttl_s: int = TOKEN_TTL_S) -> tuple[str, int]:
    """A signed token for ``claims``; returns (token, expiry as Unix time)."""
    expires = int(time.time()) + ttl_s
    payload = canonical({**claims, "exp": expires, "nonce": secrets.token_hex(16), "v": 1}).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{PREFIX}.{_b64(payload)}.{_b64(mac)}", expires


def peek(key: bytes, token: str) -> dict[str, Any]:
    """The token's payload if it is ours and unexpired (not yet checked against a statement)."""
    try:
        prefix, body, mac = token.strip().split(".")
        payload = _unb64(body)
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise TokenInvalid("the token is malformed: it was not issued by this server") from None
    if prefix != PREFIX or not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        raise TokenInvalid("the token's signature does not verify: it was not issued by this server (forged or "
                           "altered)")
    claims: dict[str, Any] = json.loads(payload)
    if claims.get("exp", 0) < time.time():
        raise TokenInvalid("the token has expired; ask for a new challenge")
    return claims


def verify(key: bytes, token: str, expected: dict[str, Any]) -> dict[str, Any]:
    """The token's payload if it is ours, unexpired and made for ``expected``; else :class:`TokenInvalid`."""
    claims = peek(key, token)
    for name, what in (("sql", "statement"), ("db", "database"), ("archive", "archive choice")):
        if claims.get(name) != expected.get(name):
            raise TokenInvalid(f"the token was issued for another {what}; ask for a challenge for this one")
    return claims
