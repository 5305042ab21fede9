"""One `pytest bench/` session's run in the results store: begun on the first measurement,
finished (with the configs it met) when the session ends. The pytest plugin delegates to this."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

from ptbench.reports.db import ResultsStore
from ptbench.reports.environment import run_info
from ptbench.reports.importers import measurements_from_metrics
from ptbench.reports.records import Measurement


def config_hash(config) -> str:
    """sha256 of a validated config dataclass's content (its canonical JSON)."""
    content = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()


def probe_measurement(record: dict, test_id: str = "") -> Measurement | None:
    """A probe result record (pass / fail / error; see `AdapterConfig.probe_record` and the
    plugin's `probe` fixture) as a status measurement; None for an unsupported combination."""
    status = record["status"]
    if status == "unsupported":
        return None
    status = "fail" if status == "fail" else status
    report = record.get("report") or {}
    failing = [s["diagnosis"] for s in report.get("steps", []) if not s.get("passed", True)]
    detail = failing[0].strip().splitlines()[0] if failing and failing[0].strip() else ""
    if status == "error":
        lines = [line for line in record.get("reason", "").strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else ""
    return Measurement(
        metric="probe", value=1.0 if status == "pass" else 0.0, kind="status", direction="higher",
        status=status, test_id=test_id or record.get("test", ""), config=record["framework"],
        seed=record.get("seed"), detail=detail,
        labels={**{k: record[k] for k in ("loss_agg", "objective", "optimizer") if record.get(k)},
                **({"tolerance": f"{report['tolerance']:.2g}"} if "tolerance" in report else {})})


class Recorder:
    """Adds a session's measurements to the store at `url`; does nothing with `url=None`."""

    def __init__(self, url: str | os.PathLike | None, *, kind: str = "bench",
                 command: str = "") -> None:
        self.url, self.kind, self.command = url, kind, command
        self.store: ResultsStore | None = None
        self.run_id: int | None = None
        self.config_hashes: dict[str, str] = {}
        self.seconds = 0.0
        """Wall time spent writing to the store (the recording's own overhead)."""

    @property
    def used(self) -> bool:
        return self.run_id is not None

    def add(self, measurements: list[Measurement]) -> None:
        if self.url is None or not measurements:
            return
        start = time.perf_counter()
        if self.store is None:
            self.store = ResultsStore.open(self.url)
            self.run_id = self.store.begin_run(run_info(self.kind, command=self.command))
        self.store.add(self.run_id, measurements)
        self.seconds += time.perf_counter() - start

    def add_probe_record(self, record: dict, test_id: str = "") -> None:
        m = probe_measurement(record, test_id)
        if m is not None:
            self.add([m])

    def add_pipeline_metrics(self, path: str | Path, config, test_id: str = "") -> None:
        """Every row of a pipeline run's metrics.jsonl, with the config's task and backend."""
        self.config_hashes[config.name] = config_hash(config)
        _, found = measurements_from_metrics(path)
        self.add([dataclasses.replace(m, task=config.task.name, backend=config.backend,
                                      test_id=test_id) for m in found])

    def add_timing(self, metric: str, benchmark, test_id: str = "") -> None:
        """The median of a pytest-benchmark fixture's rounds (seconds) as a timing."""
        stats = getattr(getattr(benchmark, "stats", None), "stats", None)
        if stats is None or not math.isfinite(stats.median):  # --benchmark-disable
            return
        self.add([Measurement(metric=metric, value=float(stats.median), kind="timing",
                              direction="lower", unit="s", test_id=test_id)])

    def finish(self, status: str = "finished") -> int | None:
        """End the run (if one began); its id."""
        if self.store is None or self.run_id is None:
            return None
        start = time.perf_counter()
        self.store.finish_run(self.run_id, status, config_hashes=self.config_hashes)
        self.seconds += time.perf_counter() - start
        return self.run_id
