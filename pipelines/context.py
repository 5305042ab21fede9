"""What stages share during a run: the policy being trained, its data, backend and counters."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ptbench.pipelines import distributed
from ptbench.pipelines.accounting import Counters
from ptbench.pipelines.backends import Backend
from ptbench.pipelines.config import PipelineConfig


@dataclass
class RunContext:
    config: PipelineConfig
    backend: Backend
    model: torch.nn.Module
    tokenizer: object
    task: object
    train_pool: list
    """The training examples steps draw from."""
    generator: torch.Generator
    """Seeded; every rank draws the same examples from it."""
    counters: Counters
    bf16: bool = False
    """Train in bfloat16 (see PipelineConfig.dtype)."""
    stage_start: torch.nn.Module | None = None
    """A frozen copy of the policy at the start of the current stage (the KL reference)."""

    def sample_train(self, n: int) -> list:
        """This rank's share of `n` training examples drawn with replacement by the run's
        seeded generator (every rank draws the same `n`)."""
        idx = torch.randint(len(self.train_pool), (n,), generator=self.generator)
        return distributed.shard([self.train_pool[int(i)] for i in idx])

    def precision(self):
        """bf16 autocast around forward passes where bf16 is mixed precision (no DeepSpeed: its
        bf16 mode casts the weights instead)."""
        if self.bf16 and self.config.deepspeed is None:
            return torch.autocast(next(self.model.parameters()).device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()
