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
from ptbench.reports.importers import measurements_from_metrics, probe_measurement
from ptbench.reports.records import Measurement


def config_hash(config) -> str:
    """sha256 of a validated config dataclass's content (its canonical JSON)."""
    content = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()


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
        """A probe result record (unsupported ones measured nothing and are not added), with
        the tolerance it was judged at (descriptive: not part of the series)."""
        report = record.get("report") or {}
        tolerance = {"tolerance": f"{report['tolerance']:.2g}"} if "tolerance" in report else {}
        m = probe_measurement(record, test_id=test_id, labels=tolerance)
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
