"""Checkpoints: model and tokenizer (HF `save_pretrained`), and one typed record of everything
else a resume needs (`Checkpoint`, stored as `trainer_state.pt` with named keys).

Layout: `<out>/checkpoints/step-XXXXXX/` and a `latest` file naming the newest. A checkpoint is
built in a staging folder and renamed into place, so a killed writer leaves none half-written.
Rank 0 writes; under DeepSpeed every rank first writes its optimizer partition into the staging
folder (`deepspeed/`).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptbench.fixtures.atomic import publish, staging_dir, staging_path, write_text_atomic
from ptbench.fixtures.models import load_causal_lm
from ptbench.pipelines import distributed
from ptbench.pipelines.backends import deepspeed

STATE_FILE = "trainer_state.pt"


@dataclass(frozen=True)
class RunnerState:
    """Where the runner is: stage `stage_index` has finished its step `step` (0: not started)."""

    stage_index: int = 0
    step: int = 0
    global_step: int = 0


@dataclass
class Checkpoint:
    """Everything besides the weights that an identical resume needs."""

    state: RunnerState
    generator: torch.Tensor
    """The run's data generator (which examples each step draws)."""
    torch_rng: list[torch.Tensor]
    """Every rank's torch RNG (sampling), indexed by rank."""
    python_rng: Any
    ledger: dict[str, int]
    """FLOPs counters (`FlopsLedger.to_dict`)."""
    tokens: int
    optimizer: dict | None
    """Mid-stage only, without DeepSpeed: the stage optimizer's state."""
    stage_start: dict | None
    """Mid-stage only: the stage's starting weights (KL reference, distances)."""

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "state": dataclasses.asdict(self.state)}

    @classmethod
    def from_dict(cls, data: dict) -> Checkpoint:
        return cls(**{**data, "state": RunnerState(**data["state"])})


def save_checkpoint(out: Path, ctx, state: RunnerState, train=None, stage_start=None) -> Path:
    """Write a checkpoint of `ctx` at `state`. Mid-stage, `train` (the stage's step) and
    `stage_start` (its starting model) are saved too; a collective: every rank calls it."""
    target = out / "checkpoints" / f"step-{state.global_step:06d}"
    torch_rngs = distributed.gather_objects(torch.get_rng_state())
    engine = train.engine if train is not None else None
    if distributed.is_main():
        staging_dir(target)
    distributed.barrier()
    staged = staging_path(target)
    if engine is not None:
        deepspeed.save(engine, staged / "deepspeed")
    if not distributed.is_main():
        distributed.barrier()
        return target
    record = Checkpoint(
        state=state, generator=ctx.generator.get_state(), torch_rng=torch_rngs,
        python_rng=random.getstate(), ledger=ctx.counters.ledger.to_dict(),
        tokens=ctx.counters.tokens,
        optimizer=train.optimizer.state_dict() if train is not None and engine is None else None,
        stage_start=stage_start.state_dict() if stage_start is not None else None)
    ctx.model.save_pretrained(staged)
    ctx.tokenizer.save_pretrained(staged)
    torch.save(record.to_dict(), staged / STATE_FILE)
    publish(staged, target, replace=True)
    write_text_atomic(out / "checkpoints" / "latest", target.name)
    distributed.barrier()
    return target


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint folder under `out`, or None."""
    pointer = out / "checkpoints" / "latest"
    return out / "checkpoints" / pointer.read_text().strip() if pointer.exists() else None


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, Checkpoint]:
    """The saved model (on the CPU) and record of the checkpoint folder `path`."""
    record = Checkpoint.from_dict(torch.load(path / STATE_FILE, weights_only=False))
    if len(record.torch_rng) != distributed.world_size():
        raise ValueError(f"--resume: {path} was written at world size {len(record.torch_rng)}, "
                         f"this run has {distributed.world_size()}")
    return load_causal_lm(str(path), device="cpu"), record


def restore_stage(train, record: Checkpoint, path: Path) -> None:
    """Mid-stage: put the stage's optimizer (or DeepSpeed engine) state back."""
    if train.engine is not None:
        deepspeed.load(train.engine, path / "deepspeed")
    elif record.optimizer is not None:
        train.optimizer.load_state_dict(record.optimizer)


def restore_rngs(record: Checkpoint) -> None:
    """This rank's torch RNG and the Python RNG as they were at the checkpoint."""
    torch.set_rng_state(record.torch_rng[distributed.rank()])
    random.setstate(record.python_rng)
