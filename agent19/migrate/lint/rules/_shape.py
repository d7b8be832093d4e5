"""Generated SQL computed once per statement *shape*: the statement with its plain names replaced by placeholders.

Fixes deparse a statement's typed parse tree (pglast), the costliest step of a lint: ``ALTER TABLE t1 ADD COLUMN
c1 integer`` and ``ALTER TABLE t2 ADD COLUMN c2 integer`` build the same fix but for their names. :func:`by_shape`
builds a fix from ``ALTER TABLE a19x0q ADD COLUMN a19x1q integer`` once and writes each statement's names into it.

That is exact, not a guess, because every statement is checked before its cached fix is used: the placeholder
text's parse tree must equal the statement's own tree, node for node, once each placeholder is read back as the
name it stands for, and placeholders may stand only where the deparser prints a name as it is (a table, schema,
column, index or constraint name, a column reference, a foreign key's columns: pglast's printers never branch on
those values), and only for a name that is written bare both ways (lower-case ASCII, not a keyword, under 64
bytes). Anything else — quoted or upper-case names, type and function names, option names, non-ASCII text —
makes the statement its own shape (built from its own text, as without this module).

:func:`by_names` does the same for a fix built from names alone (no statement text): written once for
placeholder names, each finding's names written into it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from json import loads
from typing import Any, NamedTuple, TypeVar

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS, UNRESERVED_KEYWORDS
from pglast.parser import ParseError, parse_sql_json

from agent19.migrate.patterns.sqlnames import needs_quotes

T = TypeVar("T")

_WORD = re.compile(r"([a-z_](?<![A-Za-z0-9_$][a-z_])[a-z0-9_]*)(?![A-Za-z0-9_$])")
"""A bare lower-case word (one group: :func:`re.split` keeps the words, at the odd places). Its first character comes
first, then the look behind it (the character before it is none of a word's): a pattern that starts with a class of
characters is searched by skipping to them, where a look-behind first is tried at every position (upper-case SQL)."""
_KEYWORDS = (frozenset(RESERVED_KEYWORDS) | frozenset(UNRESERVED_KEYWORDS) | frozenset(COL_NAME_KEYWORDS)
             | frozenset(TYPE_FUNC_NAME_KEYWORDS))
_PREFIX = "a19x"
_PLACEHOLDER = re.compile(r"a19x(\d+)q")


def _text_forms(sql: str) -> bool:
    """Quotes, dollar quotes, comments, backslashes: text where a word is not a token (the statement is its own
    shape). Each looked for with ``in``: a regular expression of the alternatives tries every one at every position."""
    return "'" in sql or '"' in sql or "$" in sql or "--" in sql or "/*" in sql or "\\" in sql


_NAME_KEYS = frozenset({"relname", "schemaname", "colname", "idxname", "conname"})
"""Fields (in whichever node, pglast's JSON writes RangeVar fields inline) that the deparser prints with print_name
and otherwise only tests for being set."""
_NAME_FIELDS = frozenset({("AlterTableCmd", "name"), ("IndexElem", "name"), ("ResTarget", "name"),
                          ("NameString", "sval")})
"""(node, field) printed with print_name alone (``NameString``: a ``String`` in one of :data:`_NAME_LISTS`)."""
_NAME_LISTS = frozenset({("ColumnRef", "fields"), ("Constraint", "fk_attrs"), ("Constraint", "pk_attrs")})
"""(node, field) holding a list of ``String`` nodes printed with print_name and read nowhere else."""

_LIMIT = 4096
_shapes: dict[tuple[Any, str], tuple[dict[str, Any], Any, _Entries | None] | frozenset[int]] = {}
"""(builder, placeholder text) → (the placeholder text's parse tree, the builder's result from it with its texts as
:func:`_template` s, its entry's JSON as :func:`_entries` for :func:`_same_text` or None); or the
placeholders whose words a second try keeps as they are (those the text's tree holds as plain strings: type,
function, option names)."""
_SVAL = re.compile(r'"sval":"a19x(\d+)q"')


def _shape(sql: str, keep: frozenset[str] = frozenset()) -> tuple[str, list[str]] | None:
    """The placeholder text and the names in placeholder order, or None when ``sql`` is best left as it is."""
    if not sql.isascii() or _PREFIX in sql or _text_forms(sql):
        return None
    names: dict[str, int] = {}
    parts = _WORD.split(sql)  # text, word, text, …: each word replaced in place (no call per word, as re.sub makes)
    for i in range(1, len(parts), 2):
        word = parts[i]
        if word in _KEYWORDS or word in keep or len(word) > 63:
            continue
        parts[i] = f"{_PREFIX}{names.setdefault(word, len(names))}q"
    return ("".join(parts), list(names)) if names else None


def _same(mine: Any, shape: Any, names: list[str], node: str, field: str) -> bool:
    """``mine`` (a statement's tree) equals ``shape`` (its placeholder text's tree) with the placeholders read back,
    placeholders only where :data:`_NAME_KEYS`, :data:`_NAME_FIELDS` and :data:`_NAME_LISTS` allow; locations
    (offsets into the text) differ. ``node`` and ``field`` say where ``shape`` is: the node type ("" inside a
    struct pglast writes inline) and the field holding it."""
    if isinstance(shape, str):
        if _PREFIX in shape:
            m = _PLACEHOLDER.fullmatch(shape)
            return (m is not None and (field in _NAME_KEYS or (node, field) in _NAME_FIELDS)
                    and mine == names[int(m.group(1))])
        return type(mine) is str and mine == shape
    if isinstance(shape, dict):
        if type(mine) is not dict or len(mine) != len(shape):
            return False
        if len(shape) == 1:
            ((key, value),) = shape.items()
            if key[:1].isupper():  # a node: {"Type": {its fields}}
                return key in mine and _same(mine[key], value, names, key, "")
        if field:  # a struct written inline in its parent's field (e.g. a RangeVar's relname, schemaname)
            node = ""
        for key, value in shape.items():
            if key not in mine:
                return False
            if key != "location" and not _same(mine[key], value, names, node, key):
                return False
        return True
    if isinstance(shape, list):
        if type(mine) is not list or len(mine) != len(shape):
            return False
        names_here = (node, field) in _NAME_LISTS
        for a, b in zip(mine, shape, strict=True):
            if names_here and type(b) is dict and type(a) is dict and "String" in b and "String" in a:
                if not _same(a["String"], b["String"], names, "NameString", ""):
                    return False
            elif not _same(a, b, names, node, field):
                return False
        return True
    return type(mine) is type(shape) and mine == shape


def _template(text: str) -> str:
    """``text`` as a :meth:`str.format` template: its braces doubled and each placeholder ``a19x<n>q`` the field
    ``{n}``, so ``_template(text).format(*names)`` writes the names in place of the placeholders (in C, where a
    regular expression's substitution calls back into Python for each one)."""
    return _PLACEHOLDER.sub(lambda m: f"{{{int(m.group(1))}}}", text.replace("{", "{{").replace("}", "}}"))


class _Template(str):
    """A text of a builder's result that holds placeholders, as a :func:`_template` (:func:`_read_back` fills it)."""

    __slots__ = ()


def _templated(value: Any) -> Any:
    """A builder's result with every text that holds a placeholder made a :class:`_Template` (once per shape)."""
    if isinstance(value, str):
        return _Template(_template(value)) if _PREFIX in value else value
    if isinstance(value, tuple):
        return tuple(_templated(v) for v in value)
    if isinstance(value, list):
        return [_templated(v) for v in value]
    return value


def _read_back(value: Any, names: list[str]) -> Any:
    """A :func:`_templated` result with ``names`` written in place of the placeholders."""
    if type(value) is _Template:
        return value.format(*names)
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return tuple(_read_back(v, names) for v in value)
    if isinstance(value, list):
        return [_read_back(v, names) for v in value]
    return value


_LOCATION = re.compile(r'"location":-?\d+')


def _normal(entry: str) -> str:
    """A statement's entry as pglast's JSON writes it (``{"stmt": tree, "stmt_location": …, "stmt_len": …}``) without
    what differs between two statements of one shape: offsets into their texts. (Inside a JSON string a quote is
    escaped: a name or constant cannot hold the text ``"location":``.) The statement's own offsets follow the tree's
    closing brace, numbers only: cut there."""
    return _LOCATION.sub('"location":0', entry[: entry.rfind("}", 0, len(entry) - 1) + 1]) + "}"


_MATCHED = re.compile(r'"location":0|"a19x(\d+)q"')


class _Entries(NamedTuple):
    """A shape's entry as a regular expression matching the entries of the statements of that shape (:func:`_entries`):
    ``pattern``, its groups the names in ``order`` (placeholder numbers, by first place in the text)."""

    pattern: re.Pattern[str]
    order: tuple[int, ...]


def _entries(entry: str) -> _Entries:
    """The :func:`_normal` entry of a shape whose every placeholder stands where :func:`_same` lets it (a whole JSON
    string, ``"a19x0q"``: checked when cached) as a pattern: its text as it is, each offset any number, each
    placeholder a group (its later places the same text as its first), then the statement's own offsets (numbers
    only) and the entry's closing brace. Each group lies between quotes and holds none, and an offset's digits run to
    a comma or a brace, so a text matches in one way only: the groups are the names it holds."""
    parts, order, pos = [], [], 0
    for m in _MATCHED.finditer(entry):
        parts.append(re.escape(entry[pos:m.start()]))
        pos = m.end()
        if m.group(1) is None:
            parts.append('"location":-?\\d+')
        elif int(m.group(1)) in order:
            parts.append(f'"(?P=p{m.group(1)})"')
        else:
            order.append(int(m.group(1)))
            parts.append(f'"(?P<p{m.group(1)}>[^"]*)"')
    parts.append(re.escape(entry[pos:-1]) + "[^}]*}")  # _normal's cut: what follows the tree's closing brace
    return _Entries(re.compile("".join(parts)), tuple(order))


def _same_text(entry: str, shape: _Entries, names: list[str]) -> bool:
    """:func:`_same` read from the JSON texts: equal once offsets are set aside and the names written in place of the
    placeholders (``shape``: the shape's entry as :func:`_entries` matches it), for a shape whose every placeholder
    stands where :func:`_same` lets it (checked when cached). One writer wrote both texts, in one order and spelling:
    equal texts are equal trees and the converse. (``_normal(entry) == _template(shape's entry).format(*names)``,
    without writing either text.)"""
    found = shape.pattern.fullmatch(entry)
    return found is not None and found.groups() == tuple([names[i] for i in shape.order])


def by_shape(sql: str, tree: dict[str, Any], build: Callable[[str], T], tree_text: str | None = None) -> T:
    """``build(sql)``, from the cache of ``sql``'s shape when its tree (``tree``, the statement's parse tree as
    :attr:`~agent19.migrate.parse.Statement.tree` holds it) proves the shape's result fits. ``build`` must be a
    module-level function of the SQL text alone, returning text (or None, or tuples/lists of them) built from its
    parse tree. ``tree_text``: the statement's entry as pglast wrote it (:attr:`~agent19.migrate.parse.Statement.
    tree_text`), when ``tree`` is that entry's tree: compared as text, where walking both trees costs more."""
    keep: frozenset[str] = frozenset()
    for _ in range(2):  # a second try keeps the words the first one found in no name's place
        shaped = _shape(sql, keep)
        if shaped is None:
            break
        text, names = shaped
        key = (build, text)
        hit = _shapes.get(key)
        if isinstance(hit, frozenset):
            keep = frozenset(names[i] for i in hit)
            continue
        if hit is None:
            try:
                doc = parse_sql_json(text)
            except ParseError:
                break
            stmts = loads(doc).get("stmts", [])
            shape_tree = stmts[0].get("stmt") if len(stmts) == 1 else None
            if shape_tree is None or not _same(tree, shape_tree, names, "", ""):
                plain = frozenset(int(n) for n in _SVAL.findall(doc))
                if keep or not plain:
                    break  # not cached: the next statement of this shape may fit it
                if len(_shapes) >= _LIMIT:
                    _shapes.clear()
                _shapes[key] = plain
                keep = frozenset(names[i] for i in plain)
                continue
            if len(_shapes) >= _LIMIT:
                _shapes.clear()
            placeholders = [f"{_PREFIX}{i}q" for i in range(len(names))]  # each where a name may stand?
            entry = _normal(doc[doc.index('"stmts":[') + len('"stmts":['): doc.rindex("]")])
            hit = _shapes[key] = (shape_tree, _templated(build(text)),
                                  _entries(entry) if _same(shape_tree, shape_tree, placeholders, "", "") else None)
        elif not (_same_text(tree_text, hit[2], names) if tree_text is not None and hit[2] is not None
                  else _same(tree, hit[0], names, "", "")):
            break
        return _read_back(hit[1], names)  # type: ignore[no-any-return]
    return build(sql)


_NAMES_ROOM = 32
"""Bytes the names given to :func:`by_names` may take together: the longest name a builder derives from them (a
trigger ``<table>_<column>_to_new``, a constraint ``<table>_<column>_new_not_null``) then stays well under
PostgreSQL's 63, where :func:`agent19.migrate.patterns.sqlnames.short` would cut it — and cut a placeholder
elsewhere than the name."""
_by_names: dict[tuple[Any, ...], str] = {}
"""(builder, number of names, rest) → the text built for placeholder names, as a :func:`_template`"""


def by_names(build: Callable[..., str], names: tuple[str, ...], *rest: Any) -> str:
    """``build(names, *rest)``, from the text built once for placeholder names (per builder, number of names and
    ``rest``) with each statement's names written into it, when every name is written bare (no quotes: the
    placeholder is not quoted either) and they are short (:data:`_NAMES_ROOM`). ``build`` must write each name
    only as it is or inside identifiers it derives by adding text (``<name>_new``), and decide nothing from a
    name's value; ``rest`` must be hashable."""
    if (sum(map(len, names)) > _NAMES_ROOM or any(_PREFIX in n or needs_quotes(n) for n in names)
            or any(_PREFIX in str(r) for r in rest)):  # a type named a19x0q: the template would rename it
        return build(names, *rest)
    key = (build, len(names), *rest)
    template = _by_names.get(key)
    if template is None:
        if len(_by_names) >= _LIMIT:
            _by_names.clear()
        template = _by_names[key] = _template(build(tuple(f"{_PREFIX}{i}q" for i in range(len(names))), *rest))
    return template.format(*names)
