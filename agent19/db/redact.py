"""Keep passwords out of everything agent19 prints, returns or logs.

A URI's password must have ``@``, ``/`` and ``?`` percent-encoded (``%40``, ``%2F``, ``%3F``). When it
does not, libpq splits the URI somewhere inside the password and the tail lands in the host name,
port or database, and from there in error messages (``failed to resolve host 'ss@db'``). So
:func:`check_dsn` refuses such a URI before anything connects, with a message that quotes none of it,
and :func:`redact_text` masks a URI's whole userinfo up to its *last* ``@``.
"""

from __future__ import annotations

import re

from pglast.parser import ParseError, scan
from psycopg.conninfo import conninfo_to_dict

# greedy up to the token's last "@": an unencoded "@" inside the password is masked too
_URI_USERINFO = re.compile(r"(?P<scheme>postgres(?:ql)?://)(?P<user>[^:@/\s]*):(?P<pw>\S*)@")
_URI_SCHEME = re.compile(r"^\s*postgres(?:ql)?://", re.IGNORECASE)
# password=, sslpassword=, PGPASSWORD= … (conninfo strings, URI parameters, environment assignments)
_KV_PASSWORD = re.compile(r"(?P<key>\b\w*password\s*=\s*)(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&]+)",
                          re.IGNORECASE)
_JSON_PASSWORD = re.compile(r'(?P<key>"\w*password"\s*:\s*)(?P<val>"(?:[^"\\]|\\.)*")', re.IGNORECASE)
# SQL text the scanner cannot read (cut at 200 characters, not SQL at all): a literal after a name holding
# "password" (PASSWORD '…', "password" '…', sslpassword '…'), with comments, blanks or "=" between
_SQL_PASSWORD = re.compile(r"(?P<key>\b\w*password\"?(?:\s|/\*.*?\*/|--[^\n]*(?:\n|$)|=)*)"
                           r"(?P<val>(?:E|U&)?'(?:[^']|'')*(?:'|$)|\$(?P<tag>\w*)\$.*?(?:\$(?P=tag)\$|$))",
                           re.IGNORECASE | re.DOTALL)
_STRING_TOKENS = frozenset({"SCONST", "USCONST"})
_SKIPPED_TOKENS = frozenset({"C_COMMENT", "SQL_COMMENT", "ASCII_61"})  # comments and "=" between a name and a value
MASK = "***"
_known: set[str] = set()
"""Passwords of the DSNs this process connects with (:func:`remember_secret`): masked wherever they appear."""


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


def remember_secret(secret: str | None) -> None:
    """Mask ``secret`` (the password of a DSN this process uses) in everything :func:`redact_text` and
    :func:`redact_value` return from now on: a statement that set it (``ALTER ROLE … PASSWORD``) may be read back
    from the statistics views in a form no rule recognises."""
    if secret and len(secret) >= 3:
        _known.add(secret)


def redact_text(text: str, *secrets: str | None) -> str:
    """Mask URI passwords, ``password=…`` pairs (``sslpassword=``, ``PGPASSWORD=`` too), JSON ``"password": "…"``
    members, the passwords of this process's DSNs and any literal secret given."""
    out = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    out = _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", out)
    out = _JSON_PASSWORD.sub(lambda m: f'{m["key"]}"{MASK}"', out)
    for secret in sorted({s for s in secrets if s and len(s) >= 3} | _known, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def _names_a_password(token: str) -> bool:
    return "password" in token.strip('"').lower()


def _mask_sql(text: str) -> str:
    """SQL text with every string constant that is a password masked, as PostgreSQL's own scanner reads it: the
    literal after ``PASSWORD`` (comments or nothing between), after an option named like ``password`` (user
    mappings', servers' and subscriptions' OPTIONS, quoted or not), and the password inside a conninfo literal
    (``CONNECTION 'host=… password=…'``). Text the scanner cannot read is masked by a pattern instead."""
    try:
        tokens = scan(text)
    except ParseError:
        return _SQL_PASSWORD.sub(lambda m: f"{m['key']}'{MASK}'", text)
    out, at, before = [], 0, None
    for tok in tokens:
        span = text[tok.start:tok.end + 1]
        if tok.name in _STRING_TOKENS:
            if before is not None and _names_a_password(before):
                written = f"'{MASK}'"
            elif "assword" in span.lower() or "@" in span:
                written = redact_text(span)
            else:
                written = span
            if written != span:
                out += [text[at:tok.start], written]
                at = tok.end + 1
        if tok.name not in _SKIPPED_TOKENS:
            before = span
    out.append(text[at:])
    return "".join(out)


def redact_value(text: str) -> str:
    """A text value read from a database, with the credentials it may quote masked (:func:`redact_text` and SQL
    password literals, found by :func:`_mask_sql`): a reader of pg_stat_statements sees ``PASSWORD '***'``."""
    if "@" in text or "assword" in text.lower():
        text = _mask_sql(text)
    return redact_text(text) if _known or "@" in text or "assword" in text.lower() else text


def shown_statement(query: str, limit: int) -> str:
    """A statement read from pg_stat_statements or pg_stat_activity, as agent19 shows it: credentials masked
    (before it is cut, so a cut password literal is still recognised), on one line, at most ``limit`` characters."""
    return " ".join(redact_value(query).split())[:limit]


def password_of(dsn: str | None) -> str | None:
    """The password inside a DSN, to be masked wherever it might echo back."""
    if not dsn:
        return None
    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:
        return None
