"""The results store's tables, their version, and the migrations that bring an older store up
to date. `ptbench.reports.db` is the only user.

A store records its version in `schema_info`. A fresh store is created at `SCHEMA_VERSION`
from the tables below; an older one is migrated by `MIGRATIONS[v]` (version v -> v+1), one
after the other, in the transaction that opens it. To change the schema: edit the tables,
append one migration that does the same to an existing store, bump `SCHEMA_VERSION`, and add
the previous version to the migration test.

Times are stored as naive UTC (SQLite has no time zone type); `ptbench.reports.db` converts.
Strings that a measurement may leave empty are stored as '' (never NULL), so that equality
queries on them need no NULL handling; numbers it may leave out (seed, step, flops) are NULL.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA_VERSION = 1
"""The version this code writes, and the newest it reads."""

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite's autoincrement needs INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

schema_info = Table(
    "schema_info", metadata,
    Column("version", Integer, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("started", DateTime, nullable=False),
    Column("finished", DateTime, nullable=True, comment="NULL while running"),
    Column("status", Text, nullable=False, comment="running | finished | interrupted"),
    Column("command", Text, nullable=False, default=""),
    Column("git_revision", Text, nullable=False, default=""),
    Column("git_dirty", Boolean, nullable=False, default=False),
    Column("host", Text, nullable=False, default=""),
    Column("cpu", Text, nullable=False, default=""),
    Column("gpu", Text, nullable=False, default=""),
    Column("gpu_count", Integer, nullable=False, default=0),
    Column("versions", JSONType, nullable=False),
    Column("config_hashes", JSONType, nullable=False),
    Column("labels", JSONType, nullable=False),
)
Index("ix_runs_kind_status_started", runs.c.kind, runs.c.status, runs.c.started)
Index("ix_runs_started", runs.c.started)

measurements = Table(
    "measurements", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("metric", Text, nullable=False),
    # NULL stands for NaN: SQLite stores a NaN REAL as NULL, so both databases read it back so.
    Column("value", Double, nullable=True),
    Column("kind", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("test_id", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("pipeline", Text, nullable=False),
    Column("task", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("seed", BigInteger, nullable=True),
    Column("stage", Text, nullable=False),
    Column("step", BigInteger, nullable=True),
    Column("flops", Double, nullable=True),
    Column("status", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("labels", JSONType, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
)
Index("ix_measurements_run", measurements.c.run_id)
Index("ix_measurements_metric_config", measurements.c.metric, measurements.c.config)

TABLES = ("schema_info", "runs", "measurements")


def _v0_to_v1(conn: Connection) -> None:
    """Version 1 adds `labels` (JSON, default {}) to runs and to measurements."""
    json_ddl = JSONType.compile(dialect=conn.dialect)
    for table in ("runs", "measurements"):
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN labels {json_ddl} NOT NULL DEFAULT '{{}}'")


MIGRATIONS: list[Callable[[Connection], None]] = [_v0_to_v1]
"""MIGRATIONS[v] brings a store from version v to v+1 (inside the caller's transaction)."""
assert len(MIGRATIONS) == SCHEMA_VERSION, "one migration per version step"
