"""The training runs of a diagnostics study, in two waves, each run resumable and skipped once
finished (a `done.json` beside its metrics records the config it finished with).

    wave 1, per seed   sft/seed-S          the SFT-length sweep (evenly spaced checkpoints)
                       rl_then_sft/seed-S  RL from the base to a plateau, then SFT
    wave 2, per seed   rl/step-N/seed-S    RL from the SFT checkpoints on both sides of the
                                           OOD peak (`rl_starts`); the last checkpoint always
    wave 3, per seed   sft_after_rl/seed-S SFT after the RL from the last SFT checkpoint
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from ptbench.comparison.study_config import Study
from ptbench.fixtures.atomic import write_json_atomic
from ptbench.pipelines.config import PipelineConfig
from ptbench.pipelines.tracking import Row, Tracker

DONE = "done.json"


@dataclass(frozen=True)
class StudyRun:
    """One pipeline run of the study and where it goes."""

    name: str
    """e.g. 'sft/seed-0'."""
    config: PipelineConfig

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.name


def finished(folder: Path, config: PipelineConfig) -> bool:
    done = folder / DONE
    return done.exists() and json.loads(done.read_text())["config"] == json.loads(
        json.dumps(asdict(config)))


def _run(config: PipelineConfig, folder: Path, cache: str | None) -> float:
    """Run one config to its end (resuming a killed run); in a worker process."""
    from ptbench.pipelines.run import run_pipeline

    os.environ["TQDM_DISABLE"] = "1"  # (the study prints a line per run instead)
    started = time.monotonic()
    run_pipeline(config, folder, resume=True, cache=cache)
    wall = time.monotonic() - started
    write_json_atomic(folder / DONE, {"config": asdict(config), "wall_s": wall})
    return wall


def run_all(runs: list[StudyRun], out: Path, *, workers: int = 1, cache: str | None = None,
            say: Callable[[str], None] = print) -> None:
    """Every run not yet finished, `workers` at a time, a line per run as it starts and ends."""
    todo = [r for r in runs if not finished(r.folder(out), r.config)]
    if len(todo) < len(runs):
        say(f"  {len(runs) - len(todo)} run(s) already finished; {len(todo)} to run")
    if not todo:
        return
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for run in todo:
            say(f"  start {run.name}")
            futures[pool.submit(_run, run.config, run.folder(out), cache)] = run
        for i, future in enumerate(as_completed(futures), 1):
            wall = future.result()
            say(f"  [{i}/{len(todo)}] done {futures[future].name} in {wall:.0f} s "
                f"({time.monotonic() - started:.0f} s elapsed)")


def total_wall(runs: list[StudyRun], out: Path) -> float:
    """Seconds the finished runs took, summed (as recorded when each finished)."""
    return sum(json.loads((r.folder(out) / DONE).read_text())["wall_s"] for r in runs)


def rows(out: Path, name: str) -> list[Row]:
    """The metric rows of a finished run."""
    return Tracker.read(out / "runs" / name / "metrics.jsonl")


def checkpoint_path(out: Path, seed: int, step: int) -> Path:
    return out / "runs" / f"sft/seed-{seed}" / "checkpoints" / f"step-{step:06d}"


def ood_by_checkpoint(study: Study, sft_rows: list[Row]) -> dict[int, float]:
    """OOD accuracy of the SFT run at each checkpoint step."""
    ood = {r.step: r.value for r in sft_rows if r.metric == "eval/ood_accuracy"}
    return {s: ood[s] for s in study.config.sft.checkpoint_steps}


def rl_starts(by_checkpoint: dict[int, float]) -> list[int]:
    """The checkpoints RL starts from: the OOD peak (earliest of ties) and the last checkpoint;
    when the peak is the last, the one before it (then SFT never lost OOD accuracy)."""
    steps = sorted(by_checkpoint)
    peak = max(steps, key=lambda s: (by_checkpoint[s], -s))
    other = peak if peak != steps[-1] else (steps[-2] if len(steps) > 1 else peak)
    return sorted({other, steps[-1]})


def first_wave(study: Study) -> list[StudyRun]:
    return [run for seed in study.config.seeds for run in (
        StudyRun(f"sft/seed-{seed}", study.sft_run(seed)),
        StudyRun(f"rl_then_sft/seed-{seed}", study.reverse_run(seed)))]


def second_wave(study: Study, out: Path) -> list[StudyRun]:
    runs = []
    for seed in study.config.seeds:
        for step in rl_starts(ood_by_checkpoint(study, rows(out, f"sft/seed-{seed}"))):
            runs.append(StudyRun(f"rl/step-{step}/seed-{seed}",
                                 study.rl_run(seed, checkpoint_path(out, seed, step))))
    return runs


def rl_end(study: Study, out: Path, seed: int) -> Path:
    """The last checkpoint of the RL run from the last SFT checkpoint."""
    last = study.config.sft.checkpoint_steps[-1]
    return (out / "runs" / f"rl/step-{last}/seed-{seed}" / "checkpoints"
            / f"step-{study.config.rl.steps:06d}")


def third_wave(study: Study, out: Path) -> list[StudyRun]:
    return [StudyRun(f"sft_after_rl/seed-{seed}", study.sft_after_rl_run(seed, rl_end(study, out, seed)))
            for seed in study.config.seeds]
