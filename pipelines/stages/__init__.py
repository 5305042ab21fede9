"""Stages: one class each, registered by `kind`; a pipeline config lists them in order.

A stage gets the run's context at `setup` and performs one optimizer step per `step` call,
returning that step's metrics. The runner owns the loop: eval points, budgets, checkpoints.
To add a stage, write one class with `kind`, `setup` and `step`, decorated with `@register`.
"""

from __future__ import annotations

from typing import Protocol

from ptbench.pipelines.config import ConfigError, StageConfig

STAGES: dict[str, type] = {}


class Stage(Protocol):
    kind: str

    def __init__(self, config: StageConfig, index: int) -> None: ...

    def setup(self, ctx) -> None: ...

    def step(self, ctx, step: int) -> dict[str, float]: ...


def register(cls: type) -> type:
    """Class decorator: make `cls` available to configs as `kind: <cls.kind>`."""
    STAGES[cls.kind] = cls
    return cls


def build_stage(config: StageConfig, index: int):
    """The stage object for a config entry; an unknown kind is a config error."""
    from ptbench.pipelines.stages import mixed, rl, sft  # noqa: F401  (registers built-in stages)

    if config.kind not in STAGES:
        raise ConfigError(f"stages[{index}].kind: expected one of {', '.join(sorted(STAGES))}, "
                          f"got {config.kind!r}")
    return STAGES[config.kind](config, index)
