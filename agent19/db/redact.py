"""Keep passwords out of everything agent19 prints, returns or logs."""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict

_URI_USERINFO = re.compile(r"(?P<scheme>postgres(?:ql)?://)(?P<user>[^:@/\s]*):(?P<pw>[^@\s]+)@")
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<val>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
MASK = "***"


def redact_dsn(dsn: str | None) -> str:
    """A DSN fit for display: ``postgresql://app:***@db:5432/shop``.

    Works for URIs and key=value strings; an unparseable DSN is masked textually.
    """
    if not dsn:
        return "(embedded server)"
    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return redact_text(dsn)
    if "password" in parts:
        parts["password"] = MASK
    if dsn.startswith(("postgres://", "postgresql://")):
        return redact_text(dsn)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def redact_text(text: str, *secrets: str | None) -> str:
    """Mask URI passwords, ``password=…`` pairs and any literal secret given."""
    out = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    out = _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", out)
    for secret in secrets:
        if secret and len(secret) >= 3:
            out = out.replace(secret, MASK)
    return out


def password_of(dsn: str | None) -> str | None:
    """The password inside a DSN, to be masked wherever it might echo back."""
    if not dsn:
        return None
    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:
        return None
