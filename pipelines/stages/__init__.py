"""Stages: one class each, registered by `kind`; a pipeline config lists them in order.

A stage is checked against the whole config when it is loaded (`check`), gets the run's context
at `setup` (where it asks the run's backend for its `train` step) and performs one optimizer
step per `step` call, returning that step's metrics. The runner owns the loop: eval points,
budgets, lr, checkpoints. To add a stage, write one class with `kind`, `check`, `setup` and
`step`, decorated with `@register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ptbench.pipelines.config import ConfigError, PipelineConfig, StageConfig

if TYPE_CHECKING:
    from ptbench.pipelines.backends import TrainStep

STAGES: dict[str, type] = {}


class Stage(Protocol):
    kind: str
    train: TrainStep
    """The backend's step for this stage, set by `setup`."""

    def __init__(self, config: StageConfig, index: int) -> None: ...

    @classmethod
    def check(cls, pipeline: PipelineConfig, index: int) -> None:
        """Raise ConfigError naming the field if stage `index` of `pipeline` cannot run."""

    def setup(self, ctx) -> None: ...

    def step(self, ctx, step: int) -> dict[str, float]: ...


class StageBase:
    """What the built-in stages share: their config entry and index; no checks beyond the
    schema's and the backend's."""

    kind: str

    def __init__(self, config: StageConfig, index: int) -> None:
        self.config, self.index = config, index

    @classmethod
    def check(cls, pipeline: PipelineConfig, index: int) -> None:
        pass


def register(cls: type) -> type:
    """Class decorator: make `cls` available to configs as `kind: <cls.kind>`."""
    STAGES[cls.kind] = cls
    return cls


def stage_class(kind: str, index: int) -> type:
    """The class registered as `kind`; an unknown kind is a config error naming the stage."""
    from ptbench.pipelines.stages import mixed, rl, sft  # noqa: F401  (registers built-in stages)

    if kind not in STAGES:
        raise ConfigError(f"stages[{index}].kind: expected one of {', '.join(sorted(STAGES))}, "
                          f"got {kind!r}")
    return STAGES[kind]


def build_stage(config: StageConfig, index: int) -> Stage:
    """The stage object for a config entry."""
    return stage_class(config.kind, index)(config, index)
