"""The results store: every run (`RunInfo`) and its measurements (`Measurement`) in one database,
SQLite for one machine or PostgreSQL for a team, through the same code (SQLAlchemy Core).

    store = ResultsStore.open()                    # $PTBENCH_STORE, else ./ptbench-results/results.sqlite
    run_id = store.begin_run(info)                 # the run is 'running'
    store.add(run_id, measurements)                # one transaction per call: committed, never lost
    store.finish_run(run_id)                       # 'finished' (or status='interrupted')
    store.frame(store.history("bench", 10))        # pandas, for the report

Many processes may write at once (torchrun ranks, pytest-xdist workers): on SQLite the store
runs in WAL mode, each write takes the write lock up front (BEGIN IMMEDIATE) and waits up to
`busy_timeout_s` for it; on PostgreSQL the server sorts it out. A process killed mid-write
loses only its uncommitted call; its run stays 'running' until it finishes or `mark_stale`
calls it 'interrupted' (nothing guesses that on open: a run on another machine may be alive).

Open one store per process. A store inherited through fork drops the parent's connections.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from ptbench.reports import schema
from ptbench.reports.records import Measurement, RunInfo
from ptbench.reports.schema import MIGRATIONS, SCHEMA_VERSION, measurements, runs, schema_info

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RUN_STATUSES", "SCHEMA_VERSION", "ResultsStore", "StoreError", "StoredRun",
           "default_store_url"]

RUN_STATUSES = ("running", "finished", "interrupted")
SQLITE_MAGIC = b"SQLite format 3\x00"
# Serialises creation and migration among processes opening one PostgreSQL store at once.
_PG_LOCK_KEY = 0x70746265  # 'ptbe'
_MEASUREMENT_FIELDS = [f.name for f in fields(Measurement)]
_RUN_FIELDS = [f.name for f in fields(RunInfo)]


class StoreError(Exception):
    """The store cannot be opened, read or written; the message says which store and why."""


class StoredRun(NamedTuple):
    """A run as the store holds it: `(id, info, status, finished)`."""

    id: int
    info: RunInfo
    status: str
    """'running', 'finished' or 'interrupted'."""
    finished: str | None
    """ISO 8601 UTC, None while running."""


def default_store_url() -> str:
    """`$PTBENCH_STORE` if set, else ptbench-results/results.sqlite under the working folder."""
    return os.environ.get("PTBENCH_STORE") or str(Path.cwd() / "ptbench-results" / "results.sqlite")


# ----------------------------------------------------------------------------------- times
def _to_db_time(text: str, what: str) -> datetime:
    """An ISO 8601 time as naive UTC (a time without offset is taken as UTC)."""
    try:
        t = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StoreError(f"{what}: expected an ISO 8601 time, got {text!r}") from None
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _from_db_time(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=timezone.utc).isoformat()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json_dumps(obj: object) -> str:
    import json

    return json.dumps(obj, sort_keys=True, default=str)


# ------------------------------------------------------------------------------ targets
def _parse_target(target: str | os.PathLike) -> Path | URL:
    """A path (SQLite) or a PostgreSQL URL for psycopg 3, or a StoreError saying why not."""
    text = os.fspath(target)
    if "://" not in text:
        return Path(text).expanduser()
    try:
        url = make_url(text)
    except sa_exc.ArgumentError:
        raise StoreError(f"not a store path or URL: {text.split('://')[0]}://...") from None
    shown = url.render_as_string(hide_password=True)
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver and driver != "pysqlite":
            raise StoreError(f"{shown}: SQLite stores use the standard library driver; "
                             "write sqlite:///PATH")
        if not url.database or url.database == ":memory:":
            raise StoreError(f"{shown}: a SQLite store needs a file path (sqlite:///PATH)")
        return Path(url.database).expanduser()
    if backend in ("postgresql", "postgres"):
        if driver and driver != "psycopg":
            raise StoreError(f"{shown}: ptbench talks to PostgreSQL through psycopg 3; "
                             "write postgresql://... or postgresql+psycopg://...")
        return url.set(drivername="postgresql+psycopg")
    raise StoreError(f"unknown store URL scheme {url.drivername!r} in {shown}: expected a "
                     "path, sqlite:///PATH or postgresql://USER@HOST/DB")


def _check_sqlite_file(path: Path) -> None:
    """Refuse anything at `path` that is not (yet) a ptbench store, without writing to it.

    A missing or empty file is a new store (SQLite itself leaves an empty file when a process
    dies before its first write); a SQLite database with no tables at all is taken over too.
    """
    if path.is_dir():
        raise StoreError(f"not a ptbench results store: {path} is a directory")
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(f"not a ptbench results store: {path} is not a SQLite database "
                         f"(it starts with {head!r})")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"corrupt results store {path}: {exc}") from None
    if tables and "schema_info" not in tables:
        raise StoreError(f"foreign database: no table schema_info in {path} (it holds "
                         f"{', '.join(sorted(tables))}); not a ptbench results store, left as it is")


def _sqlite_engine(path: Path, busy_timeout_s: float) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", json_serializer=_json_dumps)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        # The driver's own transaction handling is off: `_begin` below says BEGIN itself, so
        # that DDL is transactional and writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")  # a commit survives a power cut, not only a kill
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the write lock at BEGIN (waiting up to busy_timeout): a deferred
        # transaction that read first could not wait for it and would fail with SQLITE_BUSY.
        write = conn.get_execution_options().get("ptbench_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _pg_where(url: URL) -> str:
    query = dict(url.query)
    host = url.host or query.get("host") or "localhost (default socket)"
    port = url.port or query.get("port") or 5432
    return f"{host}:{port}"


def _scrub(message: str, url: URL) -> str:
    first = message.strip().splitlines()[0] if message.strip() else message
    return first.replace(url.password, "***") if url.password else first


# -------------------------------------------------------------------------------- store
class ResultsStore:
    """Runs and their measurements in a SQLite file or a PostgreSQL database. Use `open`."""

    def __init__(self, engine: Engine, where: str) -> None:
        self.engine, self.where = engine, where
        self._pid = os.getpid()

    # ---------------------------------------------------------------- opening and closing
    @classmethod
    def open(cls, url_or_path: str | os.PathLike | None = None, *,
             busy_timeout_s: float = 60.0, connect_timeout_s: int = 10) -> ResultsStore:
        """Open (creating or migrating it if needed) the store at a path, `sqlite:///PATH` or
        `postgresql://...`; None means `default_store_url()`."""
        target = _parse_target(default_store_url() if url_or_path is None else url_or_path)
        if isinstance(target, Path):
            _check_sqlite_file(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            store = cls(_sqlite_engine(target, busy_timeout_s), str(target))
        else:
            connect_args = {} if "connect_timeout" in target.query else {
                "connect_timeout": connect_timeout_s}
            engine = sa.create_engine(target, json_serializer=_json_dumps,
                                      connect_args=connect_args)
            store = cls(engine, target.render_as_string(hide_password=True))
            try:
                engine.connect().close()
            except sa_exc.DBAPIError as exc:
                engine.dispose()
                raise StoreError(
                    f"cannot connect to PostgreSQL at {_pg_where(target)} (database "
                    f"{target.database or '(default)'!r}, user {target.username or '(default)'!r}): "
                    f"{_scrub(str(exc.orig), target)}") from None
        try:
            store._prepare()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Close every connection (the store cannot be used afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({self.where!r})"

    # ---------------------------------------------------------------------- transactions
    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """One transaction, committed on leaving; database errors become StoreErrors."""
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(ptbench_write=True)
                with conn.begin():
                    yield conn
        except sa_exc.IntegrityError:
            raise
        except sa_exc.DBAPIError as exc:
            text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc.orig)
            hint = ""
            if "malformed" in text or "not a database" in text:
                hint = " (the file is corrupt)"
            elif "locked" in text:
                hint = " (another process held the write lock past the busy timeout)"
            raise StoreError(f"{self.where}: {text}{hint}") from exc

    # -------------------------------------------------------------------- schema version
    def _version(self, conn: Connection) -> int | None:
        """The store's schema version; None where it has no schema_info (a new store)."""
        if not sa.inspect(conn).has_table("schema_info"):
            return None
        rows = conn.execute(sa.select(schema_info.c.version)).scalars().all()
        if len(rows) != 1:
            raise StoreError(f"{self.where}: damaged store: schema_info holds {len(rows)} rows "
                             "instead of one")
        return rows[0]

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.where} was written by a newer ptbench (schema {version}); "
                             f"this one reads up to {SCHEMA_VERSION}: upgrade ptbench to read it")

    def _prepare(self) -> None:
        """Create the schema in a new store, migrate an older one, refuse a newer one."""
        with self._tx() as conn:
            version = self._version(conn)
        if version == SCHEMA_VERSION:
            return
        if version is not None:
            self._refuse_newer(version)
        with self._tx(write=True) as conn:  # again, under the write lock: another may have won
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            version = self._version(conn)
            if version is None:
                present = set(sa.inspect(conn).get_table_names()) & set(schema.TABLES)
                if present:
                    raise StoreError(f"foreign database: no table schema_info in {self.where}, "
                                     f"but tables named like ptbench's exist "
                                     f"({', '.join(sorted(present))}); left as it is")
                schema.metadata.create_all(conn)
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
                return
            self._refuse_newer(version)
            for migrate in MIGRATIONS[version:]:
                migrate(conn)
            conn.execute(schema_info.update().values(version=SCHEMA_VERSION))

    def schema_version(self) -> int:
        """The store's schema version (SCHEMA_VERSION once opened)."""
        with self._tx() as conn:
            return self._version(conn)

    # ------------------------------------------------------------------------- writing
    def begin_run(self, info: RunInfo) -> int:
        """Record a new run, status 'running'; its id."""
        if not isinstance(info, RunInfo):
            raise TypeError(f"begin_run: expected a RunInfo, got {type(info).__name__}")
        row = asdict(info)
        row["started"] = _to_db_time(info.started, "RunInfo.started")
        with self._tx(write=True) as conn:
            result = conn.execute(runs.insert().values(**row, status="running", finished=None))
            return int(result.inserted_primary_key[0])

    def add(self, run_id: int, items: Iterable[Measurement]) -> int:
        """Add measurements to a run in one transaction (all or none); how many."""
        items = list(items)
        for m in items:
            if not isinstance(m, Measurement):
                raise TypeError(f"add: expected Measurement records, got {type(m).__name__}")
        if not items:
            return 0
        now = _now()
        rows = [{**{name: getattr(m, name) for name in _MEASUREMENT_FIELDS}, "run_id": run_id,
                 "recorded_at": now} for m in items]
        try:
            with self._tx(write=True) as conn:
                conn.execute(measurements.insert(), rows)
        except sa_exc.IntegrityError as exc:
            if not self._exists(run_id):
                raise StoreError(f"add: no run {run_id} in {self.where}") from None
            raise StoreError(f"add to run {run_id} in {self.where}: {exc.orig}") from exc
        return len(rows)

    def finish_run(self, run_id: int, status: str = "finished", *,
                   config_hashes: dict[str, str] | None = None) -> None:
        """Mark a run 'finished' (or 'interrupted'), with the time; `config_hashes` (configs
        the run met only as it went) replace the run's."""
        if status not in ("finished", "interrupted"):
            raise ValueError(f"finish_run: status must be 'finished' or 'interrupted', got {status!r}")
        values = {"status": status, "finished": _now()}
        if config_hashes is not None:
            values["config_hashes"] = dict(config_hashes)
        with self._tx(write=True) as conn:
            result = conn.execute(runs.update().where(runs.c.id == run_id).values(**values))
        if result.rowcount != 1:
            raise StoreError(f"finish_run: no run {run_id} in {self.where}")

    @contextlib.contextmanager
    def recording(self, info: RunInfo) -> Iterator[int]:
        """`with store.recording(info) as run_id:` add measurements; the run is 'finished'
        on leaving, 'interrupted' when an exception (Ctrl-C included) leaves it."""
        run_id = self.begin_run(info)
        try:
            yield run_id
        except BaseException:
            self.finish_run(run_id, "interrupted")
            raise
        self.finish_run(run_id)

    def mark_stale(self, older_than: timedelta | float) -> list[int]:
        """Call 'interrupted' every run still 'running' that started, and last recorded a
        measurement, more than `older_than` (a timedelta or seconds) ago; their ids. For runs
        whose process died (killed, machine lost): nothing else ends them."""
        if not isinstance(older_than, timedelta):
            older_than = timedelta(seconds=older_than)
        now = _now()
        cutoff = now - older_than
        recent = sa.select(measurements.c.id).where(measurements.c.run_id == runs.c.id,
                                                    measurements.c.recorded_at >= cutoff)
        with self._tx(write=True) as conn:
            ids = conn.execute(sa.select(runs.c.id).where(
                runs.c.status == "running", runs.c.started < cutoff, ~sa.exists(recent))
            ).scalars().all()
            if ids:
                conn.execute(runs.update().where(runs.c.id.in_(ids))
                             .values(status="interrupted", finished=now))
        return sorted(ids)

    # ------------------------------------------------------------------------- reading
    def _exists(self, run_id: int) -> bool:
        with self._tx() as conn:
            return conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is not None

    @staticmethod
    def _stored_run(row) -> StoredRun:
        values = {name: getattr(row, name) for name in _RUN_FIELDS}
        values["started"] = _from_db_time(row.started)
        for name in ("versions", "config_hashes", "labels"):
            values[name] = dict(values[name] or {})
        return StoredRun(row.id, RunInfo(**values), row.status, _from_db_time(row.finished))

    def runs(self, kind: str | None = None, limit: int | None = None) -> list[StoredRun]:
        """Runs (of one kind), newest first: `(id, info, status, finished)` each."""
        query = sa.select(runs).order_by(runs.c.started.desc(), runs.c.id.desc())
        if kind is not None:
            query = query.where(runs.c.kind == kind)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as conn:
            return [self._stored_run(r) for r in conn.execute(query)]

    def run(self, run_id: int) -> StoredRun:
        """One run, or a StoreError if there is none with that id."""
        with self._tx() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.where}")
        return self._stored_run(row)

    def history(self, kind: str, limit: int | None = None) -> list[int]:
        """Ids of the last `limit` finished runs of a kind, newest first."""
        query = (sa.select(runs.c.id).where(runs.c.kind == kind, runs.c.status == "finished")
                 .order_by(runs.c.started.desc(), runs.c.id.desc()))
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as conn:
            return list(conn.execute(query).scalars())

    @staticmethod
    def _measurement(row) -> Measurement:
        values = {name: getattr(row, name) for name in _MEASUREMENT_FIELDS}
        values["value"] = math.nan if row.value is None else row.value
        values["labels"] = dict(row.labels or {})
        return Measurement(**values)

    def measurements(self, run_id: int) -> list[Measurement]:
        """A run's measurements, in the order they were added."""
        query = (sa.select(measurements).where(measurements.c.run_id == run_id)
                 .order_by(measurements.c.id))
        with self._tx() as conn:
            return [self._measurement(r) for r in conn.execute(query)]

    def count(self, run_id: int | None = None) -> int:
        """How many measurements (of one run)."""
        query = sa.select(sa.func.count()).select_from(measurements)
        if run_id is not None:
            query = query.where(measurements.c.run_id == run_id)
        with self._tx() as conn:
            return int(conn.execute(query).scalar_one())

    FRAME_RUN_COLUMNS = ("run_kind", "run_status", "started", "git_revision", "git_dirty",
                         "versions", "host", "gpu")

    def frame(self, run_ids: Iterable[int]) -> pd.DataFrame:
        """The runs' measurements as one DataFrame, oldest run first: `run_id`, every
        Measurement field, `recorded_at`, and the run's FRAME_RUN_COLUMNS (times as UTC
        timestamps, seed and step as nullable integers, labels and versions as dicts)."""
        import pandas as pd

        ids = list(dict.fromkeys(int(i) for i in run_ids))
        columns = ["run_id", *_MEASUREMENT_FIELDS, "recorded_at", *self.FRAME_RUN_COLUMNS]
        query = (sa.select(measurements, runs.c.kind.label("run_kind"),
                           runs.c.status.label("run_status"), runs.c.started, runs.c.git_revision,
                           runs.c.git_dirty, runs.c.versions, runs.c.host, runs.c.gpu)
                 .join(runs, runs.c.id == measurements.c.run_id)
                 .order_by(runs.c.started, runs.c.id, measurements.c.id))
        records = []
        with self._tx() as conn:
            for start in range(0, len(ids), 500):  # SQLite caps the parameters of one query
                chunk = query.where(measurements.c.run_id.in_(ids[start:start + 500]))
                records.extend(r._asdict() for r in conn.execute(chunk))
        df = pd.DataFrame.from_records(records, columns=columns)
        df["value"] = df["value"].astype(float)  # NULL stands for NaN (see schema)
        df["flops"] = df["flops"].astype(float)
        for name in ("seed", "step"):
            df[name] = df[name].astype("Int64")
        for name in ("started", "recorded_at"):
            df[name] = pd.to_datetime(df[name], utc=True)
        for name in ("labels", "versions"):
            df[name] = [dict(v or {}) for v in df[name]]
        df = df.sort_values(["started", "run_id"], kind="stable").reset_index(drop=True)
        return df
