"""A19045 identifier-too-long (style): names over 63 bytes, which PostgreSQL truncates."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, StatementContext
from agent19.migrate.lint.rules._style import style_rule

MAX_BYTES = 63  # NAMEDATALEN - 1


def long_identifiers(sql: str) -> list[str]:
    """Identifiers in ``sql`` over 63 bytes, as written. Read from the scanner's tokens: the parse tree already
    holds them truncated, as the server would."""
    from pglast.parser import scan

    out = []
    for token in scan(sql):
        if token.name != "IDENT":
            continue
        text = sql[token.start: token.end + 1]
        name = text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()
        if len(name.encode()) > MAX_BYTES and name not in out:
            out.append(name)
    return out


def check(ctx: StatementContext) -> Iterator[Hit]:
    for name in long_identifiers(ctx.sql):
        cut = name.encode()[:MAX_BYTES].decode(errors="ignore")
        yield Hit(f"the name {name[:40]}... is {len(name.encode())} bytes: PostgreSQL silently truncates it to "
                  f"{cut} (63 bytes), so two long names can collide, and tools comparing the full name with the "
                  "catalog's disagree", "use a name of 63 bytes or less")


RULE = style_rule(
    code="A19045",
    name="identifier-too-long",
    aliases=("ban-long-identifiers",),
    title="Identifiers over 63 bytes are truncated (style)",
    why="PostgreSQL keeps only the first 63 bytes of an identifier (NAMEDATALEN) with a mere NOTICE. Two "
    "long names sharing their first 63 bytes become the same name; generated names (indexes, constraints) "
    "then clash or differ between environments.",
    alternative="Keep table, column, index and constraint names within 63 bytes (multi-byte characters count "
    "more than one).",
    bad="CREATE INDEX orders_customer_id_created_at_status_shipping_country_region_lookup_idx ON orders "
    "(customer_id);",
    good="CREATE INDEX orders_customer_created_status_idx ON orders (customer_id);",
    check=check,
)
