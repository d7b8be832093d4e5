"""Split SQL into statements with pglast (libpg_query: PostgreSQL's own grammar).

Each :class:`Statement` keeps its exact text, the file and 1-based line where it starts, and its
JSON parse tree, so every later stage (classification, lint, dry-run, safety checks) reports
positions a user can jump to.

A parse tree decoded into Python dicts takes about ten times the memory of its JSON text (a 5 MB
migration's trees took over a gigabyte), so each statement keeps its tree's JSON text and holds the
decoded tree only while the text parsed so far is small (:data:`KEEP_DECODED_CHARS`) or while a caller
holds it (:meth:`Statement.hold_tree` … :meth:`Statement.release_tree`, as the lint engine does for the
statement it is linting). A tree that is not held is decoded again, from its text, each time it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pglast.parser import ParseError, parse_sql_json

from agent19.errors import InputError
from agent19.sqltree import UNTAGGED

_LEADING = re.compile(rb"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_DECODER = json.JSONDecoder()
_STMT_KEY = '{"stmt":'

KEEP_DECODED_CHARS = 1_000_000
"""Parse trees stay decoded while a text's JSON so far is under this many characters (about 100 KB of DDL);
beyond it each statement keeps only its tree's JSON text until someone holds it."""


class SqlParseError(InputError):
    """The SQL does not parse; says where (file, line, column) and the parser's message."""

    def __init__(self, message: str, file: str | None, line: int, column: int) -> None:
        where = f"{file}:" if file else "line "
        super().__init__(
            f"{where}{line}:{column}: syntax error: {message}",
            "fix the statement there; agent19 parses with PostgreSQL's own grammar",
        )
        self.file, self.line, self.column, self.parser_message = file, line, column, message


@dataclass(kw_only=True)
class Statement:
    index: int = field(metadata={"description": "0-based position in its file or text"})
    file: str | None = None
    line: int = field(metadata={"description": "1-based line where the statement starts"})
    sql: str = field(metadata={"description": "the statement's text, without the trailing semicolon"})
    node: str = field(metadata={"description": "top-level parse node, e.g. AlterTableStmt"})

    # The tree lives in the instance's __dict__ outside the fields (neither compared, dumped nor validated):
    # ``_tree`` the decoded dict or None, ``_tree_json`` the JSON text of pglast's statement entry
    # ({"stmt": tree, "stmt_len": …}). dataclasses.replace builds a copy from the fields alone, without the tree:
    # :meth:`with_index` is the copy that keeps it.

    def with_index(self, index: int) -> Statement:
        """This statement at position ``index`` of another list, sharing its tree (held or as JSON text)."""
        copy = Statement.__new__(Statement)
        copy.__dict__.update(self.__dict__)
        copy.index = index
        return copy

    @property
    def tree(self) -> dict[str, Any]:
        """The statement's JSON parse tree (pglast): held, or decoded from its text for this read."""
        d = self.__dict__
        tree = d.get("_tree")
        if tree is not None:
            return tree  # type: ignore[no-any-return]
        text = d.get("_tree_json")
        if not text:
            return {}
        try:
            if text.startswith(_STMT_KEY):  # the tree alone, read where pglast wrote it (no outer dict, no json.loads)
                return _DECODER.raw_decode(text, len(_STMT_KEY))[0]  # type: ignore[no-any-return]
            return json.loads(text).get("stmt", {})  # type: ignore[no-any-return]
        except RecursionError:
            raise too_deep(self.file, self.line) from None

    @tree.setter
    def tree(self, value: dict[str, Any]) -> None:
        self.__dict__["_tree"] = value
        self.__dict__["_tree_json"] = None
        self.__dict__.pop("_rows_of", None)  # read from the tree (classification.classify.rows_of)

    @property
    def tree_text(self) -> str | None:
        """The JSON text of pglast's entry for the statement (``{"stmt": tree, …}``), the text :attr:`tree` is read
        from; None once a tree was set in its place."""
        return self.__dict__.get("_tree_json")  # type: ignore[no-any-return]

    def hold_tree(self) -> bool:
        """Decode the tree once and keep it until :meth:`release_tree` (reads then cost nothing); returns whether
        it was held already (then the caller leaves it held: it was decoded for someone else)."""
        if self.__dict__.get("_tree") is not None:
            return True
        self.__dict__["_tree"] = self.tree
        return False

    def release_tree(self) -> None:
        """Drop the decoded tree, keeping its JSON text: a later read decodes it again."""
        if self.__dict__.get("_tree_json"):
            self.__dict__["_tree"] = None
            self.__dict__.pop("_rows_of", None)

    def may_contain(self, node_type: str) -> bool:
        """False only when no ``node_type`` node is anywhere in the tree, read from its JSON text (a substring
        search, where walking the decoded tree visits every node). A node's type is a key, ``"X"`` in the text;
        inside a JSON string a quote is escaped, so a string can at most make this say True needlessly. The same
        holds for a string value written without escapes (a name such as ``json``: ``"json"`` in the text)."""
        text = self.__dict__.get("_tree_json")
        return not text or f'"{node_type}"' in text or (node_type in UNTAGGED and f'"{UNTAGGED[node_type]}"' in text)

    @property
    def fields(self) -> dict[str, Any]:
        """The top-level node's fields: ``tree[node]``."""
        return self.tree.get(self.node, {})


def release_trees(statements: list[Statement]) -> None:
    """Drop the statements' parse trees one statement at a time. Freed all at once (when a large file's
    statements go out of scope), millions of objects are released in one step that holds the interpreter for
    seconds: another session of the HTTP server waits that long for any answer."""
    for st in statements:
        st.tree = {}


def _entries(doc: str, keep_chars: int) -> Iterator[tuple[dict[str, Any] | None, str, str, int, int]]:
    """pglast's ``{"version": …, "stmts": [entry, …]}`` one entry at a time: (its tree decoded or None, its JSON text,
    its node, stmt_location, stmt_len). Trees are kept while the JSON so far is at most ``keep_chars``; past it an
    entry is read from its text alone (:func:`_undecoded`): decoding a tree nobody keeps cost as much as the lint's
    own decode of it."""
    start = doc.find('"stmts":[')
    if start < 0:
        return
    pos, end, seen = start + len('"stmts":['), len(doc), 0
    while pos < end and doc[pos] != "]":
        read: tuple[dict[str, Any] | None, str, str, int, int] | None = (
            _undecoded(doc, pos) if seen >= keep_chars else None)
        if read is None:
            try:
                entry, stop = _DECODER.raw_decode(doc, pos)
            except RecursionError:  # nested deeper than Python decodes: the statement says so when it is read
                read = _undecoded(doc, pos)
                if read is None:
                    raise too_deep(None, None) from None
                seen += len(read[1])
                yield read
                pos += len(read[1])
                pos = pos + 1 if doc.startswith(",", pos) else pos
                continue
            stmt = entry.get("stmt", {})
            read = (stmt if seen + stop - pos <= keep_chars else None, doc[pos:stop], next(iter(stmt), ""),
                    entry.get("stmt_location", 0), entry.get("stmt_len", 0))
        seen += len(read[1])
        yield read
        pos += len(read[1])
        pos = pos + 1 if doc.startswith(",", pos) else pos


_ENTRY_START = '{"stmt":{"'
_ENTRY_TAIL = re.compile(r'(?:,"stmt_location":(\d+))?(?:,"stmt_len":(\d+))?')


def _undecoded(doc: str, pos: int) -> tuple[None, str, str, int, int] | None:
    """The entry at ``pos`` read without decoding its tree, or None when it is not written as expected (then it is
    decoded). An entry is a RawStmt, ``{"stmt":{"Node":{…}},"stmt_location":N,"stmt_len":M}`` (a zero omitted), and
    no other parse node has a ``stmt`` field, so ``},{"stmt":`` — quotes unescaped, outside any JSON string — only
    ever separates two entries; the last ends the list (``]}``). After the tree's closing brace come numbers only."""
    if not doc.startswith(_ENTRY_START, pos):
        return None
    nxt = doc.find("}," + _ENTRY_START, pos)
    stop = nxt + 1 if nxt >= 0 else len(doc) - 2  # the next entry's comma, or the list's "]}"
    if nxt < 0 and not doc.endswith("]}"):
        return None
    tree_end = doc.rfind("}", pos, stop - 1)  # the tree's closing brace: the entry's own is at stop - 1
    tail = _ENTRY_TAIL.fullmatch(doc, tree_end + 1, stop - 1)
    name_end = doc.find('"', pos + len(_ENTRY_START))
    if tail is None or doc[stop - 1] != "}" or tree_end <= name_end:
        return None
    location, length = tail.groups()
    return (None, doc[pos:stop], doc[pos + len(_ENTRY_START):name_end], int(location or 0), int(length or 0))


def too_deep(file: str | None, line: int | None) -> InputError:
    """The error for a statement whose parse tree is nested deeper than Python can read (an expression of hundreds
    of nested terms): where it is, and what to do."""
    error = InputError("the statement is nested too deeply for agent19 to read (Python's recursion limit)",
                       "split the expression (e.g. a long chain of + or AND into parts), or check that statement "
                       "by hand")
    if line is not None:
        error.locate(file, line)
    return error


def _refuse_nul(text: str, file: str | None) -> None:
    """A NUL character ends the text for PostgreSQL's parser (a C string): the statements after it were never
    linted, planned or dry-run, while psql runs them (``…;\\0`` then ``DROP TABLE important;`` linted clean)."""
    at = text.find("\x00")
    if at >= 0:
        before = text[:at]
        raise SqlParseError("a NUL character (\\0): the parser would stop there and check nothing after it, while "
                            "psql runs what follows - remove it", file, before.count("\n") + 1,
                            at - (before.rfind("\n") + 1) + 1)


def parse_sql(text: str, file: str | None = None) -> list[Statement]:
    """All statements of ``text``; empty text (or only comments) gives ``[]``.

    Raises :class:`SqlParseError` naming the line and the parser's message.
    """
    _refuse_nul(text, file)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable bytes carried as surrogates (a command line's --sql)
        before = text[:exc.start]
        bad = ord(text[exc.start])
        byte = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"character U+{bad:04X}"
        raise InputError(
            f"{file or 'the SQL text'}:{before.count(chr(10)) + 1}: not UTF-8 ({byte} at offset {exc.start})",
            "give the SQL as UTF-8; PostgreSQL migrations are read as UTF-8",
        ) from None
    try:
        doc = parse_sql_json(text)
    except ParseError as exc:
        # pglast reports (message, 0-based character offset of the offending token)
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        prefix = text[:offset]
        line = prefix.count("\n") + 1
        column = offset - (prefix.rfind("\n") + 1) + 1
        message = str(exc.args[0]) if exc.args else str(exc)
        raise SqlParseError(message, file, line, column) from None
    out: list[Statement] = []
    counted, line = 0, 1  # newlines counted up to byte `counted`: statements come in order, so this stays linear
    for i, (stmt, raw_json, node, start, length) in enumerate(_entries(doc, KEEP_DECODED_CHARS)):
        length = length or len(data) - start
        chunk = data[start : start + length]
        skip = _LEADING.match(chunk)
        lead = skip.end() if skip else 0
        body = chunk[lead:].rstrip().rstrip(b";").rstrip()
        line += data.count(b"\n", counted, start + lead)
        counted = start + lead
        st = Statement(index=i, file=file, line=line, sql=body.decode("utf-8"), node=node)
        st.__dict__["_tree"] = stmt
        st.__dict__["_tree_json"] = raw_json
        out.append(st)
    return out


def read_sql_file(path: Path) -> str:
    """A migration file's text; non-UTF-8 bytes are an :class:`InputError` naming the position. A leading byte order
    mark (an editor's) is not part of it: psql and migration tools skip it too."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8; PostgreSQL migrations are read as UTF-8",
        ) from None


def parse_file(path: Path) -> list[Statement]:
    return parse_sql(read_sql_file(path), str(path))
