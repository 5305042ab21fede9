"""One trial: a pipeline at one search point, on one seed, with or without a planted bug. It is
an ordinary pipeline run in its own folder; its summary (`result.json`, written atomically last)
marks it finished, so an interrupted comparison reruns only unfinished trials (a killed run
itself resumes from its last checkpoint).

Trials run in worker processes, `jobs` at a time, each torch on one thread: a planted bug is a
monkeypatch, and a process of its own keeps it away from every other trial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ptbench.fixtures.atomic import write_json_atomic
from ptbench.pipelines.config import PipelineConfig

RESULT = "result.json"
EVAL_PREFIX = "eval/"


@dataclass(frozen=True)
class Trial:
    """What one run is: its pipeline, search point, seed, bug and handicap."""

    pipeline: str
    seed: int
    point: dict[str, Any] = field(default_factory=dict)
    bug: str | None = None
    handicap: dict[str, Any] = field(default_factory=dict)

    config_hash: str = ""
    """Of the whole pipeline config the trial runs: a changed config is a new trial, never a
    stale result read back."""

    @property
    def key(self) -> str:
        """A folder name that says what the trial is and differs for every trial."""
        return f"{self.pipeline}/seed{self.seed}-{self.bug or 'clean'}-{self.config_hash[:10]}"

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in {**self.point, **self.handicap}.items())
        return (f"{self.pipeline} [{settings or 'as configured'}] seed {self.seed}"
                + (f" with {self.bug}" if self.bug else ""))


@dataclass(frozen=True)
class TrialResult:
    """A finished trial: its metrics at every budget point it reached, at its start and at its
    end, and what it spent."""

    trial: Trial
    points: dict[str, dict[str, float]]
    """Budget point (as `repr(float)`) -> eval metric -> value, at the first eval at or past
    the point."""
    start: dict[str, float]
    """The eval metrics before the first step (the base model's)."""
    final: dict[str, float]
    flops: float
    steps: int
    wall_s: float

    def at(self, point: float) -> dict[str, float] | None:
        return self.points.get(repr(float(point)))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrialResult:
        return cls(**{**data, "trial": Trial(**data["trial"])})


def _set_fields(obj: Any) -> Any:
    """`obj` as plain data, dataclass fields equal to their defaults left out (so a field added
    to the config schema later does not make every finished trial look new)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else dataclasses.MISSING)
            if value != default:
                out[f.name] = _set_fields(value)
        return out
    if isinstance(obj, list | tuple):
        return [_set_fields(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _set_fields(v) for k, v in obj.items()}
    return obj


def config_hash(config: PipelineConfig) -> str:
    """Of the config's set fields (see `_set_fields`)."""
    return hashlib.sha256(json.dumps(_set_fields(config), sort_keys=True, default=str).encode()
                          ).hexdigest()


def summarize(trial: Trial, metrics_path: Path, points: Iterable[float], wall_s: float,
              unit: str = "flops") -> TrialResult:
    """The trial's eval metrics at each budget point (the first eval at or past it, in FLOPs or
    in optimizer steps over all stages), read from the run's metrics file."""
    evals: dict[tuple[int, float], dict[str, float]] = {}
    steps = 0
    spent = 0.0
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        steps, spent = max(steps, row["global_step"]), max(spent, row["flops"])
        if row["metric"].startswith(EVAL_PREFIX):
            at = (row["global_step"], float(row["flops" if unit == "flops" else "global_step"]))
            evals.setdefault(at, {})[row["metric"].removeprefix(EVAL_PREFIX)] = row["value"]
    ordered = sorted(evals.items())
    if not ordered:
        raise ValueError(f"{metrics_path}: no eval rows; did the run start?")
    by_point = {}
    for p in points:
        hit = next((m for (_, reached), m in ordered if reached >= p), None)
        if hit is not None:
            by_point[repr(float(p))] = hit
    return TrialResult(trial, by_point, ordered[0][1], ordered[-1][1], spent, steps, wall_s)


def run_trial(trial: Trial, config: PipelineConfig, folder: Path, unit: str, plant: str | None,
              cache: str | None) -> TrialResult:
    """Run one trial to the end (resuming a killed one) and write its summary. In a worker."""
    import contextlib

    from ptbench.pipelines.run import run_pipeline

    os.environ["TQDM_DISABLE"] = "1"  # (the comparison prints a line per trial instead)
    started = time.monotonic()
    bug = contextlib.nullcontext()
    if plant is not None:
        from ptbench.fixtures.probes.plant import plant as planted

        bug = planted(plant)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "config.json", asdict(config))
    with bug:
        metrics = run_pipeline(config, folder, resume=True, cache=cache)
    # The budget points this pipeline runs to (not past them: a last step may overshoot).
    points = config.eval.at_flops if unit == "flops" else config.eval.at_steps
    result = summarize(trial, metrics, points, time.monotonic() - started, unit)
    write_json_atomic(folder / RESULT, result.to_json())
    return result


def finished(folder: Path) -> TrialResult | None:
    """The summary of a finished trial, else None."""
    path = folder / RESULT
    return TrialResult.from_json(json.loads(path.read_text())) if path.exists() else None


@dataclass(frozen=True)
class Job:
    """A trial with everything a worker needs to run it."""

    trial: Trial
    config: PipelineConfig
    plant: str | None


def run_trials(jobs: list[Job], out: Path, unit: str, *, workers: int = 1,
               cache: str | None = None, say: Callable[[str], None] = print
               ) -> dict[str, TrialResult]:
    """Every job's result by trial key: finished ones read back, the others run `workers` at a
    time. Prints a line per trial as it starts and ends (long work shows progress)."""
    results: dict[str, TrialResult] = {}
    todo = []
    for job in jobs:
        done = finished(out / job.trial.key)
        if done is not None:
            results[job.trial.key] = done
        else:
            todo.append(job)
    if results:
        say(f"  {len(results)} trial(s) already finished, read back; {len(todo)} to run")
    if not todo:
        return results
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {}
        for job in todo:
            say(f"  start {job.trial.describe()}")
            futures[pool.submit(run_trial, job.trial, job.config, out / job.trial.key, unit,
                                job.plant, cache)] = job
        for i, future in enumerate(as_completed(futures), 1):
            job = futures[future]
            result = future.result()
            results[job.trial.key] = result
            say(f"  [{i}/{len(todo)}] done {job.trial.describe()} in {result.wall_s:.0f} s "
                f"(id {result.final.get('id_accuracy', float('nan')):.3f}, "
                f"val {result.final.get('val_accuracy', float('nan')):.3f}; "
                f"{time.monotonic() - started:.0f} s elapsed)")
    return results
