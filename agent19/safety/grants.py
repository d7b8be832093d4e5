"""Privileges granted and revoked between two readings of an ACL (``aclitem[]`` written as text, the default
spelled out with ``acldefault``), in words: ``granted SELECT, INSERT on table app.t to PUBLIC``."""

from __future__ import annotations

NAMES = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "D": "TRUNCATE", "x": "REFERENCES",
         "t": "TRIGGER", "m": "MAINTAIN", "X": "EXECUTE", "U": "USAGE", "C": "CREATE", "c": "CONNECT",
         "T": "TEMPORARY", "s": "SET", "A": "ALTER SYSTEM"}
ORDER = "rawdDxtmXUCcTsA"


def items(acl: str | None) -> list[str]:
    """The elements of an ``aclitem[]`` written as text: ``{a=arwdDxt/a,=r/a,"\\"my role\\"=r/a"}`` (an
    element with a quote, comma, brace or space in it is quoted, ``\\`` escaping)."""
    out: list[str] = []
    text, i = (acl or "{}")[1:-1], 0
    while i < len(text):
        if text[i] == '"':
            i += 1
            item = ""
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                item += text[i]
                i += 1
            i += 2  # the closing quote and the comma
        else:
            end = text.find(",", i)
            end = len(text) if end < 0 else end
            item, i = text[i:end], end + 1
        out.append(item)
    return out


def _entries(acl: str | None) -> set[tuple[str, str]]:
    """(grantee, privilege) pairs, the grant option as its own privilege (``r*``); grantors are left out."""
    out: set[tuple[str, str]] = set()
    for item in items(acl):
        grantee, privileges = _split(item)
        for i, letter in enumerate(privileges):
            if letter != "*":
                out.add((grantee, letter))
                if privileges[i + 1:i + 2] == "*":
                    out.add((grantee, letter + "*"))
    return out


def _split(item: str) -> tuple[str, str]:
    """``grantee=privileges/grantor`` (a quoted grantee with ``""`` inside it; none: PUBLIC)."""
    grantee, i = "", 0
    if item.startswith('"'):
        i = 1
        while i < len(item):
            if item[i] == '"':
                if item[i + 1:i + 2] != '"':
                    i += 1
                    break
                i += 1
            grantee += item[i]
            i += 1
    else:
        i = item.find("=")
        grantee = item[:i]
    return grantee or "PUBLIC", item[i + 1:].split("/", 1)[0]


def _words(privileges: list[str]) -> str:
    def rank(p: str) -> tuple[int, int]:
        return (len(p), ORDER.find(p[0]))

    return ", ".join(NAMES.get(p[0], p[0]) if len(p) == 1 else f"the grant option for {NAMES.get(p[0], p[0])}"
                     for p in sorted(privileges, key=rank))


def changes(before: str | None, after: str | None, what: str) -> list[str]:
    """``granted … on <what> to <grantee>`` and ``revoked … on <what> from <grantee>``, one per grantee."""
    old, new = _entries(before), _entries(after)
    out: list[str] = []
    for verb, to, pairs in (("granted", "to", new - old), ("revoked", "from", old - new)):
        by: dict[str, list[str]] = {}
        for grantee, privilege in pairs:
            by.setdefault(grantee, []).append(privilege)
        out += [f"{verb} {_words(by[g])} on {what} {to} {g}" for g in sorted(by)]
    return out
