"""A command's output on the standard output, as the CLI writes it: in parts (a large report is never whole in
memory), and what stops it as an error that says so — a full disk, or an encoding that cannot spell a character.

An output encoding without agent19's own typographic characters (``PYTHONIOENCODING=ascii``, a C locale, a
Windows console code page) gets ASCII stand-ins for them (:data:`STAND_INS`: ``—`` as ``-``, ``→`` as ``->``),
so a report of ASCII names reads the same there; any other character it cannot spell (a name's ``é``) is an error
naming it, not a changed name. JSON and SARIF (and JUnit's XML) write such characters as their own escapes
(``\\u00e9``, ``&#233;``), which their readers decode to the same text: nothing is changed nor refused.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterable

from agent19.errors import Agent19Error

STAND_INS = {
    "—": "-", "–": "-", "−": "-", "…": "...", "→": "->", "←": "<-", "↔": "<->", "≥": ">=", "≤": "<=", "×": "x",
    "±": "+/-", "·": "*", "≈": "~", "÷": "/", "µ": "u", "σ": "sigma", "✅": "[ok]", "❌": "[x]", "❔": "[?]",
}
"""The non-ASCII characters agent19's own messages, summaries and documents use, and their ASCII stand-ins. The
same characters in a name are written so too (the writer cannot tell whose they are): the JSON output is exact."""


def _stand_in(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a run of :data:`STAND_INS` characters as their stand-ins; any other character stops
    the encoding (its error names it)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text, end = exc.object, exc.start
    while end < exc.end and text[end] in STAND_INS:
        end += 1
    if end == exc.start:
        raise exc
    return "".join(STAND_INS[c] for c in text[exc.start:end]), end


def _json_escape(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each character as JSON's ``\\uXXXX`` (a surrogate pair beyond the BMP). In JSON text
    a non-ASCII character can only be inside a string, where the escape is the same character to any reader."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for c in exc.object[exc.start:exc.end]:
        code = ord(c)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), exc.end


def _stand_in_or_escape(exc: UnicodeError) -> tuple[str, int]:
    """:func:`_stand_in`, else a backslash escape (``\\xe9``): for agent19's help, never refused."""
    try:
        return _stand_in(exc)
    except UnicodeEncodeError:
        return codecs.backslashreplace_errors(exc)


codecs.register_error("agent19.stand-in", _stand_in)
codecs.register_error("agent19.stand-in-or-escape", _stand_in_or_escape)
codecs.register_error("agent19.json-escape", _json_escape)

ESCAPES = {"json": "agent19.json-escape", "sarif": "agent19.json-escape", "junit": "xmlcharrefreplace"}
"""Formats whose own syntax spells any character in ASCII: how a character the encoding lacks is written there
(any other format: :func:`_stand_in`)."""


def print_parts(parts: Iterable[str], fmt: str = "text", chunk: int = 1 << 20) -> None:
    """print("".join(parts)), a megabyte at a time: print encodes its whole argument at once, a second copy of a
    large report (a 5 MB migration's lint JSON is ~100 MB) in memory; a report rendered in parts is never whole.
    ``fmt``: the output format, which decides how a character the output's encoding lacks is written."""
    errors = ESCAPES.get(fmt, "agent19.stand-in")
    for text in parts:
        if len(text) <= chunk:  # most parts (a lint statement's JSON is a kB or two): written as they are
            write(text, errors)
            continue
        for start in range(0, len(text), chunk):
            write(text[start:start + chunk], errors)
    write("\n", errors, flush=True)  # a full disk says so here, not in the interpreter's last flush


def write(text: str, errors: str = "agent19.stand-in", flush: bool = False) -> None:
    """``text`` to the standard output; a character its encoding lacks written as ``errors`` (a codec error
    handler) says; what stops it (a character still unwritable, a full disk) as an error that says so."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:  # nothing written: the text is encoded whole before it is buffered
            encoding = sys.stdout.encoding
            sys.stdout.write(text.encode(encoding, errors).decode(encoding))
        if flush:
            sys.stdout.flush()
    except UnicodeEncodeError as exc:
        raise Agent19Error(
            f"the output holds characters its encoding ({sys.stdout.encoding}) cannot write "
            f"({exc.object[exc.start:exc.end]!a}): set PYTHONIOENCODING=utf-8 or use a UTF-8 locale") from None
    except BrokenPipeError:  # `agent19 … | head`: main's own answer
        raise
    except OSError as exc:
        raise Agent19Error(f"could not write the output: {exc.strerror or exc}") from None
