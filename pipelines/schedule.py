"""The learning rate of each step of a stage: linear warmup, then constant or cosine."""

from __future__ import annotations

import math

import torch

from ptbench.pipelines.config import StageConfig


def lr_factor(stage: StageConfig, step: int) -> float:
    """Linear warmup over `warmup_steps`, then constant or cosine to 0 at the stage's last step."""
    if step <= stage.warmup_steps:
        return step / (stage.warmup_steps + 1)
    if stage.lr_schedule == "constant":
        return 1.0
    progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, stage: StageConfig, step: int) -> None:
    """Set step `step`'s learning rate on every param group of `optimizer`."""
    for group in optimizer.param_groups:
        group["lr"] = stage.lr * lr_factor(stage, step)
