"""Backends: what takes a stage's optimizer steps. Stages ask the backend, never test its name.

A backend is an object with the `Backend` methods below, registered once by name:

    register_backend(MyBackend())          # then `backend: my` in a pipeline config

Built in: `native` (ptbench's losses in readable PyTorch, `native.py`) and `trl` (TRL's trainers,
their own loops and losses, `trl.py`). A config is checked against its backend when it is loaded,
before any work; what depends on the launch (world size, devices, optional packages) is checked
by `check_launch` before the first step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from ptbench.pipelines.config import PipelineConfig, StageConfig

TrainOutput = dict[str, Any]
"""A step's outputs: 'loss' and 'grad_norm' (float or None); with the trainer's own rollouts
(`generation` other than 'ptbench') also 'scored', [(train pool index, completion, reward)]."""


class TrainStep(Protocol):
    """One stage's optimizer steps: `step(micro_batches)` accumulates over the micro-batches
    (this rank's share of the step) and takes one update."""

    optimizer: torch.optim.Optimizer
    """The runner sets each step's lr on its param groups and checkpoints its state."""
    engine: Any | None
    """A DeepSpeed engine owning the update (checkpointed through its own save), or None."""

    def __call__(self, micro_batches: list[dict] | None) -> TrainOutput: ...

    def pop_clip_fraction(self) -> float:
        """Share of on-policy loss tokens whose ratio was clipped since the last call."""

    def close(self) -> None:
        """Release what the stage held (trainer threads, engine hooks) before the next stage."""


class Backend(Protocol):
    name: str
    stage_kinds: frozenset[str]
    """The stage kinds this backend can train."""

    def check(self, config: PipelineConfig) -> None:
        """Raise ConfigError naming the field for anything in `config` this backend cannot run."""

    def check_launch(self, config: PipelineConfig, world_size: int) -> None:
        """The same for what depends on the launch (world size, devices, optional packages)."""

    def sft_step(self, ctx, stage: StageConfig) -> TrainStep:
        """Steps on the token-level SFT cross-entropy of `stage`."""

    def rl_step(self, ctx, stage: StageConfig) -> TrainStep:
        """Steps on the clipped policy-gradient objective of `stage`."""

    def rl_micro_batch_size(self, stage: StageConfig) -> int | None:
        """Rows per micro-batch of an RL update (None: the whole update at once)."""


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Make `backend` available to configs as `backend: <backend.name>`."""
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; a config error lists the known ones."""
    from ptbench.pipelines.backends import native, trl  # noqa: F401  (register the built-ins)
    from ptbench.pipelines.config import ConfigError

    if name not in BACKENDS:
        raise ConfigError(f"backend: expected one of {', '.join(map(repr, sorted(BACKENDS)))}, "
                          f"got {name!r}")
    return BACKENDS[name]
