"""Keep passwords out of everything agent19 prints, returns or logs.

A URI's password must have ``@``, ``/`` and ``?`` percent-encoded (``%40``, ``%2F``, ``%3F``). When it
does not, libpq splits the URI somewhere inside the password and the tail lands in the host name,
port or database, and from there in error messages (``failed to resolve host 'ss@db'``). So
:func:`check_dsn` refuses such a URI before anything connects, with a message that quotes none of it,
and :func:`redact_text` masks a URI's whole userinfo up to its *last* ``@``.
"""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict

# greedy up to the token's last "@": an unencoded "@" inside the password is masked too
_URI_USERINFO = re.compile(r"(?P<scheme>postgres(?:ql)?://)(?P<user>[^:@/\s]*):(?P<pw>\S*)@")
_URI_SCHEME = re.compile(r"^\s*postgres(?:ql)?://", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<val>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
# SQL that carries a password as a literal: CREATE/ALTER ROLE … [ENCRYPTED] PASSWORD '…', user mappings'
# OPTIONS (password '…'); statistics views (pg_stat_statements, pg_stat_activity) keep such text verbatim
_SQL_PASSWORD = re.compile(r"(?P<key>\bpassword\s+)(?P<val>(?:E|U&)?'(?:[^']|'')*'|\$(?P<tag>\w*)\$.*?\$(?P=tag)\$)",
                           re.IGNORECASE | re.DOTALL)
MASK = "***"


def check_dsn(dsn: str | None, setting: str = "the DSN") -> str | None:
    """Why ``dsn`` cannot be used safely, or None. The message never contains any part of the DSN.

    A URI whose userinfo (before the last ``@``) holds another ``@``, a ``/`` or a ``?`` is ambiguous:
    libpq would cut it inside the password and show the rest as a host, port or database name.
    """
    if not dsn:
        return None
    rest = _URI_SCHEME.sub("", dsn, count=1) if _URI_SCHEME.match(dsn) else None
    userinfo = rest[: rest.rfind("@")] if rest and "@" in rest else ""
    if any(ch in userinfo for ch in "@/?"):
        return (f"{setting} is a URI whose user or password contains an unencoded '@', '/' or '?' (or an '@' "
                "appears after the host): percent-encode them in the URI (@ -> %40, / -> %2F, ? -> %3F), "
                "or use the key=value form with the password in single quotes; the DSN is not shown here because "
                "it holds a password")
    try:
        conninfo_to_dict(dsn)
    except Exception:  # libpq's message quotes the piece it choked on, which may be part of a password
        return (f"{setting} cannot be parsed as a connection string: use key=value pairs separated by spaces, "
                "a value that contains spaces in single quotes (with \\' and \\\\ escaped inside), or a "
                "postgresql:// URI; the DSN is not shown here because it may hold a password")
    return None


def redact_dsn(dsn: str | None) -> str:
    """A DSN fit for display: ``postgresql://app:***@db:5432/shop``.

    Works for URIs and key=value strings; an unparseable DSN is masked textually.
    """
    if not dsn:
        return "(embedded server)"
    if check_dsn(dsn):
        return redact_text(dsn)
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


def redact_value(text: str) -> str:
    """A text value read from a database, with the credentials it may quote masked (:func:`redact_text`
    and SQL password literals): a reader of pg_stat_statements sees ``PASSWORD '***'``."""
    if "@" not in text and "assword" not in text.lower():
        return text
    return _SQL_PASSWORD.sub(lambda m: f"{m['key']}'{MASK}'", redact_text(text))


def password_of(dsn: str | None) -> str | None:
    """The password inside a DSN, to be masked wherever it might echo back."""
    if not dsn:
        return None
    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:
        return None
