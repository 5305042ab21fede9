"""The one record format of ptbench's results: a run (where, when, with what) and its
measurements (one number, or one pass/fail status, each).

Everything that produces results writes these (the `pytest bench/` plugin, pipeline runs, the
version matrix, the comparison and diagnostics), through `ptbench.reports` into the results
store; every reader (regression verdicts, the report) reads these back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["higher", "lower", "none"]
"""Which way is better: 'higher' (accuracy, reward, throughput), 'lower' (loss, wall time),
'none' (a quantity tracked for drift only; any significant move is reported as a change)."""
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "none")
Kind = Literal["value", "status", "timing"]
"""'value': a number measured over seeds; 'status': pass/fail of a check (probe, claim), the
number is 1.0 for pass and 0.0 for fail, `status` holds the word; 'timing': seconds (judged
against the history's own spread)."""
KINDS: tuple[str, ...] = ("value", "status", "timing")


@dataclass(frozen=True)
class Measurement:
    """One measured number (or one check's status) of a run."""

    metric: str
    """What was measured, e.g. 'eval/id_accuracy', 'probe', 'timing/probe'."""
    value: float
    kind: str = "value"
    """One of KINDS."""
    direction: str = "higher"
    """One of DIRECTIONS."""
    unit: str = ""
    test_id: str = ""
    """The pytest node id (or command) that produced it."""
    config: str = ""
    """The framework configuration probed (adapter name, e.g. 'deepspeed-z2-offload-ws1') or the
    pipeline config name."""
    pipeline: str = ""
    task: str = ""
    backend: str = ""
    seed: int | None = None
    stage: str = ""
    step: int | None = None
    flops: float | None = None
    status: str = ""
    """For kind 'status': 'pass', 'fail' or 'error'; the diagnosis goes in `detail`."""
    detail: str = ""
    """A one-line explanation (a probe's diagnosis, an error's first line)."""
    labels: dict = field(default_factory=dict)
    """Anything else that identifies the measurement (loss_agg, objective, optimizer, ...)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {DIRECTIONS}, got {self.direction!r}")

    def key(self) -> tuple:
        """What makes two runs' measurements the same series (everything but the value, the
        seed and the step's value-dependent fields)."""
        return (self.metric, self.kind, self.test_id, self.config, self.pipeline, self.task,
                self.backend, self.stage, self.step, tuple(sorted(self.labels.items())))


@dataclass(frozen=True)
class RunInfo:
    """Where, when and with what a run measured."""

    kind: str
    """'bench' (pytest bench/), 'pipeline', 'matrix', 'import', ..."""
    started: str
    """ISO 8601, UTC."""
    command: str = ""
    git_revision: str = ""
    git_dirty: bool = False
    host: str = ""
    cpu: str = ""
    gpu: str = ""
    """GPU model, '' without one."""
    gpu_count: int = 0
    versions: dict = field(default_factory=dict)
    """Package -> version (torch, transformers, trl, deepspeed, openrlhf, accelerate, datasets)."""
    config_hashes: dict = field(default_factory=dict)
    """Config name -> sha256 of its validated content."""
    labels: dict = field(default_factory=dict)
