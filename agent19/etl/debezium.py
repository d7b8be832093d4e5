"""Kafka Connect configuration for when one process is not enough: the Debezium PostgreSQL source connector
(pgoutput, a filtered publication, the slot, the table include list, a heartbeat, the snapshot mode, the
ExtractNewRecordState unwrap) and a JDBC sink that upserts and deletes by key, plus the source-side SQL they
need (publication, heartbeat table, REPLICA IDENTITY). Generated only — nothing here talks to Kafka — and
checked against the live source with :func:`agent19.etl.cdc_check.check_cdc`.

Passwords never appear: both configurations read them through Kafka's ``EnvVarConfigProvider``
(``${env:VAR}``; the worker needs ``config.providers=env``).
"""

from __future__ import annotations

import json
import re

from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, Field

from agent19.errors import InputError
from agent19.etl.cdc_apply import qualified, quoted
from agent19.etl.cdc_check import CdcReadiness
from agent19.migrate.patterns.sqlnames import ident, literal

HEARTBEAT_TABLE = "agent19_etl.debezium_heartbeat"


class DebeziumConfig(BaseModel):
    source_connector: dict[str, object] = Field(description="POST to Kafka Connect /connectors")
    sink_connector: dict[str, object] | None = None
    setup_sql: str = Field(description="run once on the source, as an owner of the tables")
    readiness: CdcReadiness
    notes: list[str] = []


def _parts(dsn: str) -> dict[str, str]:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    return {"host": params.get("host", "localhost"), "port": params.get("port", "5432"),
            "user": params.get("user", "postgres"), "dbname": params.get("dbname", params.get("user", "postgres"))}


def debezium_config(source_dsn: str, tables: list[str], readiness: CdcReadiness, *, name: str, topic_prefix: str,
                    slot: str, publication: str, sink_dsn: str | None, heartbeat_ms: int = 10_000,
                    snapshot_mode: str = "initial") -> DebeziumConfig:
    if not tables:
        raise InputError("no table to capture", "name them, e.g. agent19 cdc debezium public.orders")
    if not re.fullmatch(r"[a-z0-9_]{1,63}", slot) or not re.fullmatch(r"[a-z0-9_]{1,63}", publication):
        raise InputError("slot and publication names: lower case letters, digits and _ only (Debezium's rule)",
                         "e.g. --slot debezium_orders --publication debezium_orders")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", topic_prefix):
        raise InputError(f"topic prefix {topic_prefix!r} is not a valid Kafka topic name part", "e.g. shop")
    src = _parts(source_dsn)
    names = [qualified(t) for t in tables]
    if any(ch < " " for n in [*names, src["user"]] for ch in n):
        raise InputError("a table or login name holds a control character (a line break would end a comment of "
                         "the setup SQL)", "rename it; Debezium's include list could not name it either")
    if any("," in n for n in names):
        raise InputError("a table name holds a comma: Debezium's table.include.list is comma-separated and cannot "
                         "name it", "rename the table, or capture it with agent19 cdc run")
    tables_sql = [quoted(n) for n in names]
    login = ident(src["user"])
    source = {
        "name": f"{name}-source",
        "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput",
            "database.hostname": src["host"], "database.port": src["port"], "database.user": src["user"],
            "database.password": "${env:DEBEZIUM_SOURCE_PASSWORD}", "database.dbname": src["dbname"],
            "topic.prefix": topic_prefix,
            "slot.name": slot,
            "publication.name": publication,
            "publication.autocreate.mode": "disabled",  # the filtered publication comes from setup_sql
            # comma-separated regular expressions matched against schema.table: names are escaped (a `+` or `.`
            # in a name is itself, and the separator dot is a dot), a comma cannot be written (refused above)
            "table.include.list": ",".join(re.escape(n) for n in [*names, HEARTBEAT_TABLE]),
            "heartbeat.interval.ms": str(heartbeat_ms),
            "heartbeat.action.query": f"INSERT INTO {HEARTBEAT_TABLE} (id, ts) VALUES (1, now()) "
                                      "ON CONFLICT (id) DO UPDATE SET ts = EXCLUDED.ts",
            "snapshot.mode": snapshot_mode,
            "slot.drop.on.stop": "false",
            "transforms": "unwrap",
            "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.drop.tombstones": "false",
            "transforms.unwrap.delete.handling.mode": "none",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true",
        },
    }
    sink = None
    if sink_dsn is not None:
        dst = _parts(sink_dsn)
        topics = "|".join(re.escape(n) for n in names)
        sink = {
            "name": f"{name}-sink",
            "config": {
                "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
                "connection.url": f"jdbc:postgresql://{dst['host']}:{dst['port']}/{dst['dbname']}",
                "connection.user": dst["user"], "connection.password": "${env:JDBC_SINK_PASSWORD}",
                "topics.regex": f"{re.escape(topic_prefix)}\\.({topics})",
                "transforms": "route",
                "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
                "transforms.route.regex": f"{re.escape(topic_prefix)}\\.(.*)",
                "transforms.route.replacement": "$1",
                "table.name.format": "${topic}",
                "insert.mode": "upsert", "pk.mode": "record_key", "delete.enabled": "true",
                "auto.create": "false", "auto.evolve": "false",
                "key.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true",
            },
        }
    fixes = [f.fix for f in readiness.findings if f.fix and f.check in ("replica_identity",)]
    setup = "\n".join([
        "-- agent19 cdc debezium: run once on the source as an owner of the tables",
        "CREATE SCHEMA IF NOT EXISTS agent19_etl;",
        f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} (id int PRIMARY KEY, ts timestamptz NOT NULL);",
        f"CREATE PUBLICATION {ident(publication)} FOR TABLE {', '.join([*tables_sql, HEARTBEAT_TABLE])};",
        *fixes,
        f"-- GRANT SELECT ON {', '.join(tables_sql)}, {HEARTBEAT_TABLE} TO {login};",
        f"-- GRANT INSERT, UPDATE ON {HEARTBEAT_TABLE} TO {login};",
        f"-- ALTER ROLE {login} REPLICATION;",
    ]) + "\n"
    notes = [
        "Kafka Connect worker: config.providers=env, config.providers.env.class="
        "org.apache.kafka.common.config.provider.EnvVarConfigProvider (Kafka 3.5+); export "
        "DEBEZIUM_SOURCE_PASSWORD" + (" and JDBC_SINK_PASSWORD" if sink else ""),
        f"the slot {slot} lives on the source from the connector's first start: deleting the connector does not "
        f"drop it (SELECT pg_drop_replication_slot({literal(slot)})); set max_slot_wal_keep_size",
        f"the heartbeat ({heartbeat_ms} ms) writes {HEARTBEAT_TABLE} so the slot advances on a quiet database",
        "deletes reach the sink as tombstones (drop.tombstones=false) and delete by key (delete.enabled=true)",
    ]
    if not readiness.ready:
        notes.insert(0, "the source is NOT ready: see readiness (setup_sql fixes the replica identities; server "
                     "settings need ALTER SYSTEM and, for wal_level, a restart)")
    return DebeziumConfig(source_connector=source, sink_connector=sink, setup_sql=setup, readiness=readiness,
                          notes=notes)


def dumps(config: dict[str, object]) -> str:
    return json.dumps(config, indent=2) + "\n"
