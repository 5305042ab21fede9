"""The results store (ptbench.reports.db) and its importers, on SQLite and on a real PostgreSQL
server (tests/conftest.py starts one; skipped where PostgreSQL is not installed).

What is proved: a run and its measurements come back as written; a writer killed by SIGKILL
inside a transaction loses that transaction only, and leaves the store writable; concurrent
writer processes lose nothing; an older store is migrated in one transaction and a newer one
refused; bad input gets an error naming the problem and is left untouched; the importers read
real metrics.jsonl files and the committed version-matrix results.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ptbench.pipelines.tracking import Tracker
from ptbench.reports import db, schema
from ptbench.reports.db import SCHEMA_VERSION, ResultsStore, StoreError, default_store_url
from ptbench.reports.importers import (
    import_path,
    measurements_from_metrics,
    measurements_from_probe_results,
    metric_direction,
)
from ptbench.reports.records import Measurement, RunInfo

ROOT = Path(__file__).resolve().parents[1]
MATRIX_RESULTS = sorted((ROOT / "benchmarks" / "matrix" / "results").glob("*.json"))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A new, empty store location: a SQLite path, or a fresh database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "results.sqlite")
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def pg_database_url(request, postgres_url) -> str:
    """A fresh, empty database on the session's PostgreSQL server, dropped afterwards."""
    server = make_url(postgres_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = dict(host=server.query["host"], port=server.query["port"], user=server.username,
                 dbname=server.database, autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: _drop_database(admin, name))
    return server.set(database=name).render_as_string(hide_password=False)


def _drop_database(admin: dict, name: str) -> None:
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _info(kind: str = "bench", started: str = "2026-11-27T07:38:19+00:00", **kw) -> RunInfo:
    return RunInfo(kind=kind, started=started, **kw)


def _same(a: list[Measurement], b: list[Measurement]) -> bool:
    """Equal, NaN equal to NaN."""
    def norm(m: Measurement) -> tuple:
        return tuple("nan" if isinstance(v, float) and math.isnan(v) else v
                     for v in (getattr(m, f) for f in db._MEASUREMENT_FIELDS[:-1])) + (m.labels,)
    return [norm(m) for m in a] == [norm(m) for m in b]


# ---------------------------------------------------------------------------- round trip
FULL_INFO = RunInfo(kind="bench", started="2026-11-27T09:38:19.250000+02:00",
                    command="pytest bench/ -k probe", git_revision="a3e2e24", git_dirty=True,
                    host="vm", cpu="AMD EPYC", gpu="H200", gpu_count=8,
                    versions={"torch": "2.13.0+cpu", "openrlhf": None},
                    config_hashes={"sft": "ab" * 32}, labels={"nightly": True, "shard": 3})
MEASURED = [
    Measurement("eval/id_accuracy", 0.8125, kind="value", direction="higher", unit="frac",
                test_id="bench/test_x.py::test_a[sft]", config="sft-arithmetic", pipeline="sft",
                task="arithmetic", backend="native", seed=2**40, stage="0:sft", step=30,
                flops=1.5e15, labels={"loss_agg": "token-mean", "n": 3}),
    Measurement("probe", 0.0, kind="status", direction="higher", config="deepspeed-z2-offload-ws1",
                status="fail", detail="micro-batches 2-5 of 6 look dropped", seed=0),
    Measurement("timing/probe", 1.25, kind="timing", direction="lower", unit="s"),
    Measurement("train/loss", math.nan, direction="lower"),  # a diverged run: NaN kept
    Measurement("train/grad_norm", math.inf, direction="none", step=-1),
]


def test_round_trip_of_a_run_and_its_measurements(store_url):
    with ResultsStore.open(store_url) as store:
        old = store.begin_run(_info(started="2026-01-01T00:00:00Z"))
        store.finish_run(old)
        run_id = store.begin_run(FULL_INFO)
        assert store.add(run_id, MEASURED[:2]) == 2
        assert store.add(run_id, iter(MEASURED[2:])) == 3
        other = store.begin_run(_info(kind="pipeline", started="2026-11-28T00:00:00+00:00"))
        imported = store.begin_run(_info(started="2025-06-01T12:00:00"))  # an older run, added late
        store.finish_run(imported)
        assert store.runs(kind="bench")[0] == (run_id, store.run(run_id).info, "running", None)
        store.finish_run(run_id)
    with ResultsStore.open(store_url) as store:  # read back by a new connection
        listed = store.runs()
        assert [r.id for r in listed] == [other, run_id, old, imported], "newest start first"
        assert listed[-1].info.started == "2025-06-01T12:00:00+00:00", "no offset: UTC"
        got = store.run(run_id)
        # The start time comes back as the same instant, in UTC.
        assert got.info == RunInfo(**{**FULL_INFO.__dict__,
                                      "started": "2026-11-27T07:38:19.250000+00:00"})
        assert got.status == "finished" and got.finished is not None
        assert _same(store.measurements(run_id), MEASURED)
        assert store.measurements(other) == []
        assert store.history("bench", 1) == [run_id]
        assert store.history("bench", 5) == [run_id, old, imported]
        assert store.history("pipeline", 5) == [], "a running run is not history"
        assert [r.id for r in store.runs(kind="bench", limit=1)] == [run_id]

        df = store.frame([run_id, old, other])
        assert len(df) == len(MEASURED)
        assert list(df["metric"]) == [m.metric for m in MEASURED]
        row = df.iloc[0]
        assert (row["run_id"], row["git_revision"], row["git_dirty"], row["seed"], row["step"]) == (
            run_id, "a3e2e24", True, 2**40, 30)
        assert row["versions"] == {"torch": "2.13.0+cpu", "openrlhf": None}
        assert row["labels"] == {"loss_agg": "token-mean", "n": 3}
        assert str(row["started"]) == "2026-11-27 07:38:19.250000+00:00"
        assert math.isnan(df["value"].iloc[3]) and df["value"].iloc[4] == math.inf
        assert df["seed"].isna().tolist() == [False, False, True, True, True]
        assert store.frame([]).empty and "value" in store.frame([]).columns


def test_writes_are_checked(tmp_path):
    with ResultsStore.open(tmp_path / "r.sqlite") as store:
        with pytest.raises(StoreError, match="no run 99"):
            store.add(99, MEASURED[:1])
        with pytest.raises(StoreError, match="no run 99"):
            store.finish_run(99)
        with pytest.raises(StoreError, match="expected an ISO 8601 time, got 'yesterday'"):
            store.begin_run(_info(started="yesterday"))
        with pytest.raises(TypeError, match="expected Measurement records, got dict"):
            store.add(store.begin_run(_info()), [{"metric": "x", "value": 1}])
        with pytest.raises(ValueError, match="'finished' or 'interrupted'"):
            store.finish_run(1, "done")
        with store.recording(_info()) as ok:
            store.add(ok, MEASURED[:1])
        with pytest.raises(KeyError), store.recording(_info()) as broken:
            raise KeyError("boom")
        assert store.run(ok).status == "finished" and store.run(broken).status == "interrupted"


def test_default_store_url(monkeypatch, tmp_path):
    monkeypatch.delenv("PTBENCH_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_store_url() == str(tmp_path / "ptbench-results" / "results.sqlite")
    with ResultsStore.open() as store:
        assert store.where == default_store_url() and store.dialect == "sqlite"
    monkeypatch.setenv("PTBENCH_STORE", "postgresql://u@db.example/results")
    assert default_store_url() == "postgresql://u@db.example/results"


# ------------------------------------------------------------------ killed and concurrent
# The writer scripts run as separate Python processes: `python -c SCRIPT URL SIDEFILE ...`.
# After each commit a writer appends the batch number to SIDEFILE, flushed: what it reports
# committed is committed.
KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import sqlalchemy as sa
    from ptbench.reports.db import ResultsStore
    from ptbench.reports.records import Measurement, RunInfo

    url, side, batch, hang_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = ResultsStore.open(url)
    run_id = store.begin_run(RunInfo(kind="killed", started="2026-11-27T00:00:00+00:00"))
    state = {"batch": 0}

    @sa.event.listens_for(store.engine, "commit")
    def hang(conn):
        # About to commit the transaction that completes batch `hang_at` in the database:
        # say so and wait here, transaction open, for SIGKILL.
        if state["batch"] != hang_at:
            return
        rows = conn.exec_driver_sql(f"SELECT count(*) FROM measurements WHERE run_id = {run_id} "
                                    f"AND step = {hang_at}").scalar()
        if rows == batch:
            with open(side, "a") as f:
                f.write("in-flight\\n")
            time.sleep(120)

    with open(side, "a") as f:
        f.write(f"run {run_id}\\n")
    for b in range(10**6):
        state["batch"] = b
        store.add(run_id, [Measurement("train/loss", float(i), direction="lower", step=b, seed=i)
                           for i in range(batch)])
        with open(side, "a") as f:
            f.write(f"{b}\\n")
""")


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited ({proc.returncode}) before {what}:\n"
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_writer_killed_mid_transaction_loses_only_that_transaction(store_url, tmp_path):
    ResultsStore.open(store_url).close()  # created before the writer starts
    side, batch, hang_at = tmp_path / "committed.txt", 50, 12
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, store_url, str(side),
                             str(batch), str(hang_at)], stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: "in-flight" in _lines(side), proc, "the writer reached batch 12")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    lines = _lines(side)
    run_id, committed = int(lines[0].split()[1]), [int(x) for x in lines[1:-1]]
    assert committed == list(range(hang_at)) and lines[-1] == "in-flight"

    started = time.monotonic()
    with ResultsStore.open(store_url, busy_timeout_s=20) as store:
        per_batch = Counter(m.step for m in store.measurements(run_id))
        # Every batch reported committed is there, whole; the one in flight is not, at all.
        assert per_batch == {b: batch for b in committed}
        new = store.begin_run(_info(kind="after"))  # the dead writer holds no lock
        store.add(new, MEASURED[:2])
        store.finish_run(new)
        assert time.monotonic() - started < 10, "waited for a lock the dead writer held"
        assert store.run(run_id).status == "running", "nothing ended the dead writer's run"
        assert store.mark_stale(3600) == [], "started and wrote within the hour: not stale"
        assert store.mark_stale(0) == [run_id]
        assert store.run(run_id).status == "interrupted" and store.run(run_id).finished
        assert store.run(new).status == "finished" and len(store.measurements(new)) == 2


CONCURRENT_WRITER = textwrap.dedent("""
    import os, sys, time
    from ptbench.reports.db import ResultsStore
    from ptbench.reports.records import Measurement, RunInfo

    url, side, go, rank, shared, batches, batch = sys.argv[1:8]
    rank, shared, batches, batch = int(rank), int(shared), int(batches), int(batch)
    store = ResultsStore.open(url)
    with open(side, "a") as f:
        f.write("ready\\n")
    while not os.path.exists(go):
        time.sleep(0.002)
    start = time.time()
    own = store.begin_run(RunInfo(kind="rank", started="2026-11-27T00:00:00+00:00",
                                  labels={"rank": rank}))
    for b in range(batches):
        store.add(shared, [Measurement("loss", float(i), step=b, seed=i, labels={"rank": rank})
                           for i in range(batch)])
        store.add(own, [Measurement("own", float(b), step=b)])
    store.finish_run(own)
    with open(side, "a") as f:
        f.write(f"{start} {time.time()}\\n")
""")


def test_concurrent_writers_lose_nothing(store_url, tmp_path):
    writers, batches, batch = 2, 40, 25
    with ResultsStore.open(store_url) as store:
        shared = store.begin_run(_info(kind="shared"))
    go = tmp_path / "go"
    procs = [subprocess.Popen(
        [sys.executable, "-c", CONCURRENT_WRITER, store_url, str(tmp_path / f"ready{r}"), str(go),
         str(r), str(shared), str(batches), str(batch)], stderr=subprocess.PIPE, text=True)
        for r in range(writers)]
    try:
        for r, proc in enumerate(procs):
            _wait_for(lambda r=r: (tmp_path / f"ready{r}").exists(), proc, "the writers were ready")
        go.touch()  # both start writing at once
        for proc in procs:
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    with ResultsStore.open(store_url) as store:
        assert store.count(shared) == writers * batches * batch
        got = Counter((m.labels["rank"], m.step) for m in store.measurements(shared))
        assert got == {(r, b): batch for r in range(writers) for b in range(batches)}
        own = store.runs(kind="rank")
        assert sorted(r.info.labels["rank"] for r in own) == list(range(writers))
        assert all(r.status == "finished" and store.count(r.id) == batches for r in own)
    # Not a check of the store: that the writers' write loops overlapped in time, so that they
    # did contend for the store (on SQLite one may well wait out the other's whole loop).
    (a0, a1), (b0, b1) = [map(float, _lines(tmp_path / f"ready{r}")[1].split()) for r in range(2)]
    assert a0 < b1 and b0 < a1, "the writers did not overlap: the test proved nothing"


# ---------------------------------------------------------------------------- migrations
def _make_version_0_store(url: str) -> None:
    """A store as ptbench's schema version 0 wrote it: no `labels` on runs or measurements."""
    engine = sa.create_engine(url if "://" in url else f"sqlite:///{url}")
    md = sa.MetaData()
    sa.Table("schema_info", md, sa.Column("version", sa.Integer, nullable=False))
    sa.Table("runs", md, *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                           for c in schema.runs.c if c.name != "labels"])
    sa.Table("measurements", md,
             *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
               for c in schema.measurements.c if c.name != "labels"])
    with engine.begin() as conn:
        md.create_all(conn)
        conn.execute(md.tables["schema_info"].insert().values(version=0))
        conn.execute(md.tables["runs"].insert().values(
            kind="bench", started=sa.func.current_timestamp(), status="finished",
            command="old", git_revision="", git_dirty=False, host="", cpu="", gpu="", gpu_count=0,
            versions={}, config_hashes={}))
        conn.execute(md.tables["measurements"].insert().values(
            run_id=1, metric="probe", value=1.0, kind="status", direction="higher", unit="",
            test_id="", config="torch", pipeline="", task="", backend="", stage="", status="pass",
            detail="", recorded_at=sa.func.current_timestamp()))
    engine.dispose()


def test_an_older_store_is_migrated_keeping_its_rows(store_url):
    if "://" not in store_url:
        Path(store_url).parent.mkdir()
    _make_version_0_store(store_url)
    with ResultsStore.open(store_url) as store:
        assert store.schema_version() == SCHEMA_VERSION == 1
        (old,) = store.runs()
        assert (old.id, old.info.command, old.info.labels) == (1, "old", {})
        assert store.measurements(1)[0].labels == {} and store.measurements(1)[0].status == "pass"
        new = store.begin_run(_info(labels={"after": "migration"}))
        store.add(new, [Measurement("m", 2.0, labels={"x": 1})])
        assert store.measurements(new)[0].labels == {"x": 1}
        assert store.run(new).info.labels == {"after": "migration"}


def test_a_failed_migration_leaves_the_store_as_it_was(store_url, monkeypatch):
    if "://" not in store_url:
        Path(store_url).parent.mkdir()
    _make_version_0_store(store_url)

    def broken(conn):
        raise RuntimeError("migration 1 -> 2 failed")

    monkeypatch.setattr(db, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    monkeypatch.setattr(db, "SCHEMA_VERSION", 2)
    with pytest.raises(RuntimeError, match="migration 1 -> 2 failed"):
        ResultsStore.open(store_url)
    engine = sa.create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM schema_info")).scalar_one() == 0
        # The first migration's ALTER TABLE was rolled back with the rest: one transaction.
        assert "labels" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}
    engine.dispose()


def test_a_newer_store_is_refused(store_url):
    with ResultsStore.open(store_url) as store:
        store.begin_run(_info())
        with store.engine.begin() as conn:
            conn.execute(schema.schema_info.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match=r"written by a newer ptbench \(schema 2\); this one reads up to 1"):
        ResultsStore.open(store_url)


# ------------------------------------------------------------------------------ bad input
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("name,value\nloss,1.0\n")
    with pytest.raises(StoreError, match=r"not a ptbench results store: .*results.sqlite is not a SQLite database"):
        ResultsStore.open(path)
    assert path.read_text() == "name,value\nloss,1.0\n"
    with pytest.raises(StoreError, match="is a directory"):
        ResultsStore.open(tmp_path)


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"foreign database: no table schema_info in .*app.db \(it holds users\)"):
        ResultsStore.open(f"sqlite:///{path}")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_a_corrupt_store_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore.open(path) as store:
        store.add(store.begin_run(_info()), [Measurement("m", float(i)) for i in range(3000)])
    data = bytearray(path.read_bytes())
    header, pages = bytearray(data), bytearray(data)
    header[16:100] = b"\xff" * 84  # the header after the magic string: page size, counts
    (tmp_path / "header.sqlite").write_bytes(header)
    with pytest.raises(StoreError, match=r"corrupt results store .*header.sqlite: file is not a database"):
        ResultsStore.open(tmp_path / "header.sqlite")
    for offset in range(2 * 4096, len(pages), 4096):  # every page after the schema's
        pages[offset:offset + 64] = b"\x07" * 64
    (tmp_path / "pages.sqlite").write_bytes(pages)
    with pytest.raises(StoreError, match=r"pages.sqlite: database disk image is malformed \(the file is corrupt\)"), \
            ResultsStore.open(tmp_path / "pages.sqlite") as store:
        store.measurements(1)


def test_unknown_urls_are_refused_without_showing_passwords():
    with pytest.raises(StoreError, match="unknown store URL scheme 'mysql'") as err:
        ResultsStore.open("mysql://bob:s3cret@db.example/results")
    assert "s3cret" not in str(err.value)
    with pytest.raises(StoreError, match="through psycopg 3"):
        ResultsStore.open("postgresql+psycopg2://bob@db.example/results")
    with pytest.raises(StoreError, match="needs a file path"):
        ResultsStore.open("sqlite://")


def test_an_unreachable_postgresql_is_named_without_its_password():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=rf"cannot connect to PostgreSQL at 127.0.0.1:{port} "
                                         r"\(database 'results', user 'bob'\)") as err:
        ResultsStore.open(f"postgresql://bob:s3cret@127.0.0.1:{port}/results", connect_timeout_s=3)
    assert "s3cret" not in str(err.value)


def test_a_foreign_postgresql_database_is_refused(pg_database_url):
    store_url = pg_database_url
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE runs (id integer)")
        conn.exec_driver_sql("CREATE TABLE unrelated (id integer)")
    engine.dispose()
    with pytest.raises(StoreError, match=r"foreign database: no table schema_info .*\(runs\)"):
        ResultsStore.open(store_url)


# ------------------------------------------------------------------------------ importers
def test_metric_directions():
    assert [metric_direction(m) for m in (
        "eval/id_accuracy", "eval/sampled_reward", "train/reward", "eval/sft_ce", "train/loss",
        "train/rl_loss", "eval/kl_to_base", "flops/total", "eval/param_dist_base", "tokens",
        "train/grad_norm", "train/clip_fraction", "train/trl_frac_reward_zero_std", "whatever",
    )] == ["higher", "higher", "higher", "lower", "lower", "lower", "lower", "none", "none",
           "none", "none", "none", "none", "none"]


def test_metrics_jsonl_is_imported(tmp_path):
    tracker = Tracker(tmp_path / "run" / "metrics.jsonl", pipeline="sft-arithmetic", seed=3)
    tracker.log("0:sft", 0, 0, 0, {"eval/id_accuracy": 0.25, "eval/kl_to_base": 0.0,
                                    "eval/mystery": None}, flops=0.0, tokens=0)
    tracker.log("0:sft", 0, 5, 5, {"train/loss": 1.5, "flops/train": 1e9, "eval/mystery": 7.0},
                flops=1e9, tokens=640)
    info, found = measurements_from_metrics(tracker.path)
    assert info.kind == "pipeline" and info.labels["pipeline"] == "sft-arithmetic"
    assert [(m.metric, m.value, m.direction, m.step, m.seed, m.flops, m.stage, m.pipeline)
            for m in found] == [
        ("eval/id_accuracy", 0.25, "higher", 0, 3, 0.0, "0:sft", "sft-arithmetic"),
        ("eval/kl_to_base", 0.0, "lower", 0, 3, 0.0, "0:sft", "sft-arithmetic"),
        ("train/loss", 1.5, "lower", 5, 3, 1e9, "0:sft", "sft-arithmetic"),
        ("flops/train", 1e9, "none", 5, 3, 1e9, "0:sft", "sft-arithmetic"),
        ("eval/mystery", 7.0, "none", 5, 3, 1e9, "0:sft", "sft-arithmetic"),
    ]
    with ResultsStore.open(tmp_path / "r.sqlite") as store:
        run_id = import_path(store, tmp_path / "run")  # the run folder
        assert store.measurements(run_id) == found and store.run(run_id).status == "finished"
        assert import_path(store, tracker.path) == run_id, "the same file is imported once"
        assert len(store.runs()) == 1


def test_committed_matrix_results_are_imported(tmp_path):
    names = [p.name for p in MATRIX_RESULTS]
    assert {"deepspeed-0.18.9.json", "deepspeed-0.19.0.json", "deepspeed-0.19.8.json",
            "openrlhf-0.10.3.json", "openrlhf-0.10.4.json", "transformers-4.45.2.json",
            "trl-1.0.0.json"} <= set(names)
    for path in MATRIX_RESULTS:
        doc = json.loads(path.read_text())
        info, found = measurements_from_probe_results(path)
        assert info.kind == "matrix" and info.started == doc["environment"]["time"]
        assert info.versions[doc["subject"]["package"]] == doc["subject"]["version"]
        measured = [r for r in doc["records"] if r["status"] != "unsupported"]  # n/a: nothing measured
        assert info.labels["unsupported_skipped"] == len(doc["records"]) - len(measured)
        assert Counter(m.status for m in found) == Counter(r["status"] for r in measured)
        for m, r in zip(found, measured, strict=True):
            assert (m.config, m.seed, m.kind, m.value) == (
                r["framework"], r["seed"], "status", 1.0 if r["status"] == "pass" else 0.0)
            assert m.labels == {"loss_agg": r["loss_agg"], "objective": r["objective"],
                                "optimizer": "sgd", "world_size": r["world_size"],
                                **doc["subject"]}
    by_name = dict(zip(names, MATRIX_RESULTS, strict=True))
    _, found = measurements_from_probe_results(by_name["openrlhf-0.10.3.json"])
    assert found[0].detail.startswith("micro-batches are weighted 3.67, 0.73") and \
        "mean of per-micro-batch token-mean losses" in found[0].detail
    _, found = measurements_from_probe_results(by_name["deepspeed-0.18.9.json"])
    (error, *_) = [m for m in found if m.status == "error"]
    assert error.detail.startswith("RuntimeError: Output 0 of Split is a view"), error.detail
    assert [m.detail for m in found if m.status == "pass"][0].startswith("deepspeed-z0-ws1 [pg")

    with ResultsStore.open(tmp_path / "r.sqlite") as store:
        ids = [import_path(store, p) for p in MATRIX_RESULTS]
        df = store.frame(ids)
        df["version"] = [labels["version"] for labels in df["labels"]]
        # The version matrix from the store: OpenRLHF fixed in 0.10.4, DeepSpeed by 0.19.8.
        rate = df.groupby("version")["value"].mean()
        assert rate["0.10.3"] == 0.0 and rate["0.10.4"] == 1.0 and rate["0.19.8"] == 1.0
        assert rate["0.14.4"] == 1.0  # the oldest DeepSpeed that runs beside the pinned torch
        assert rate["0.18.9"] == pytest.approx(15 / 34)


def test_unsupported_records_are_skipped_and_counted(tmp_path, caplog):
    doc = json.loads(next(p for p in MATRIX_RESULTS if p.name == "openrlhf-0.10.3.json").read_text())
    doc["records"].append({"framework": "openrlhf-z2-ws4", "status": "unsupported",
                           "reason": "not installed: openrlhf"})
    doc["records"].append({"framework": "torch", "loss_agg": "token-mean", "objective": "ce",
                           "optimizer": "sgd", "seed": 0, "plant": "drop-middle",
                           "status": "error", "reason": "ValueError: bad batch\nmore"})
    path = tmp_path / "probes.json"
    path.write_text(json.dumps(doc))
    with caplog.at_level("INFO", logger="ptbench.reports.importers"):
        info, found = measurements_from_probe_results(path)
    assert len(found) == 5 and info.labels["unsupported_skipped"] == 1
    assert "1 unsupported records skipped" in caplog.text
    assert (found[-1].detail, found[-1].labels["plant"]) == ("ValueError: bad batch", "drop-middle")
    doc["records"].append({"framework": "torch", "status": "exploded"})
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="record 6: expected a framework and a status"):
        measurements_from_probe_results(path)
    with pytest.raises(ValueError, match="cannot import it"):
        import_path(None, Path(__file__))
