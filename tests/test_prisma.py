"""schema.prisma from a live database, judged by Prisma's own validator (@prisma/prisma-schema-wasm
from the npm registry: the Rust validator compiled to WebAssembly, no engine download)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from agent19.db.catalog import snapshot
from agent19.migrate.layouts.prisma_schema import schema_prisma
from tests.conftest import need

WASM_PACKAGE = "@prisma/prisma-schema-wasm"
CACHE = Path(os.environ.get("AGENT19_NPM_CACHE", Path.home() / ".cache" / "agent19-tests" / "prisma-wasm"))
VALIDATE_JS = """
const w = require(process.argv[process.argv.length - 1]);
const text = require('fs').readFileSync(0, 'utf8');
try { w.validate(JSON.stringify({prismaSchema: [['schema.prisma', text]], noColorErrors: true})); console.log('OK'); }
catch (e) { console.log(String(e.message || e)); process.exit(1); }
"""

SHOP = (Path(__file__).parent / "data" / "prisma_shop.sql")


@pytest.fixture(scope="session")
def prisma_validate() -> object:
    need(shutil.which("node") is not None and shutil.which("npm") is not None, "node and npm are not installed")
    module = CACHE / "node_modules" / WASM_PACKAGE
    if not module.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), WASM_PACKAGE],
                             capture_output=True, text=True, timeout=300)
        need(out.returncode == 0, f"npm install {WASM_PACKAGE} failed: {out.stderr[-500:]}")

    def validate(schema: str) -> str:
        run = subprocess.run(["node", "-e", VALIDATE_JS, "--", str(module)], input=schema, capture_output=True,
                             text=True, timeout=60)
        return run.stdout.strip()

    return validate


def _snapshot(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql)
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as c:
        return snapshot(c)


def test_generated_schema_passes_prismas_validator(dsn: str, prisma_validate) -> None:  # type: ignore[no-untyped-def]
    schema = schema_prisma(_snapshot(dsn, SHOP.read_text()))  # type: ignore[arg-type]
    verdict = prisma_validate(schema)
    assert verdict == "OK", f"{verdict}\n\n{schema}"
    # relations with back-relations, enums, composite indexes, names mapped
    assert "model Orders {" in schema and '@@map("orders")' in schema
    assert "customerId BigInt @map(\"customer_id\")" in schema
    assert ('customer Customers @relation("orders_customer_id_fkey", fields: [customerId], references: [id], '
            'onDelete: Cascade, map: "orders_customer_id_fkey")') in schema
    assert 'orders Orders[] @relation("orders_customer_id_fkey")' in schema
    assert 'profiles Profiles? @relation("profiles_customer_id_fkey")' in schema  # one-to-one
    assert "enum OrderStatus {" in schema and 'inTransit' not in schema and '@map("in-transit")' in schema
    assert "status OrderStatus @default(pending)" in schema
    assert '@@index([customerId, status], map: "orders_customer_status_idx")' in schema
    assert '@@id([orderId, lineNo], map: "order_lines_pkey")' in schema
    assert '@@unique([orderId, sku], map: "order_lines_order_id_sku_key")' in schema
    assert "// not expressible in Prisma: CREATE INDEX orders_lower_note" in schema
    assert "id Int @id @default(autoincrement())" in schema
    assert 'uid String? @default(dbgenerated("gen_random_uuid()")) @db.Uuid' in schema
    assert "price Decimal @db.Decimal(12, 2)" in schema and "email String @unique @db.VarChar(200)" in schema
    assert "@@ignore" in schema  # "Audit Log" has no key


def test_validator_rejects_a_broken_schema(prisma_validate) -> None:  # type: ignore[no-untyped-def]
    assert prisma_validate("model X {\n  id Int\n}\n") != "OK"


def test_prisma_6_keeps_the_url(dsn: str) -> None:
    schema = schema_prisma(_snapshot(dsn, "CREATE TABLE t (id int PRIMARY KEY)"), prisma_major=6)  # type: ignore[arg-type]
    assert 'url      = env("DATABASE_URL")' in schema
    assert json.dumps(schema)  # plain text
