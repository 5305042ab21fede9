"""Structured metric rows for every stage and eval point, written atomically.

One row per measurement: (pipeline, stage, stage_index, step, global_step, metric, value, seed,
flops, tokens, wall_s). The whole file is rewritten through a temporary file and an atomic
rename after every eval point, so a killed run keeps every row it had written, and a reader
never sees half a line. Rows are JSON Lines: `pandas.read_json(path, lines=True)` reads them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ptbench.fixtures.atomic import write_atomic


@dataclass(frozen=True)
class Row:
    """One measurement."""

    pipeline: str
    stage: str
    stage_index: int
    step: int
    global_step: int
    metric: str
    value: float
    seed: int
    flops: float
    """Total FLOPs spent by the pipeline so far (training + generation + extra forwards)."""
    tokens: int
    """Training tokens processed by the pipeline so far."""
    wall_s: float


class Tracker:
    """Collects rows and persists them atomically to `path` (JSON Lines)."""

    def __init__(self, path: str | os.PathLike, pipeline: str, seed: int,
                 rows: list[Row] | None = None) -> None:
        self.path = Path(path)
        self.pipeline, self.seed = pipeline, seed
        self.rows: list[Row] = list(rows or [])
        self._start = time.time() - (self.rows[-1].wall_s if self.rows else 0.0)

    def log(self, stage: str, stage_index: int, step: int, global_step: int,
            metrics: dict[str, float | None], flops: float, tokens: int) -> None:
        """Record several metrics measured at one point, then persist (a None value was not
        measured here and writes no row)."""
        wall = time.time() - self._start
        for name, value in metrics.items():
            if value is None:
                continue
            self.rows.append(Row(self.pipeline, stage, stage_index, step, global_step, name,
                                 float(value), self.seed, float(flops), int(tokens), wall))
        self.flush()

    def flush(self) -> None:
        """Rewrite the file atomically with every row so far."""
        write_atomic(self.path, lambda f: f.writelines(json.dumps(asdict(r)) + "\n" for r in self.rows))

    @staticmethod
    def read(path: str | os.PathLike) -> list[Row]:
        """Rows of a tracking file."""
        return [Row(**json.loads(line)) for line in Path(path).read_text().splitlines() if line]
