"""A command's output on the standard output, as the CLI writes it: in parts (a large report is never whole in
memory), and what stops it as an error that says so — a full disk, or an encoding that cannot spell a character.

Output never changes a character of data or SQL. A text report holding a character the output's encoding lacks
(``PYTHONIOENCODING=ascii``, a C locale, a Windows console code page) is an error naming it, exit 2, that says to
set ``PYTHONIOENCODING=utf-8``. JSON and SARIF (and JUnit's XML) are ASCII there: every non-ASCII character is
written as its own escape (``\\u00e9``, ``&#233;``), which any reader decodes to the same text, and the bytes are
valid UTF-8 as interchange requires; to a UTF-8 output they are written as they are. Two kinds of text are
agent19's own words, never data, and are written whatever the encoding: ``--help`` (:data:`HELP`: ASCII stand-ins
for its typographic characters, :data:`STAND_INS`) and a :class:`~agent19.textsafe.Message` part (an error that
stopped a report: backslash escapes). Every command's own words in a report (lint's rule messages and fixes,
plan's and dry-run's, the ops reports', the engine's messages and hints, the runbook and restore runbook templates
printed to stdout) are ASCII at the source: every string literal of the package but docstrings, help and MCP-only
text (tests/test_ascii_output_ops.py holds it), so a report of ASCII data is written in any ASCII-compatible
encoding with the command's own exit code.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterable, Iterator

from agent19.errors import Agent19Error
from agent19.textsafe import Message

STAND_INS = {
    "—": "-", "–": "-", "−": "-", "…": "...", "→": "->", "←": "<-", "↔": "<->", "≥": ">=", "≤": "<=", "×": "x",
    "±": "+/-", "·": "*", "≈": "~", "÷": "/", "µ": "u", "σ": "sigma", "✅": "[ok]", "❌": "[x]", "❔": "[?]",
}
"""The non-ASCII characters agent19's own help uses, and the ASCII stand-ins it is written with where the output's
encoding lacks them. Never used for a report: a report's characters may be data (a name, a literal in SQL)."""


def _help(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler for agent19's help: a run of :data:`STAND_INS` characters as their stand-ins, any other
    character as a backslash escape (``\\xe9``): never refused."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text, end = exc.object, exc.start
    while end < exc.end and text[end] in STAND_INS:
        end += 1
    if end == exc.start:
        return codecs.backslashreplace_errors(exc)
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


HELP = "agent19.help"
codecs.register_error(HELP, _help)
codecs.register_error("agent19.json-escape", _json_escape)

ESCAPES = {"json": "agent19.json-escape", "sarif": "agent19.json-escape", "junit": "xmlcharrefreplace"}
"""Formats whose own syntax spells any character in ASCII: how a non-ASCII character is written there when the
output's encoding is not UTF-8 (any other format: written as it is, or refused)."""


def _is_utf8(stream: object) -> bool:
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "").name == "utf-8"
    except LookupError:
        return False


def print_parts(parts: Iterable[str], fmt: str = "text", chunk: int = 1 << 20) -> None:
    """print("".join(parts)), a megabyte at a time: print encodes its whole argument at once, a second copy of a
    large report (a 5 MB migration's lint JSON is ~100 MB) in memory; a report rendered in parts is never whole.
    ``fmt``: the output format, which decides how a character the output's encoding lacks is written. An error
    raised by ``parts`` (a lint stopped part-way, after its document's last part) is raised again once what was
    written has reached the output — or once stderr says it could not."""
    escape = None if _is_utf8(sys.stdout) else ESCAPES.get(fmt)
    for text in _flushed_on_error(parts):
        errors = "backslashreplace" if isinstance(text, Message) else "strict"
        # most parts (a lint statement's JSON is a kB or two) are written as they are
        pieces = (text,) if len(text) <= chunk else (text[i:i + chunk] for i in range(0, len(text), chunk))
        for piece in pieces:
            # escaped to ASCII: the same bytes in any encoding a stdout may have, and valid UTF-8
            write(piece.encode("ascii", escape).decode("ascii") if escape else piece, errors)
    write("\n", flush=True)  # a full disk says so here, not in the interpreter's last flush


def _flushed_on_error(parts: Iterable[str]) -> Iterator[str]:
    try:
        yield from parts
    except Exception:  # written so far: a complete document that says it stopped (agent19.tools.lint)
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left (`agent19 lint | head`): nothing to say of it
            discard_output()
        except OSError as exc:
            print(f"agent19: error: could not write the output: {exc.strerror or exc}", file=sys.stderr)
            discard_output()
        raise


def discard_output() -> None:
    """Send what is still buffered for stdout nowhere, so that the interpreter's last flush cannot fail again (a
    reader gone, a full disk) after the error has been said."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no stdout at all: nothing to flush
        pass


def write(text: str, errors: str = "strict", flush: bool = False) -> None:
    """``text`` to the standard output; a character its encoding lacks written as ``errors`` (a codec error
    handler) says; what stops it (a character it cannot write, a full disk) as an error that says so."""
    if sys.stdout is None:  # `agent19 … >&-`
        raise Agent19Error("could not write the output: the standard output is closed")
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:  # nothing written: the text is encoded whole before it is buffered
            if errors == "strict":
                raise
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
