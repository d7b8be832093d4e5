"""pgoutput, protocol version 1, read through plain SQL and turned into the changes ``cdc_apply`` applies.

psycopg 3 speaks no replication protocol, but ``pg_logical_slot_peek_binary_changes(slot, upto_lsn, upto_n,
'proto_version', '1', 'publication_names', pub)`` returns pgoutput's messages one per row. Written here rather
than taken from a library: the messages needed are few and fixed (PostgreSQL's "Logical Replication Message
Formats"), and the libraries that parse them wrap a replication connection this path does not have.

Messages (big-endian; a String ends with a zero byte):

* ``B`` Begin: Int64 final LSN, Int64 commit time (µs since 2000-01-01 UTC), Int32 xid.
* ``C`` Commit: Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit time.
* ``O`` Origin: Int64 LSN, String name. ``Y`` Type: Int32 oid, String schema, String name. (Read, unused.)
* ``R`` Relation: Int32 oid, String schema, String name, Int8 replica identity, Int16 columns, then per column
  Int8 flags (1: part of the key), String name, Int32 type oid, Int32 type modifier. Sent before a relation's
  first change in each decoding call, and again after its definition changes.
* ``I`` Insert: Int32 oid, ``N``, TupleData. ``D`` Delete: Int32 oid, ``K`` (the key) or ``O`` (the whole old
  row, REPLICA IDENTITY FULL), TupleData. ``U`` Update: Int32 oid, optionally ``K`` or ``O`` and the old
  TupleData (only when the key changed, or with FULL), then ``N`` and the new TupleData.
* ``T`` Truncate: Int32 relations, Int8 options (1 cascade, 2 restart identity), Int32 oid per relation.
* TupleData: Int16 columns, then per column ``n`` (NULL), ``u`` (an unchanged TOASTed value, not sent) or ``t``
  followed by Int32 length and the value in its text output form.

:class:`Decoder` turns them into the dictionaries of wal2json's format version 2 (``action`` B/C/I/U/D/T,
``schema``, ``table``, ``columns`` and ``identity`` as ``[{"name", "value"}]``, ``timestamp``), so both plugins
share one apply path. Values stay text: the destination's input functions parse them
(``json_populate_record``). Unchanged TOASTed values are left out, as wal2json does, so an UPDATE keeps them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ProtocolError(ValueError):
    """A message this decoder cannot read (truncated, or of a kind protocol version 1 does not have)."""


@dataclass(frozen=True)
class Column:
    name: str
    key: bool
    type_oid: int


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    identity: str  # d (default: the primary key), f (full), i (an index), n (nothing)
    columns: tuple[Column, ...]


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ProtocolError(f"message ends after {len(self.data)} bytes, {self.at + n} needed")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def byte(self) -> str:
        return self.take(1).decode("ascii")

    def int8(self) -> int:
        return self.take(1)[0]

    def int16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack(">q", self.take(8))[0])

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise ProtocolError("a string has no terminating zero byte")
        out = self.data[self.at:end].decode("utf-8")
        self.at = end + 1
        return out

    def tuple(self) -> list[tuple[str, str | None]]:
        """TupleData: per column its kind (n, u, t) and its text value (None for n and u)."""
        out: list[tuple[str, str | None]] = []
        for _ in range(self.int16()):
            kind = self.byte()
            if kind == "t":
                out.append((kind, self.take(self.int32()).decode("utf-8")))
            elif kind in ("n", "u"):
                out.append((kind, None))
            elif kind == "b":  # binary values exist only with the 'binary' option (protocol 2+), never asked for
                raise ProtocolError("a binary column value: agent19 asks pgoutput for text values only")
            else:
                raise ProtocolError(f"unknown column kind {kind!r} in TupleData")
        return out


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def timestamp_text(micros: int) -> str:
    return (PG_EPOCH + timedelta(microseconds=micros)).isoformat()


class Decoder:
    """Decodes one decoding call's messages in order (Relation messages are remembered across calls)."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}

    def decode(self, data: bytes) -> dict[str, Any] | None:
        """One message as a wal2json-v2-shaped change; None for messages that change no row (Relation,
        Type, Origin)."""
        r = _Reader(bytes(data))
        kind = r.byte()
        if kind == "B":
            final, at, xid = r.int64(), r.int64(), r.int32()
            return {"action": "B", "lsn": lsn_text(final), "timestamp": timestamp_text(at), "xid": xid}
        if kind == "C":
            r.int8()
            commit, end, at = r.int64(), r.int64(), r.int64()
            return {"action": "C", "lsn": lsn_text(commit), "nextlsn": lsn_text(end), "timestamp": timestamp_text(at)}
        if kind == "R":
            self._relation(r)
            return None
        if kind in ("Y", "O"):
            return None
        if kind == "I":
            rel = self._rel(r.int32())
            if r.byte() != "N":
                raise ProtocolError("an Insert without its new tuple")
            return self._change("I", rel, new=r.tuple())
        if kind == "U":
            rel = self._rel(r.int32())
            marker, old = r.byte(), None
            if marker in ("K", "O"):
                old, marker = r.tuple(), r.byte()
            if marker != "N":
                raise ProtocolError("an Update without its new tuple")
            return self._change("U", rel, new=r.tuple(), old=old)
        if kind == "D":
            rel = self._rel(r.int32())
            if r.byte() not in ("K", "O"):
                raise ProtocolError("a Delete without its old key or row")
            return self._change("D", rel, old=r.tuple())
        if kind == "T":
            count, options = r.int32(), r.int8()
            rels = [self._rel(r.int32()) for _ in range(count)]
            return {"action": "T", "tables": [f"{x.schema}.{x.name}" for x in rels], "cascade": bool(options & 1),
                    "restart_identity": bool(options & 2)}
        raise ProtocolError(f"message kind {kind!r} is not part of pgoutput protocol version 1 as agent19 asks "
                            "for it")

    def _relation(self, r: _Reader) -> None:
        oid, schema, name, identity = r.int32(), r.string(), r.string(), chr(r.int8())
        columns = []
        for _ in range(r.int16()):
            flags, col, type_oid = r.int8(), r.string(), r.int32()
            r.int32()  # type modifier
            columns.append(Column(name=col, key=bool(flags & 1), type_oid=type_oid))
        self.relations[oid] = Relation(oid=oid, schema=schema, name=name, identity=identity, columns=tuple(columns))

    def _rel(self, oid: int) -> Relation:
        rel = self.relations.get(oid)
        if rel is None:
            raise ProtocolError(f"a change of relation {oid} before its Relation message")
        return rel

    @staticmethod
    def _values(rel: Relation, values: list[tuple[str, str | None]], keys_only: bool = False
                ) -> list[dict[str, Any]]:
        if len(values) != len(rel.columns):
            raise ProtocolError(f"{rel.schema}.{rel.name}: {len(values)} values for {len(rel.columns)} columns")
        return [{"name": c.name, "value": v} for c, (kind, v) in zip(rel.columns, values, strict=True)
                if kind != "u" and (c.key or not keys_only)]

    def _change(self, action: str, rel: Relation, new: list[tuple[str, str | None]] | None = None,
                old: list[tuple[str, str | None]] | None = None) -> dict[str, Any]:
        change: dict[str, Any] = {"action": action, "schema": rel.schema, "table": rel.name}
        if new is not None:
            change["columns"] = self._values(rel, new)
        if old is not None:  # K: the key columns (the others are sent as NULL); O: the whole old row
            change["identity"] = self._values(rel, old, keys_only=rel.identity != "f")
        elif action == "U":  # the key did not change: it is in the new tuple
            change["identity"] = self._values(rel, new or [], keys_only=True)
        return change
